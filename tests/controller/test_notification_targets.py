"""Where a notification may go, found in review: IPv6 prefixes that lead to private IPv4 addresses, refusals
that named what a host resolved to, e-mail targets with several or local recipients, and URL tokens kept
whole in the audit log."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from controller.notifications.targets import PrivateAddress, check_address, masked, validate
from core.commands import Actor, CommandError, execute
from core.models import AuditRecord, Team
from core.services import Services
from server.registry import load_commands
from tests.fixtures.teresa import BytesInput, MemoryOutput

REFUSED = [
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"), ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::127.0.0.1", "IPv4-compatible loopback"), ("::10.0.0.1", "IPv4-compatible private"),
    ("::8.8.8.8", "IPv4-compatible, even of a public address"),
    ("::ffff:0:127.0.0.1", "IPv4-translated loopback (SIIT)"),
    ("64:ff9b::127.0.0.1", "NAT64 well-known prefix, loopback"), ("64:ff9b::10.0.0.1", "NAT64 private"),
    ("64:ff9b::169.254.169.254", "NAT64 metadata"), ("64:ff9b::8.8.8.8", "NAT64, even of a public address"),
    ("64:ff9b:1::a00:1", "NAT64 local-use prefix"), ("64:ff9b:1:7f00:1::", "NAT64 local-use, /48 embedding"),
    ("2002:7f00:1::1", "6to4 of loopback"), ("2002:a9fe:a9fe::1", "6to4 of metadata"),
    ("2002:808:808::1", "6to4, even of a public address"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"), ("2001::7f00:1", "Teredo, loopback client"),
    ("fec0::1", "site-local"), ("fc00::1", "unique local"), ("fe80::1", "link-local"), ("::1", "loopback"),
    ("::", "unspecified"), ("ff02::1", "multicast"), ("2001:db8::1", "documentation"),
    ("localhost", "a name of loopback"), ("127.0.0.1", "IPv4 loopback"), ("10.1.2.3", "IPv4 private"), ("169.254.169.254", "IPv4 metadata"), ("100.64.0.1", "IPv4 shared"),
    ("224.0.0.1", "IPv4 multicast"), ("0.0.0.0", "IPv4 unspecified"),
]
PUBLIC = ["8.8.8.8", "::ffff:8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


def literal(address: str) -> str:
    return f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"


@pytest.mark.parametrize("address", [a for a, _ in REFUSED], ids=[why for _, why in REFUSED])
def test_addresses_that_are_not_public_are_refused_unless_the_operator_allows(address: str) -> None:
    with pytest.raises(CommandError, match="is not a public address; Teresa delivers notifications to public "
                                           "addresses only"):
        validate(literal(address), allow_private=False, smtp_configured=False)
    assert validate(literal(address), allow_private=True, smtp_configured=False) == literal(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_accepted(address: str) -> None:
    check_address(address, address, allow_private=False)


@pytest.mark.parametrize("address", ["10.1.2.3", "64:ff9b::a00:1", "fd12:3456::1"])
def test_a_refusal_does_not_say_what_a_name_resolved_to(address: str) -> None:
    with pytest.raises(PrivateAddress) as refused:
        check_address("db.internal.example", address, allow_private=False)
    assert str(refused.value).startswith("db.internal.example is not a public address;")
    assert address not in str(refused.value) and "a00" not in str(refused.value)


@pytest.mark.parametrize("address", [
    "root,security,ops@victim.example", "undisclosed:;@victim.example", "undisclosed:;", "ops@localhost", "root",
    "Ops <ops@victim.example>", '"ops"@victim.example', "ops@victim.example,root@victim.example",
    "ops@victim.example;root", "ops@10.0.0.1", "ops@victim..example", "o ps@victim.example", ".ops@victim.example",
    "ops@-victim.example", "x" * 65 + "@victim.example"])
def test_an_email_target_is_one_fully_qualified_address(address: str) -> None:
    with pytest.raises(CommandError, match="is not one e-mail address with a full domain; add one target per "
                                           r"address, like email:ops@example\.com\.$"):
        validate(f"email:{address}", allow_private=False, smtp_configured=True)


@pytest.mark.parametrize("address", ["ops@victim.example", "ops+teresa@mail.victim.example",
                                     "o.p.s@victim.xn--p1ai"])
def test_one_address_with_a_full_domain_is_accepted(address: str) -> None:
    assert validate(f"email:{address}", allow_private=False, smtp_configured=True) == f"email:{address}"


@pytest.mark.parametrize("url, kept", [
    ("https://hooks.slack.com/services/T0001/B0001/s3cret", "https://hooks.slack.com/***"),
    ("https://hooks.example.com/teresa?token=s3cret", "https://hooks.example.com/***"),
    ("https://hooks.example.com?token=s3cret", "https://hooks.example.com/***"),
    ("https://user:s3cret@hooks.example.com:8443/", "https://***@hooks.example.com:8443"),
    ("https://hooks.example.com/#s3cret", "https://hooks.example.com/***"),
    ("https://hooks.example.com", "https://hooks.example.com"),
    ("email:ops@example.com", "email:ops@example.com"),
    ("s3cret", "***"), ("http://[::1/s3cret", "***"),
])
def test_a_target_is_masked_for_the_audit_log(url: str, kept: str) -> None:
    assert masked(url) == kept


@pytest.mark.parametrize("url, status", [("http://127.0.0.1:9/services/T0001/B0001/s3cret?token=s3cret", 0),
                                         ("http://user:s3cret@127.0.0.1:9/hook", 1)])
@pytest.mark.asyncio
async def test_notifications_add_records_the_target_masked(services: Services, url: str, status: int) -> None:
    load_commands()
    services.db.transaction(lambda s: s.add(Team(name="web")))
    err = MemoryOutput()
    assert await execute(["notifications:add", "web", url, "--events", "deploy"], Actor.local(), services,
                         BytesInput(), MemoryOutput(), err, remote=False) == status, err.text
    [record] = services.db.transaction(lambda s: list(s.scalars(select(AuditRecord))))
    assert record.action == "notifications:add" and "s3cret" not in json.dumps(record.details)
    assert record.details == {"scope": "web", "url": masked(url), "events": "deploy"}

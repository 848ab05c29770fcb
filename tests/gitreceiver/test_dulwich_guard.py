"""The dulwich methods Teresa overrides are guarded by version, like the asyncssh flow-control patch."""

from __future__ import annotations

import inspect

import pytest
from dulwich.server import ReceivePackHandler

from gitreceiver import git_service
from gitreceiver.git_service import OVERRIDDEN, TeresaReceivePack, UnsupportedDulwich, check_dulwich


def test_the_installed_dulwich_is_one_the_overrides_were_checked_against() -> None:
    check_dulwich()


def test_an_unknown_dulwich_version_refuses_to_serve_git() -> None:
    with pytest.raises(UnsupportedDulwich, match="dulwich 99.0.0 is not one Teresa's git service was checked against"):
        check_dulwich("99.0.0")


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_each_override_matches_the_signature_it_replaces(name: str) -> None:
    ours, theirs = getattr(TeresaReceivePack, name), getattr(ReceivePackHandler, name)
    assert ours is not theirs, f"{name} is listed as overridden but is not"
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


def test_every_private_override_is_listed() -> None:
    private = {n for n, v in vars(TeresaReceivePack).items() if n.startswith("_") and not n.startswith("__")
               and callable(v)}
    assert private == set(git_service.OVERRIDDEN)

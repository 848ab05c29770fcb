"""One declaration per setting: the README's configuration table is generated from it, and nothing else reads one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import Settings
from core.envparse import integer
from core.setting import declared, read, setting
from server import docs

REPO = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("core", "keys", "controller", "gitreceiver", "server")


def test_the_readmes_configuration_table_is_the_declarations() -> None:
    readme = (REPO / "README.md").read_text()
    assert docs.SETTINGS_BEGIN in readme and docs.SETTINGS_END in readme
    assert docs.with_settings_table(readme) == readme, "run: make docs"


def test_every_setting_has_help_text() -> None:
    for row in docs.setting_rows():
        first, *joined = row
        assert first.help.strip(), f"{first.env} has no help text: say what it does in its declaration"
        assert not first.joins
        assert all(s.help == "" for s in joined), f"{[s.env for s in joined]} join {first.env}'s row and its help"


def test_each_variable_is_declared_once() -> None:
    names = [s.env for s in declared(Settings)]
    assert len(names) == len(set(names)) and len(names) > 60
    assert all(re.fullmatch(r"TERESA(DB|FILESTORAGE|K8S|DEPLOY)?_[A-Z0-9_]+", name) for name in names)


def test_the_table_names_families_by_their_common_prefix() -> None:
    rows = {row[0].env: docs._names(row) for row in docs.setting_rows()}
    assert rows["TERESADB_HOSTNAME"] == "`TERESADB_HOSTNAME`, `_PORT`, `_USERNAME`, `_PASSWORD`, `_DATABASE`"
    assert rows["TERESA_APP_QUOTA_CPU"] == "`TERESA_APP_QUOTA_CPU`, `_MEMORY`, `_PODS`"


READS = re.compile(r"""(environ|env)(\.get\(|\[)\s*["'](TERESA[A-Z0-9]*_[A-Z0-9_]+)["']""")
# The job and process contracts a server module writes for a child, and reads back from /proc (not settings).
CONTRACTS = {"TERESA_APP_DIR"}


def test_no_server_module_reads_a_setting_from_the_environment_itself() -> None:
    """A setting read where it is used turns a bad value into an internal error at first use; read it in core/."""
    assert READS.search('self.settings.env.get("TERESA_PUSH_KEEPALIVE_SECONDS") or 5.0')  # as it once was
    declared_in = {"core/config.py", "core/kubesettings.py"}
    found = [f"{path.relative_to(REPO)}: {match[3]}" for package in SERVER_PACKAGES
             for path in (REPO / package).rglob("*.py") if str(path.relative_to(REPO)) not in declared_in
             for match in READS.finditer(path.read_text()) if match[3] not in CONTRACTS]
    assert found == []


def test_a_derived_default_must_say_how_the_table_shows_it() -> None:
    @dataclass(frozen=True)
    class Two:
        first: int = setting("TERESA_FIRST", integer, default=1, help="one")
        second: int = setting("TERESA_SECOND", integer, default=2, help="the first, doubled")

    assert read(Two, {"TERESA_FIRST": "4"}).second == 2
    with pytest.raises(TypeError, match="TERESA_SECOND's default is derived"):
        read(Two, {}, derived={"second": lambda two: two.first * 2})

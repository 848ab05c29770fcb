"""The command line parser and the generated command reference."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from controller.controller import Controller
from server import docs
from core.commands import Actor, CommandError, execute, parse, split_command_line
from core.config import Settings
from core.db import Database
from server.registry import load_commands
from controller.platform import Platform
from core.services import Services
from core.storage import storage_for
from tests.fixtures.teresa import BytesInput, MemoryOutput

REPO = Path(__file__).resolve().parents[2]
load_commands()


def test_command_reference_is_up_to_date() -> None:
    assert (REPO / "docs" / "commands.md").read_text() == docs.render(), "run: make docs"


@given(st.text(max_size=300))
def test_any_command_line_parses_or_is_refused_with_one_sentence(line: str) -> None:
    try:
        parse(split_command_line(line), remote=True)
    except CommandError as exc:
        message = str(exc)
        assert message and "\n" not in message


NAMES = st.sampled_from(["apps:create", "apps:info", "apps:destroy", "apps:list", "keys:add", "keys:remove",
                         "teams:create", "teams:add-user", "users:create", "whoami", "help", "passwd", "nope"])
WORDS = st.one_of(st.text(max_size=20), st.sampled_from(["--json", "--team", "--confirm", "--user", "../x", "a b",
                                                          "myapp", "-h", "--admin", "x" * 5000]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, words=st.lists(WORDS, max_size=4), stdin=st.binary(max_size=64))
def test_random_commands_never_crash(tmp_path: Path, name: str, words: list[str], stdin: bytes) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fuzz.sqlite'}")
    db.upgrade()
    settings = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path)})
    services = Services(settings=settings, db=db, storage=storage_for(settings.storage))
    platform = Platform.assemble(services, Controller(services, runtime=None))
    actor = Actor(email="someone@example.com", user_id=None)
    out, err = MemoryOutput(), MemoryOutput()
    status = asyncio.run(execute([name, *words], actor, platform, BytesInput(stdin), out, err, remote=True))
    db.dispose()
    assert "internal error" not in err.text
    if status:
        assert err.text.startswith("error: ") and err.text.count("\n") == 1

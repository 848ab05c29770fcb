from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.procfile import ProcfileError, parse, render
from core.process_types import PROCESS_TYPE


def test_parse_skips_comments_and_blank_lines_and_keeps_order() -> None:
    text = "# processes\n\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n  worker-2 :  python worker.py  \nrelease: ./migrate\n"
    assert parse(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker-2": "python worker.py",
        "release": "./migrate",
    }
    assert list(parse(text)) == ["web", "worker-2", "release"]


def test_command_may_contain_colons() -> None:
    assert parse("web: python -c 'print(1)' --url http://x:80\n") == {"web": "python -c 'print(1)' --url http://x:80"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web: ok\nworker python w.py\n", "Procfile line 2 is not `type: command`"),
        ("web:\n", "Procfile line 1 is not `type: command`"),
        ("Web: python app.py\n", "Procfile line 1: process type 'Web' is not valid"),
        ("web_: python app.py\n", "process type 'web_' is not valid; use 1 to 30 lowercase letters, digits, dashes"),
        ("a_b: x\na-b: y\n", "Procfile line 2: process types 'a_b' and 'a-b' differ only by '_' and '-'"),
        ("1web: python app.py\n", "process type '1web' is not valid"),
        ("-web: x\n", "process type '-web' is not valid"),
        ("web: a\nweb: b\n", "Procfile line 2: process type 'web' is declared twice"),
    ],
)
def test_bad_lines_name_the_line_and_the_expected_form(text: str, message: str) -> None:
    with pytest.raises(ProcfileError) as error:
        parse(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


process_types = st.from_regex(PROCESS_TYPE, fullmatch=True)
commands = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40).map(str.strip).filter(bool)


@given(st.dictionaries(process_types, commands, max_size=5))
def test_render_then_parse_round_trips(processes: dict[str, str]) -> None:
    assert parse(render(processes)) == processes

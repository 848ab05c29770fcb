"""The structure is checked, not only described: imports run one way down the layers, and mypy passes.

Layers, top to bottom (DESIGN.md): server -> gitreceiver -> controller -> builder | keys -> core.
The import contract lives in pyproject.toml ([tool.importlinter]); mypy's settings too ([tool.mypy]).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PACKAGES = ("server", "gitreceiver", "controller", "builder", "keys", "core")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PATH": str(BIN), "PYTHONPATH": str(cwd)})


def _lint_with_scratch_import(tmp_path: Path, package: str, scratch: str, imported: str) -> subprocess.CompletedProcess[str]:
    """The contracts checked on a copy of the packages where `package`/`scratch`.py imports `imported`."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / package / f"{scratch}.py").write_text(f"import {imported}  # noqa: F401\n")
    return _lint_imports(tmp_path)


def test_imports_run_one_way_down_the_layers() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("lower", "upper"), [("core", "server"), ("controller", "gitreceiver"),
                                               ("builder", "controller"), ("keys", "builder")])
def test_a_back_import_breaks_the_contract(tmp_path: Path, lower: str, upper: str) -> None:
    result = _lint_with_scratch_import(tmp_path, lower, "scratch_back_import", upper)
    assert result.returncode != 0
    assert f"{lower}.scratch_back_import -> {upper}" in result.stdout


@pytest.mark.parametrize(("module", "imported", "broken"), [
    ("controller/runtime/local", "controller.runtime.kubernetes.manifests", "independent of each other"),
    ("controller/runtime/kubernetes", "controller.runtime.local.tenancy", "independent of each other"),
    ("core", "kubernetes.utils", "imported only by the Kubernetes runtime"),
    ("controller", "kubernetes", "imported only by the Kubernetes runtime"),
    ("server", "controller.runtime.local.tenancy", "through controller.runtime only"),
])
def test_an_inner_import_breaks_its_contract(tmp_path: Path, module: str, imported: str, broken: str) -> None:
    result = _lint_with_scratch_import(tmp_path, module, "scratch_inner_import", imported)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout, result.stdout


def test_mypy_passes_over_the_server_packages() -> None:
    result = subprocess.run([str(BIN / "mypy"), "--no-incremental"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_no_blanket_type_ignores() -> None:
    blanket = [f"{path.relative_to(ROOT)}:{number}" for package in PACKAGES for path in (ROOT / package).rglob("*.py")
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if "type: ignore" in line and "type: ignore[" not in line]
    assert blanket == []
    config = (ROOT / "pyproject.toml").read_text()
    assert "ignore_errors" not in config and "disable_error_code" not in config


def test_the_slug_programs_start_without_the_servers_libraries() -> None:
    """teresa-slugrunner starts for every process, fetch and release phase, teresa-slugbuilder for every
    build: importing SQLAlchemy, Alembic or aiohttp there cost 0.8 s per start (bench/serve.py)."""
    heavy = ("sqlalchemy", "alembic", "structlog", "aiohttp", "asyncssh", "kubernetes", "dulwich", "boto3")
    check = (f"import sys, builder.slugrunner, builder.slugbuilder; "
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the slug programs import {result.stdout.strip()}"

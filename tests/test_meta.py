"""Promises the repository makes about itself: the README's commands are the ones CI runs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_is_two_commands_install_ingest_and_test() -> None:
    commands = _quick_start_commands()
    assert len(commands) >= 2
    assert "gridpulse ingest --since 24h" in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _quick_start_commands()[1]
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci_script.splitlines()


def test_ci_starts_postgresql_when_down() -> None:
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert "pg_ctlcluster --skip-systemctl-redirect" in ci_script


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_test_installs_the_dev_tools_into_a_quick_start_venv(tmp_path: Path) -> None:
    """The quick start's venv has gridpulse but not pytest: `make test` must install the dev extras."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "gridpulse").touch()  # newer than pyproject.toml

    def planned() -> str:
        return subprocess.run(
            ["make", "-n", "test", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    assert "pip install -q -e '.[dev]'" in planned()
    (venv / "bin" / "pytest").touch()
    later = (ROOT / "pyproject.toml").stat().st_mtime + 10
    os.utime(venv / "bin" / "pytest", (later, later))
    assert planned().splitlines() == [f"{venv}/bin/pytest"]  # installed: nothing but the tests


def test_readme_runs_the_gap_backfill_when_gaps_check_finds_gaps() -> None:
    """`gaps --check` exits 8 when it finds gaps: the backfill belongs after `||`, not `&&`."""
    readme = (ROOT / "README.md").read_text()
    chained = [line for line in readme.splitlines() if re.search(r"gaps\b.*--check.*backfill", line)]
    assert chained, "the README shows the gaps-then-backfill line"
    for line in chained:
        assert "&&" not in line and re.search(r"--check\s*\|\|\s*gridpulse backfill --gaps", line), line


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_tests_share_one_helpers_module_and_bench_imports_nothing_from_tests() -> None:
    """Test modules import each other's helpers from tests.helpers only; the stub lives in testing/."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        crossed = {m for m in _imported_modules(path) if m.startswith("tests.test_")}
        assert not crossed, f"{path.name} imports {sorted(crossed)}: move the helper to tests/helpers.py"
    for path in sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "testing").glob("*.py")]):
        from_tests = {m for m in _imported_modules(path) if m == "tests" or m.startswith("tests.")}
        assert not from_tests, f"{path.relative_to(ROOT)} imports {sorted(from_tests)}"


def test_the_installed_package_has_every_subpackage(tmp_path: Path) -> None:
    """The quick start installs with `pip install .` (not editable): a subpackage missing from
    pyproject's package list is missing from the install, and every command fails."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "gridpulse_cli").rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"

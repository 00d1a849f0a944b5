"""What starting Consortia imports: ``consortia --version`` and ``--help`` stay instant.

Each check runs the real command line in a fresh interpreter and asserts on the modules it
imported, not on timings: the times are measured against a bare Typer app in
bench/bench_startup.py.
"""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from subprocess import CompletedProcess
from types import ModuleType

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from processes import START_SECONDS

ROOT = Path(__file__).resolve().parent.parent

#: Third-party packages the bare command line never needs (each costs 50-900 ms here).
HEAVY = (
    "scipy",
    "numpy",
    "matplotlib",
    "pandas",
    "pyarrow",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "jinja2",
    "pydantic",
    "pydantic_settings",
    "cryptography",
    "argon2",
    "yaml",
)
#: The only Consortia modules ``consortia --version`` and ``--help`` may import.
COMMAND_LINE = {
    "consortia",
    "consortia.__main__",
    "consortia.cli",
    "consortia.commands",
    "consortia.commands.deferred",
    "consortia.commands.outputs",
    "consortia.commands.registry",
    "consortia.exceptions",
}


#: ``python -m consortia ARGS`` that, on leaving, writes the modules it imported to OUT.
#: (``sys.modules`` is the whole truth: ``-X importtime`` does not list the modules imported
#: with ``importlib.import_module``, as the deferred commands and lazy packages are.)
COMMAND = """
import atexit, json, runpy, sys
out, sys.argv = sys.argv[1], ["consortia", *sys.argv[2:]]
atexit.register(lambda: open(out, "w", encoding="utf-8").write(json.dumps(sorted(sys.modules))))
runpy.run_module("consortia", run_name="__main__", alter_sys=True)
"""
#: The ``consortia`` script as pip writes it: import the entry point pyproject.toml names, call it.
SCRIPT = """
import atexit, json, sys
out, target, sys.argv = sys.argv[1], sys.argv[2], ["consortia", *sys.argv[3:]]
atexit.register(lambda: open(out, "w", encoding="utf-8").write(json.dumps(sorted(sys.modules))))
module, _, function = target.partition(":")
sys.exit(getattr(__import__(module, fromlist=[function]), function)())
"""
#: A bare interpreter, for the modules Python itself and the environment's .pth files import.
NOTHING = """
import json, sys
open(sys.argv[1], "w", encoding="utf-8").write(json.dumps(sorted(sys.modules)))
"""
IMPORT = """
import importlib, json, sys
importlib.import_module(sys.argv[2])
open(sys.argv[1], "w", encoding="utf-8").write(json.dumps(sorted(sys.modules)))
"""


def _run(script: str, tmp_path: Path, *args: str) -> tuple[set[str], CompletedProcess[str]]:
    out = tmp_path / "modules.json"
    completed = subprocess.run(
        [sys.executable, "-c", script, str(out), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=START_SECONDS,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return set(json.loads(out.read_text(encoding="utf-8"))), completed


def command_modules(tmp_path: Path, *args: str) -> tuple[set[str], CompletedProcess[str]]:
    """Run ``python -m consortia *args`` afresh: the modules it imported, and its run."""
    return _run(COMMAND, tmp_path, *args)


def modules_imported_by(tmp_path: Path, module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``module``."""
    return _run(IMPORT, tmp_path, module)[0]


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def console_script_target() -> str:
    """``module:function`` of the ``consortia`` script, as pyproject.toml declares it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target: str = pyproject["project"]["scripts"]["consortia"]
    return target


def _pin_version_modules(modules: set[str], tmp_path: Path) -> None:
    """``--version`` imports the package, its ``__main__`` and the standard library (for
    ``importlib.metadata``), nothing else: no Typer, click or rich, no command module."""
    bare = _run(NOTHING, tmp_path)[0]
    third_party = top_level(modules - bare) - set(sys.stdlib_module_names)
    assert sorted(third_party) == ["consortia"]
    ours = {name for name in modules if name.split(".")[0] == "consortia"}
    assert "consortia" in ours
    assert sorted(ours - {"consortia", "consortia.__main__"}) == []


@pytest.mark.parametrize("how", ["python -m consortia", "the consortia script"])
def test_version_alone_imports_only_the_package_and_the_standard_library(
    how: str, tmp_path: Path
) -> None:
    if how == "python -m consortia":
        modules, completed = command_modules(tmp_path, "--version")
    else:
        modules, completed = _run(SCRIPT, tmp_path, console_script_target(), "--version")
    _pin_version_modules(modules, tmp_path)
    through_typer = CliRunner().invoke(app, ["--version"])
    assert through_typer.exit_code == 0
    assert completed.stdout == through_typer.output
    assert completed.stderr == ""


def test_version_with_other_arguments_goes_to_the_command_line(tmp_path: Path) -> None:
    modules, completed = _run(SCRIPT, tmp_path, console_script_target(), "--version", "study")
    assert completed.stdout.startswith("consortia ")
    assert "consortia.cli" in modules


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_version_and_help_import_no_heavy_package_and_no_command_module(
    option: str, tmp_path: Path
) -> None:
    modules, completed = command_modules(tmp_path, option)
    assert completed.stdout.strip(), "the command printed nothing"
    assert sorted(top_level(modules) & set(HEAVY)) == []
    consortia_modules = {name for name in modules if name.split(".")[0] == "consortia"}
    assert sorted(consortia_modules - COMMAND_LINE) == []


def test_help_lists_the_deferred_node_commands_without_importing_them(tmp_path: Path) -> None:
    modules, completed = command_modules(tmp_path, "--help")
    for name in ("init", "serve", "backup", "restore", "db", "config", "data", "user", "token"):
        assert f" {name} " in completed.stdout, name
    assert "Migrate the node's database." in completed.stdout
    assert not any(name.startswith("consortia.commands.db") for name in modules)


def test_study_help_lists_load_without_importing_the_services(tmp_path: Path) -> None:
    modules, completed = command_modules(tmp_path, "study", "--help")
    assert "load" in completed.stdout
    assert "validate" in completed.stdout
    assert sorted(top_level(modules) & {"sqlalchemy", "alembic", "scipy", "matplotlib"}) == []
    assert "consortia.services" not in modules


def test_a_deferred_command_is_imported_when_it_runs(tmp_path: Path) -> None:
    modules, completed = command_modules(tmp_path, "db", "--help")
    assert "upgrade" in completed.stdout
    assert "consortia.commands.db" in modules


def test_importing_the_app_does_not_import_matplotlib(tmp_path: Path) -> None:
    modules = modules_imported_by(tmp_path, "consortia.app")
    assert "consortia.app" in modules
    assert sorted(top_level(modules) & {"matplotlib", "pandas"}) == []


def test_importing_one_statistics_module_imports_neither_plots_nor_the_others(
    tmp_path: Path,
) -> None:
    modules = modules_imported_by(tmp_path, "consortia.stats.survival")
    assert "matplotlib" not in top_level(modules)
    assert "consortia.stats.cox" not in modules


def test_importing_signing_does_not_import_the_federation_apps(tmp_path: Path) -> None:
    modules = modules_imported_by(tmp_path, "consortia.federation.signing")
    assert sorted(top_level(modules) & {"fastapi", "scipy", "matplotlib", "sqlalchemy"}) == []


@pytest.mark.parametrize("package_name", ["consortia.stats", "consortia.federation"])
def test_every_public_name_of_a_lazy_package_is_the_one_its_module_defines(
    package_name: str,
) -> None:
    package = importlib.import_module(package_name)
    locations: dict[str, str] = package._MODULES
    assert sorted(locations) == sorted(package.__all__)
    for name, module_name in locations.items():
        module: ModuleType = importlib.import_module(module_name)
        assert getattr(package, name) is getattr(module, name), name
        assert name in dir(package)


@pytest.mark.parametrize("package_name", ["consortia", "consortia.stats", "consortia.federation"])
def test_an_unknown_name_of_a_lazy_package_is_an_attribute_error(package_name: str) -> None:
    package = importlib.import_module(package_name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018
    assert not hasattr(package, "no_such_name")


def test_the_version_is_read_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import consortia

    assert consortia.__version__ == version("consortia")
    outcome = doctest.testmod(consortia)
    assert outcome.failed == 0
    assert outcome.attempted > 0

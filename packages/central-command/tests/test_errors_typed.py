"""The console library raises its own typed errors; the CLI's ``UsageError`` belongs
to the CLI edge (``cli``, ``cli_settings``, ``commands``), which alone turns errors
into exit codes (issue 19)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devfleet_command import cli
from devfleet_command.errors import AmbiguousActor, InvalidName, InvalidRequest, InvalidSpec, InvalidURL

PACKAGE = Path(cli.__file__).parent
EDGE = {"cli.py", "cli_settings.py", "errors.py", "__init__.py"}


def _library_modules() -> list[Path]:
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name not in EDGE and "commands" not in p.relative_to(PACKAGE).parts
    ]


def test_the_library_never_names_the_clis_usage_error() -> None:
    named = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in _library_modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Name) and node.id == "UsageError")
        or (isinstance(node, ast.alias) and node.name == "UsageError")
    ]
    assert named == []


@pytest.mark.parametrize("error", [InvalidRequest, InvalidURL, InvalidSpec, InvalidName, AmbiguousActor])
def test_the_cli_maps_the_typed_refusals_to_exit_2(error: type[InvalidRequest]) -> None:
    assert cli._exit_code(error("refused")) == cli.EXIT_USAGE


def test_a_bad_broker_url_is_still_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--broker", "mqtt://host:notaport", "ls"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devfleet: ") and err.count("\n") == 1

"""The CLI starts without its heavy dependencies (issue #21: `--version` under 0.3 s).

The timing itself is a benchmark (bench/bench_cli_startup.py); here, what makes it fast:
importing the app, printing the version and a job command's help load none of numpy,
polars, pyarrow, fastapi, sqlalchemy or httpx. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from aifactory.cli import LAZY, app, load_command

HEAVY = ("numpy", "polars", "pyarrow", "fastapi", "sqlalchemy", "httpx")

PROBE = """
import json, sys
from typer.testing import CliRunner
from aifactory.cli import app
args = json.loads(sys.argv[1])
if args:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))))
"""


@pytest.mark.parametrize(
    "args", [[], ["--version"], ["job", "list", "--help"], ["job", "--help"]], ids=str
)
def test_no_heavy_module_is_imported(args: list[str]) -> None:
    got = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(got.stdout) == []


def test_every_lazy_command_loads_under_its_name() -> None:
    for name in LAZY:
        assert load_command(name).name == name


def test_root_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in LAZY:
        assert name in result.output

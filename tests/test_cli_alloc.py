"""`aifactory project ...`, `aifactory alloc ...` and `plan train --request` against a live
server (issue #19): the request-endorse-approve cycle through the CLI, the statement as a
table, JSON and CSV, the platform report exported as CSV and Parquet (read back with Polars
and PyArrow), and clean errors (one line, exit 2)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from test_cli_client import live as live  # noqa: PLC0414 (the live-server fixture, reused)

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def token(db_url: str, tenant: str | None, role: str) -> tuple[int, str]:
    args = ["admin", "create-token", "--role", role, "--database-url", db_url, "--json"]
    if tenant:
        args += ["--tenant", tenant]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    return int(got["id"]), str(got["token"])


@pytest.fixture
def as_role(
    live: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, tuple[int, str]], Any]:
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.setenv("AIFACTORY_CONFIG", "/nonexistent/client.toml")
    tokens = {
        "admin": token(db_url, None, "admin"),
        "lab-admin": token(db_url, "lab", "tenant-admin"),
        "alice": token(db_url, "lab", "member"),
    }

    def cli(who: str, *args: str) -> Any:
        monkeypatch.setenv("AIFACTORY_TOKEN", tokens[who][1])
        return runner.invoke(app, list(args))

    return tokens, cli


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def test_the_cycle_through_the_cli(as_role: Any, tmp_path: Path) -> None:
    tokens, cli = as_role
    alice = str(tokens["alice"][0])
    made = ok(
        cli(
            "lab-admin",
            "project",
            "create",
            "kor-llm",
            "--start",
            "2026-01-01",
            "--end",
            "2027-01-01",
            "--pi",
            "Dr. Kim",
            "--member",
            alice,
            "--json",
        )
    )
    pid = str(json.loads(made.stdout)["id"])
    assert "kor-llm" in ok(cli("alice", "project", "list")).stdout
    req = ok(
        cli(
            "alice",
            "alloc",
            "request",
            "--project",
            pid,
            "--gpu-hours",
            "100",
            "--gpu-class",
            "h100",
            "--justification",
            "pretraining",
            "--json",
        )
    )
    aid = str(json.loads(req.stdout)["id"])
    assert json.loads(req.stdout)["state"] == "requested"
    # a member may not endorse; the error is one clean line, exit 2
    refused = cli("alice", "alloc", "endorse", aid)
    assert refused.exit_code == 2
    assert "endorse: tenant-admins" in refused.output
    assert "Traceback" not in refused.output
    ok(cli("lab-admin", "alloc", "endorse", aid, "--note", "core project"))
    approved = json.loads(ok(cli("admin", "alloc", "approve", aid, "--json")).stdout)
    assert approved["state"] == "active"
    topped = json.loads(
        ok(cli("admin", "alloc", "topup", aid, "--gpu-hours", "50", "--json")).stdout
    )
    assert topped["gpu_hours"] == 150
    extended = json.loads(
        ok(cli("admin", "alloc", "extend", aid, "--end", "2027-06-01", "--json")).stdout
    )
    assert extended["end_s"] == datetime(2027, 6, 1, tzinfo=UTC).timestamp()
    shown = ok(cli("alice", "alloc", "show", aid)).stdout
    assert "endorsed" in shown
    assert "topup +50 h" in shown
    assert aid in ok(cli("alice", "alloc", "list", "--project", pid)).stdout
    project_out = ok(cli("alice", "project", "show", pid)).stdout
    assert "B200" not in project_out
    assert "runs out: never at this rate" in project_out  # nothing charged yet

    month = datetime.now(UTC).strftime("%Y-%m")
    st_json = json.loads(
        ok(cli("alice", "project", "statement", pid, "--month", month, "--json")).stdout
    )
    assert st_json["gpu_hours"] == 0
    assert [a["id"] for a in st_json["allocations"]] == [int(aid)]
    st_csv = ok(cli("alice", "project", "statement", pid, "--month", month, "--csv")).stdout
    rows = list(csv.reader(io.StringIO(st_csv)))
    assert rows[0] == ["section", "key", "gpu_class", "gpu_hours"]
    assert ["balance", aid, "h100", "150.0"] in rows
    assert "kor-llm" in ok(cli("alice", "project", "statement", pid, "--month", month)).stdout

    # the platform report, exported; Polars and PyArrow read it back
    csv_path, pq_path = tmp_path / "report.csv", tmp_path / "report.parquet"
    ok(cli("admin", "alloc", "report", "--csv", str(csv_path), "--parquet", str(pq_path)))
    frame = pl.read_csv(csv_path)
    assert frame["project"].to_list() == ["kor-llm"]
    assert frame["granted_gpu_hours"].to_list() == [150.0]
    assert pq.read_table(pq_path).column("idle").to_pylist() == [True]
    assert cli("alice", "alloc", "report").exit_code == 2
    shown = ok(cli("admin", "alloc", "report")).stdout
    assert "by tenant" in shown
    assert "150.0" in shown

    # a second request, rejected by the tenant-admin before endorsement
    second = json.loads(
        ok(cli("alice", "alloc", "request", "--project", pid, "--gpu-hours", "5", "--json")).stdout
    )
    rejected = json.loads(
        ok(cli("lab-admin", "alloc", "reject", str(second["id"]), "--json")).stdout
    )
    assert rejected["state"] == "rejected"
    assert rejected["gpu_class"] is None  # B200-equivalent hours


def test_plan_train_request_fills_in_the_planners_gpu_hours(as_role: Any) -> None:
    _, cli = as_role
    made = ok(
        cli(
            "lab-admin",
            "project",
            "create",
            "p",
            "--start",
            "2026-01-01",
            "--end",
            "2027-01-01",
            "--json",
        )
    )
    pid = str(json.loads(made.stdout)["id"])
    plan = json.loads(
        ok(
            cli(
                "lab-admin",
                "plan",
                "train",
                "--params",
                "8e9",
                "--tokens",
                "1e12",
                "--gpu",
                "h100",
                "--gpus",
                "256",
                "--request",
                pid,
                "--json",
            )
        ).stdout
    )
    asked = plan["request"]
    assert asked["gpu_hours"] == plan["gpu_hours"]
    assert asked["estimate_gpu_hours"] == plan["gpu_hours"]
    assert asked["gpu_class"] == "h100"
    assert asked["state"] == "requested"
    assert "plan train" in asked["justification"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["project", "create", "x", "--start", "2026-13-01", "--end", "2027-01-01"], "--start"),
        (["project", "statement", "1", "--month", "2026-1"], "query.month"),
        (["alloc", "show", "999"], "404"),
        (["alloc", "request", "--project", "999", "--gpu-hours", "1"], "404"),
    ],
)
def test_errors_are_one_clean_line(as_role: Any, args: list[str], message: str) -> None:
    _, cli = as_role
    result = cli("alice", *args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert message in result.output
    assert "Traceback" not in result.output

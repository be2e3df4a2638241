"""The command-line client against a live server (Uvicorn in a thread), and the admin/db
commands against the database; errors are clean messages with exit 2 (1: unreachable)."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aifactory.cli import app, job_cmd
from aifactory.service import client as client_module
from aifactory.service import schemas
from aifactory.service.api import Service
from aifactory.service.auth import hash_token
from aifactory.service.client import ApiClient, ClientConfig, ClientError, load_config
from aifactory.service.settings import ExecutorKind, ServiceSettings
from cli_support import free_port, make_token, serving

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[str]:
    settings = ServiceSettings(
        database_url=db_url, data_dir=tmp_path, executor=ExecutorKind.NOOP, tick_s=0.05
    )
    with serving(Service(settings)) as url:
        yield url


def test_db_upgrade_and_current(db_url: str) -> None:
    first = runner.invoke(app, ["db", "current", "--database-url", db_url])
    assert first.exit_code == 0
    assert first.stdout.strip() == "none"
    up = runner.invoke(app, ["db", "upgrade", "--database-url", db_url])
    assert up.exit_code == 0
    assert "0007" in up.stdout
    assert runner.invoke(app, ["db", "upgrade", "--database-url", db_url]).exit_code == 0
    bad = runner.invoke(app, ["db", "upgrade", "--database-url", "mysql://x/y"])
    assert bad.exit_code == 2
    assert "unsupported backend" in bad.output


def test_admin_create_token_prints_it_once_and_stores_its_hash(db_url: str) -> None:
    result = runner.invoke(
        app,
        ["admin", "create-token", "--tenant", "lab", "--role", "member", "--database-url", db_url],
    )
    assert result.exit_code == 0
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("aif_")
    listed = runner.invoke(app, ["admin", "list-tokens", "--database-url", db_url, "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["tenant"], r["role"]) for r in rows] == [("lab", "member")]
    assert token not in listed.stdout
    assert hash_token(token) not in listed.stdout
    revoked = runner.invoke(
        app, ["admin", "revoke-token", str(rows[0]["id"]), "--database-url", db_url]
    )
    assert revoked.exit_code == 0
    again = runner.invoke(
        app, ["admin", "revoke-token", str(rows[0]["id"]), "--database-url", db_url]
    )
    assert again.exit_code == 2


def test_admin_tokens_can_expire_and_list_tokens_shows_it(db_url: str) -> None:
    made = runner.invoke(
        app,
        ["admin", "create-token", "--tenant", "lab", "--expires", "30d", "--database-url", db_url],
    )
    assert made.exit_code == 0, made.output
    assert "expires 20" in made.stdout
    runner.invoke(app, ["admin", "create-token", "--tenant", "lab", "--database-url", db_url])
    listed = runner.invoke(app, ["admin", "list-tokens", "--database-url", db_url, "--json"])
    rows = json.loads(listed.stdout)
    assert rows[0]["expires_at"] == pytest.approx(time.time() + 30 * 86_400, abs=60)
    assert rows[1]["expires_at"] is None
    table = runner.invoke(app, ["admin", "list-tokens", "--database-url", db_url])
    assert "expires" in table.stdout
    assert "never" in table.stdout
    for bad in ("3x", "10", "11y", "-1d"):
        refused = runner.invoke(
            app,
            [
                "admin",
                "create-token",
                "--tenant",
                "lab",
                "--expires",
                bad,
                "--database-url",
                db_url,
            ],
        )
        assert refused.exit_code == 2, bad
        assert "--expires" in refused.output
    huge = runner.invoke(app, ["admin", "revoke-token", str(2**63), "--database-url", db_url])
    assert huge.exit_code == 2
    assert "Traceback" not in huge.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "boss", "--tenant", "lab"], "--role: unknown role 'boss'"),
        (["--role", "member"], "--tenant: required"),
        (["--role", "member", "--tenant", "nobody"], "--tenant: unknown tenant 'nobody'"),
    ],
)
def test_admin_bad_input_is_exit_2(db_url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["admin", "create-token", *args, "--database-url", db_url])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_client_round_trip(live: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(db_url, "lab", "member")
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.setenv("AIFACTORY_TOKEN", token)
    sub = runner.invoke(
        app,
        [
            "job",
            "submit",
            "python train.py",
            "--gpus",
            "8",
            "--gpu-class",
            "h100",
            "--name",
            "t1",
            "--json",
        ],
    )
    assert sub.exit_code == 0, sub.output
    job = json.loads(sub.stdout)
    assert (job["tenant"], job["gpus"], job["name"]) == ("lab", 8, "t1")
    time.sleep(0.3)
    shown = json.loads(runner.invoke(app, ["job", "show", str(job["id"]), "--json"]).stdout)
    assert shown["state"] == "running"
    assert sum(len(p["gpus"]) for p in shown["placement"]) == 8
    table = runner.invoke(app, ["job", "show", str(job["id"])])
    assert table.exit_code == 0
    assert "history" in table.stdout
    listed = json.loads(runner.invoke(app, ["job", "list", "--json", "--state", "running"]).stdout)
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    assert "t1" in runner.invoke(app, ["job", "list"]).stdout
    quotas = json.loads(runner.invoke(app, ["quota", "--json"]).stdout)
    assert {r["tenant"] for r in quotas} == {"lab"}
    assert "h100" in runner.invoke(app, ["quota"]).stdout
    if importlib.util.find_spec("aifactory.twin.forecast") is not None:
        fc = runner.invoke(app, ["job", "forecast", str(job["id"]), "--json"])
        assert fc.exit_code == 0, fc.output
        assert json.loads(fc.stdout)["estimated_start"] is not None
    cancelled = runner.invoke(app, ["job", "cancel", str(job["id"]), "--json"])
    assert cancelled.exit_code == 0
    assert json.loads(cancelled.stdout)["cancel_requested"] is True


def test_submit_asks_for_memory_and_acceptable_classes(
    live: str, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--gpu-class a,b`` lists acceptable classes, ``--hbm-gb`` the memory per GPU (on
    the command line or a script's #AIF lines); an ask no GPU meets is refused with the
    reason (issue #17 §3)."""
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.setenv("AIFACTORY_TOKEN", make_token(db_url, "lab", "member"))
    args = ["job", "submit", "x", "--gpus", "8", "--gpu-class", "h100,gb200", "--hbm-gb", "80"]
    sub = runner.invoke(app, [*args, "--json"])
    assert sub.exit_code == 0, sub.output
    job = json.loads(sub.stdout)
    assert (job["gpu_class"], job["gpu_classes"], job["hbm_gb_per_gpu"]) == (
        None,
        ["h100", "gb200"],
        80.0,
    )
    one = json.loads(runner.invoke(app, [*args[:6], "h100", "--json"]).stdout)
    assert (one["gpu_class"], one["gpu_classes"]) == ("h100", None)
    table = runner.invoke(app, ["job", "list"])
    assert "h100,gb200 (>= 80 GB)" in table.stdout
    too_much = runner.invoke(app, ["job", "submit", "x", "--hbm-gb", "500"])
    assert too_much.exit_code == 2
    assert "hbm_gb_per_gpu" in too_much.output
    assert "not enough GPU memory" in too_much.output
    empty = runner.invoke(app, ["job", "submit", "x", "--gpu-class", "h100,"])
    assert empty.exit_code == 2
    assert "--gpu-class" in empty.output
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\n#AIF --gpus 8 --gpu-class gb200,h100 --hbm-gb 90\ntrue\n")
    from_script = json.loads(
        runner.invoke(app, ["job", "submit", "--script", str(script), "--json"]).stdout
    )
    assert (from_script["gpu_classes"], from_script["hbm_gb_per_gpu"]) == (["gb200", "h100"], 90.0)


def test_submit_carries_data_and_site_fields(
    live: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--site``, ``--cross-site``, ``--dataset``, ``--dataset-tb``, ``--data-site`` and
    ``--stage-hold`` reach the API (issue #20 §1); an unknown site is refused naming it."""
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.setenv("AIFACTORY_TOKEN", make_token(db_url, "lab", "member"))
    args = ["job", "submit", "x", "--gpus", "8", "--site", "seoul", "--dataset", "c"]
    args += ["--dataset-tb", "2.5", "--data-site", "busan", "--stage-hold", "--cross-site"]
    sub = runner.invoke(app, [*args, "--json"])
    assert sub.exit_code == 0, sub.output
    assert json.loads(sub.stdout)["data_ask"] == {
        "site": "seoul",
        "dataset": "c",
        "dataset_bytes": 2.5e12,
        "data_site": "busan",
        "allow_cross_site": True,
        "stage_hold": True,
    }
    bad = runner.invoke(app, ["job", "submit", "x", "--site", "jeju"])
    assert bad.exit_code == 2
    assert "unknown site 'jeju'" in bad.output


def test_client_errors_are_clean(live: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.delenv("AIFACTORY_TOKEN", raising=False)
    monkeypatch.setenv("AIFACTORY_CONFIG", "/nonexistent/client.toml")
    no_token = runner.invoke(app, ["job", "list"])
    assert no_token.exit_code == 2
    assert "no token" in no_token.output
    monkeypatch.setenv("AIFACTORY_TOKEN", make_token(db_url, "lab", "member"))
    bad = runner.invoke(app, ["job", "submit", "x", "--gpus", "4", "--gpu-class", "tpu"])
    assert bad.exit_code == 2
    assert "gpu_class" in bad.output
    missing = runner.invoke(app, ["job", "show", "999"])
    assert missing.exit_code == 2
    assert "not found" in missing.output
    monkeypatch.setenv("AIFACTORY_URL", f"http://127.0.0.1:{free_port()}")
    down = runner.invoke(app, ["job", "list"])
    assert down.exit_code == 1
    assert "cannot reach" in down.output
    assert "Traceback" not in down.output


def test_submits_are_retried_after_a_429_with_its_key_and_422s_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    seen: list[tuple[str, str]] = []
    answers = [
        httpx.Response(429, json={"detail": "limit"}, headers={"Retry-After": "3"}),
        httpx.Response(201, json={"id": 1}),
        httpx.Response(422, json={"detail": [{"field": "gpus", "reason": "bad"}]}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["Idempotency-Key"]))
        return answers.pop(0)

    api = ApiClient(ClientConfig("http://x", "aif_t"), transport=httpx.MockTransport(handler))
    assert api.submit({"gpus": 1, "command": "x"}, idempotency_key="k1") == {"id": 1}
    assert seen == [("/v1/jobs", "k1"), ("/v1/jobs", "k1")]
    assert slept == [3.0]
    with pytest.raises(ClientError, match="gpus: bad") as refused:
        api.submit({"gpus": 0, "command": "x"})
    assert refused.value.status == 422
    assert len(seen) == 3  # not retried


def test_client_reads_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "client.toml"
    cfg.write_text('url = "http://example:9000/"\ntoken = "aif_x"\n')
    monkeypatch.delenv("AIFACTORY_URL", raising=False)
    monkeypatch.delenv("AIFACTORY_TOKEN", raising=False)
    monkeypatch.setenv("AIFACTORY_CONFIG", str(cfg))
    got = load_config()
    assert (got.url, got.token) == ("http://example:9000", "aif_x")
    monkeypatch.setenv("AIFACTORY_TOKEN", "aif_env")
    assert load_config().token == "aif_env"


def test_submit_a_service_and_a_grace_and_list_them(
    live: str, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--service`` and ``--preempt-grace`` (on the command line or a script's #AIF
    lines) reach the job, and ``job list --json`` shows them (issue #18)."""
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.setenv("AIFACTORY_TOKEN", make_token(db_url, "lab", "member"))
    sub = runner.invoke(app, ["job", "submit", "x", "--service", "--json"])
    assert sub.exit_code == 0, sub.output
    assert (json.loads(sub.stdout)["service"], json.loads(sub.stdout)["preempt_grace_s"]) == (
        True,
        None,
    )
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\n#AIF --gpus 8 --preempt-grace 90\ntrue\n")
    from_script = runner.invoke(app, ["job", "submit", "--script", str(script), "--json"])
    assert json.loads(from_script.stdout)["preempt_grace_s"] == 90.0
    listed = json.loads(runner.invoke(app, ["job", "list", "--json"]).stdout)["items"]
    assert sorted((j["service"], j["preempt_grace_s"]) for j in listed) == [
        (False, 90.0),
        (True, None),
    ]
    too_long = runner.invoke(app, ["job", "submit", "x", "--preempt-grace", "3601"])
    assert too_long.exit_code == 2
    assert "--preempt-grace" in too_long.output


def test_the_clients_grace_bound_is_the_apis() -> None:
    assert job_cmd.MAX_JOB_GRACE_S == schemas.MAX_JOB_GRACE_S


def test_twin_whatif_talks_to_the_service(
    live: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`aifactory twin whatif`: the knobs go to POST /v1/twin/whatif (a shortcut and a JSON
    edit in order), --json prints its answer, the table its lines; a bad shortcut is a
    clean error before any call, and a member is refused by the service."""
    member = make_token(db_url, "lab", "member")
    admin = make_token(db_url, None, "admin")
    monkeypatch.setenv("AIFACTORY_URL", live)
    monkeypatch.setenv("AIFACTORY_TOKEN", member)
    refused = runner.invoke(app, ["twin", "whatif", "--failure-rate", "2"])
    assert refused.exit_code == 2
    assert "admin only" in refused.output
    monkeypatch.setenv("AIFACTORY_TOKEN", admin)
    args = ["twin", "whatif", "--failure-rate", "3", "--horizon-days", "1", "--samples", "2"]
    edit = '{"edit": "power_cap", "site": "busan", "power_mw": 2}'
    got = runner.invoke(app, [*args, "--edit", edit, "--seed", "5", "--json"])
    assert got.exit_code == 0, got.output
    r = json.loads(got.stdout)
    assert r["edits"] == 2
    assert (r["sampled"]["seed"], r["sampled"]["samples"]) == (5, 2)
    assert r["sampled"]["variant"]["rate_per_gpu_hour"] == pytest.approx(
        3 * r["sampled"]["base"]["rate_per_gpu_hour"]
    )
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "sampled forecast, seed 2030, 2 samples" in table.stdout
    bad = runner.invoke(app, ["twin", "whatif", "--growth", "lab"])
    assert bad.exit_code == 2
    assert "--growth: 'lab' is not TENANT=FACTOR" in bad.output

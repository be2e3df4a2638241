"""Slurm's habits in the CLI (issue #21 §2): time limits as sbatch takes them, squeue's
columns and compressed node lists, scancel by filters, batch scripts with #AIF lines.

The notations are tested as tables of cases; the commands through a live service (Uvicorn
in a thread, the noop executor: a started job stays running until cancelled).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.cli.slurm_fmt import (
    compress_nodes,
    format_duration,
    parse_time_limit,
    script_directives,
)
from cli_support import as_user, cli, live_service, make_token


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        ("10:30", 630),
        ("1:30:00", 5400),
        ("2-00:00:00", 172_800),
        ("1-12", 129_600),
        ("1-2:30", 95_400),
        (" 5 ", 300),
    ],
)
def test_time_limits_as_sbatch_reads_them(text: str, seconds: int) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "1:2:3:4", "-5", "1h", "0:00", "400-00:00:00"])
def test_bad_time_limits_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"time limit|more than"):
        parse_time_limit(text)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0, "0:00"), (59.9, "0:59"), (5400, "1:30:00"), (90_061, "1-01:01:01")],
)
def test_durations_as_squeue_shows_them(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        ([f"seoul/hgx/d{n - 96}/n{n}" for n in range(108, 144)], "seoul/hgx/n[108-143]"),
        (["a/n1", "a/n2", "a/n3", "a/n7", "a/n9", "a/n10"], "a/n[1-3,7,9-10]"),
        (["a/n5"], "a/n5"),
        (["b/n2", "a/n1", "b/n1"], "a/n1,b/n[1-2]"),
        (["x/n01", "x/n02", "x/n1"], "x/n1,x/n[01-02]"),
        (["head", "a/n1", "head"], "head,a/n1"),
    ],
)
def test_node_lists_are_compressed_like_hostlists(names: list[str], shown: str) -> None:
    assert compress_nodes(names) == shown


def test_directives_are_read_up_to_the_first_command() -> None:
    script = (
        "#!/bin/bash\n"
        "#AIF --gpus 8 -J 'big run'\n"
        "\n"
        "# a comment\n"
        "#AIF -t 1:00:00  # trailing comment\n"
        "#AIFX --ignored\n"
        "torchrun train.py\n"
        "#AIF --gpus 1\n"
    )
    assert script_directives(script) == ["--gpus", "8", "-J", "big run", "-t", "1:00:00"]
    with pytest.raises(ValueError, match="line 1"):
        script_directives("#AIF --name 'open\n")


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A live service and tokens (lab, a second lab member, startup), the CLI as lab."""
    db_url = f"sqlite:///{tmp_path}/slurm.db"
    with live_service(db_url, tmp_path) as (url, _):
        tokens = {
            "lab": make_token(db_url, "lab", "member"),
            "lab2": make_token(db_url, "lab", "member"),
            "admin": make_token(db_url, None, "admin"),
        }
        as_user(monkeypatch, url, tokens["lab"])
        tokens["url"] = url
        yield tokens


def ok_json(*args: str) -> Any:
    got = cli(*args, "--json")
    assert got.exit_code == 0, got.output
    return json.loads(got.stdout)


def wait_state(job_id: int, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        job: dict[str, Any] = ok_json("job", "show", str(job_id))
        if job["state"] == state or time.monotonic() > deadline:
            assert job["state"] == state, job
            return job
        time.sleep(0.05)


def test_submit_takes_slurm_time_limits(live: dict[str, str]) -> None:
    job = ok_json("job", "submit", "true", "-t", "1:30:00")
    assert job["time_limit_s"] == 5400
    assert ok_json("job", "submit", "true", "--time", "2-00:00:00")["time_limit_s"] == 172_800
    assert ok_json("job", "submit", "true", "--time-limit", "90")["time_limit_s"] == 5400
    bad = cli("job", "submit", "true", "-t", "1h")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: --time-limit: '1h' is not a time limit")


def test_submit_a_script_with_directives(live: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/bash\n#AIF --gpus 2 -t 10\n#AIF --gpu-class h100\necho hi\n")
    job = ok_json("job", "submit", "--script", str(script))
    assert (job["gpus"], job["gpu_class"], job["time_limit_s"]) == (2, "h100", 600)
    assert job["name"] == "train.sh"
    assert job["command"].startswith("exec /bin/bash -c ")
    # the command line wins over the script, as with sbatch
    job = ok_json("job", "submit", "--script", str(script), "--gpus", "4", "-J", "mine")
    assert (job["gpus"], job["name"], job["time_limit_s"]) == (4, "mine", 600)
    script.write_text("#AIF --gpus zero\ntrue\n")
    bad = cli("job", "submit", "--script", str(script))
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: --script: #AIF")
    script.write_text("#AIF --gpus 2 run-me\ntrue\n")  # a word, not an option
    bad = cli("job", "submit", "--script", str(script))
    assert bad.exit_code == 2
    assert bad.stderr == "error: --script: #AIF lines take options only, not the word 'run-me'\n"
    both = cli("job", "submit", "true", "--script", str(script))
    assert both.exit_code == 2


def test_list_is_like_squeue(live: dict[str, str]) -> None:
    # 288 h100 is all of lab's h100: the first runs, the second waits
    first = ok_json("job", "submit", "true", "--gpus", "288", "--gpu-class", "h100", "-J", "a")
    second = ok_json("job", "submit", "true", "--gpus", "288", "--gpu-class", "h100", "-J", "b")
    wait_state(first["id"], "running")
    table = cli("job", "list")
    assert table.exit_code == 0, table.output
    for header in ("JOBID", "STATE", "TIME", "TIME_LIMIT", "GPUS", "NODELIST(REASON)"):
        assert header in table.stdout
    assert "seoul/hgx/n[" in table.stdout  # 36 servers in one compressed list
    assert "RUNNING" in table.stdout
    assert "PENDING" in table.stdout
    assert "1:00:00" in table.stdout  # the default limit, 60 minutes
    assert "nodes: seoul/hgx/n[" in cli("job", "show", str(first["id"])).stdout
    pending = ok_json("job", "list", "--state", "PD")["items"]
    assert [j["id"] for j in pending] == [second["id"]]
    both = ok_json("job", "list", "-t", "pending,R")["items"]
    assert {j["id"] for j in both} == {first["id"], second["id"]}
    bad = cli("job", "list", "--state", "XX")
    assert bad.exit_code == 2
    assert "unknown state 'XX'" in bad.stderr


def test_me_is_the_jobs_of_this_token(
    live: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = ok_json("job", "submit", "true")
    monkeypatch.setenv("AIFACTORY_TOKEN", live["lab2"])
    theirs = ok_json("job", "submit", "true")
    assert [j["id"] for j in ok_json("job", "list", "--me")["items"]] == [theirs["id"]]
    assert {j["id"] for j in ok_json("job", "list")["items"]} == {mine["id"], theirs["id"]}


def test_cancel_several_ids_or_by_filters(live: dict[str, str]) -> None:
    ids = [ok_json("job", "submit", "true", "-J", n)["id"] for n in ("x", "x", "y", "z")]
    got = ok_json("job", "cancel", str(ids[0]), str(ids[3]))
    assert sorted(j["id"] for j in got) == [ids[0], ids[3]]
    by_name = ok_json("job", "cancel", "--name", "x")
    assert [j["id"] for j in by_name] == [ids[1]]  # ids[0] was cancelled already
    assert cli("job", "cancel", "--name", "none-such").stdout.strip() == "no job matched"
    assert ok_json("job", "cancel", "--state", "PD") == []  # y has started (1 GPU)
    assert [j["id"] for j in ok_json("job", "cancel", "--state", "R")] == [ids[2]]
    nothing = cli("job", "cancel")
    assert nothing.exit_code == 2
    assert nothing.stderr.startswith("error: give job ids")


def test_fleet_status_is_like_sinfo(live: dict[str, str]) -> None:
    job = ok_json("job", "submit", "true", "--gpus", "288", "--gpu-class", "h100")
    wait_state(job["id"], "running")
    rows = ok_json("fleet", "status")
    by_key = {(r["site"], r["pod"], r["gpu_class"], r["state"]): r for r in rows}
    hgx = by_key[("seoul", "hgx", "h100", "alloc")]
    assert (hgx["nodes"], hgx["gpus"], hgx["gpus_used"]) == (36, 288, 288)
    assert hgx["nodelist"].startswith("seoul/hgx/n[")
    assert by_key[("busan", "hgx", "b200", "idle")]["gpus"] == 288
    assert sum(r["gpus"] for r in rows) == 1008  # every GPU of demo, once
    table = cli("fleet", "status")
    assert table.exit_code == 0, table.output
    for word in ("SITE", "STATE", "NODELIST", "alloc", "idle", "seoul/hgx/n["):
        assert word in table.stdout


def test_share_is_like_sshare(live: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    job = ok_json("job", "submit", "true", "--gpus", "8", "--gpu-class", "h100")
    wait_state(job["id"], "running")
    time.sleep(0.2)
    monkeypatch.setenv("AIFACTORY_TOKEN", live["admin"])
    rows = {r["tenant"]: r for r in ok_json("share")}
    assert {t: r["shares"] for t, r in rows.items()} == {"lab": 576, "startup": 360, "public": 72}
    lab = rows["lab"]
    assert lab["usage_gpu_h"] > 0
    assert lab["running_gpus"] == 8
    assert lab["effective_usage"] == 1.0  # the only tenant that used anything
    # Slurm's classic factor 2^(-U/S): U = 1, S = 576 / 1008
    assert lab["fairshare"] == pytest.approx(2.0 ** (-1.0 / (576 / 1008)))
    assert rows["startup"]["fairshare"] == rows["public"]["fairshare"] == 1.0
    assert "FAIRSHARE" in cli("share").stdout
    monkeypatch.setenv("AIFACTORY_TOKEN", live["lab"])
    assert [r["tenant"] for r in ok_json("share")] == ["lab"]  # a member sees its own


def test_json_on_the_listing_commands(tmp_path: Path) -> None:
    fleets = {r["name"]: r for r in ok_json("fleet", "list")}
    assert fleets["demo"]["gpus"] == 1008
    assert "korea-2030" in {r["name"] for r in ok_json("scenario", "list")}
    src = tmp_path / "t.csv"
    src.write_text("id,submit,duration,gpus\n1,0,5,1\n2,1,-1,1\n")
    got = ok_json(
        "trace", "import", str(src), "--format", "csv", "-m", "submit=submit",
        "-m", "duration=duration", "-m", "gpus=gpus", "--out", str(tmp_path / "t.parquet"),
    )  # fmt: skip
    assert (got["rows_read"], got["rows_kept"], got["skipped"]) == (2, 1, {"negative duration": 1})


def test_json_on_run_and_db_current(tmp_path: Path) -> None:
    summary = ok_json(
        "run", "--fleet", "demo", "--days", "0.05", "--load", "0.5", "--failures", "off",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert summary["fleet"] == "demo"
    assert summary["jobs"] > 0
    assert (tmp_path / "run" / "summary.json").is_file()
    db = f"sqlite:///{tmp_path}/x.db"
    assert ok_json("db", "current", "--database-url", db) == {"revision": None}


def test_run_says_what_power_caps_and_lending_cost(tmp_path: Path) -> None:
    """The main job's text output: the caps' cost line (on, and off), as run prints it."""
    on = cli(
        "run", "--fleet", "demo", "--days", "0.05", "--load", "0.5", "--failures", "off",
        "--out", str(tmp_path / "on"),
    )  # fmt: skip
    assert on.exit_code == 0, on.output
    assert "power caps: on; no site's peak draw" in on.stdout
    off = cli(
        "run", "--fleet", "demo", "--days", "0.05", "--load", "0.5", "--failures", "off",
        "--power-cap", "off", "--out", str(tmp_path / "off"),
    )  # fmt: skip
    assert off.exit_code == 0, off.output
    assert "power caps: off" in off.stdout
    summary = json.loads((tmp_path / "off" / "summary.json").read_text())
    assert summary["power_cap"]["on"] is False
    bad = cli("run", "--fleet", "demo", "--power-cap", "maybe", "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2
    assert "--power-cap" in bad.output

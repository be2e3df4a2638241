"""`aifactory simulate` and `aifactory compare` through Typer's test runner (issue #3 §9).

Traces are written at run time into tmp_path (a normalised Parquet via ``write_trace``, and
small Philly / ITP CSVs in their own formats). Bad input must exit 2 with a message naming
the option, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.cli.simulate_cmd import tenant_rows
from aifactory.fleet import load_fleet
from aifactory.workload.schema import TRACE_SCHEMA
from aifactory.workload.traces import write_trace

CONTRACT = {
    "fleet", "trace", "policy", "backfill", "seed", "jobs", "completed", "unfinished",
    "rejected", "avg_jct_s", "p50_jct_s", "p99_jct_s", "avg_queue_s", "p50_queue_s",
    "p99_queue_s", "makespan_s", "utilization", "preemptions", "events", "wall_s", "per_tenant",
}  # fmt: skip


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def parquet_trace(tmp_path: Path) -> Path:
    """40 jobs for the demo fleet: tenants lab / startup / public / an unknown one (which goes
    to demo's default tenant, lab). Every job can run (at most 64 GPUs, any class, or H100
    for lab's own jobs) except j5, bigger than the fleet (2,000 GPUs)."""
    rng = np.random.default_rng(11)
    n = 40
    tenants = ["lab", "startup", "public", "nobody"]
    rows = {
        "job_id": [f"j{i}" for i in range(n)],
        "tenant": [tenants[i % 4] for i in range(n)],
        "submit_s": np.sort(rng.uniform(0, 3600, n)).tolist(),
        "duration_s": rng.uniform(60, 7200, n).tolist(),
        "gpus": [int(g) for g in rng.choice([1, 2, 4, 8, 16, 64], n)],
        "gpu_class": ["h100" if i % 8 == 0 else None for i in range(n)],  # tenant lab
        "estimate_s": [None] * n,
        "priority": [0] * n,
        "observed_start_s": [None] * n,
        "status": [None] * n,
    }
    rows["gpus"][5] = 2000
    path = tmp_path / "trace.parquet"
    write_trace(pa.table(rows, schema=TRACE_SCHEMA), path)
    return path


@pytest.fixture
def philly_csv(tmp_path: Path) -> Path:
    path = tmp_path / "philly.csv"
    lines = ["timestamp,duration,num_gpus,gpu_time,cluster"]
    lines += [
        f"2017-10-09 07:{i:02d}:00,{600 + 60 * i}.0,{[1, 2, 8][i % 3]},0,6214e9" for i in range(12)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def itp_csv(tmp_path: Path) -> Path:
    path = tmp_path / "itp.csv"
    lines = ["job_id,submission_time,duration,num_gpu"]
    lines += [f"job{i},{100 * i},{700 + i},{[1, 8, 16][i % 3]}" for i in range(9)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_simulate_json_and_out(runner: CliRunner, parquet_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["simulate", "--fleet", "demo", "--trace", str(parquet_trace), "--policy", "las",
         "--backfill", "none", "--seed", "3", "--out", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) >= CONTRACT
    for name in (
        "summary.json",
        "jobs.parquet",
        "timeseries.parquet",
        "report.html",
        "summary.png",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    written = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(written) >= CONTRACT
    assert (written["fleet"], written["policy"], written["backfill"], written["seed"]) == (
        "demo", "las", "none", 3,
    )  # fmt: skip
    assert written["trace"] == "trace.parquet"
    assert written["jobs"] == 40
    assert written["rejected"] == 1
    assert written["rejected_reasons"] == {"too big": 1}
    assert written["completed"] + written["unfinished"] + written["rejected"] == 40
    assert written["inputs"]["remapped_jobs"] == 10  # tenant 'nobody' -> demo's default 'lab'
    for t in written["per_tenant"].values():
        assert set(t) >= {"jobs", "avg_jct_s", "avg_queue_s", "gpu_hours"}
    assert {k: v for k, v in written.items() if k != "wall_s"} == {
        k: v for k, v in printed.items() if k != "wall_s"
    }
    jobs = pq.read_table(out / "jobs.parquet")
    assert jobs.num_rows == 40
    assert pq.read_table(out / "timeseries.parquet").num_rows > 1


def test_simulate_prints_a_table_without_json(runner: CliRunner, parquet_trace: Path) -> None:
    result = runner.invoke(app, ["simulate", "--fleet", "demo", "--trace", str(parquet_trace)])
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert "Per tenant" in result.stdout
    assert "rejected (too big): 1" in result.stdout


def test_simulate_is_deterministic_for_a_seed(runner: CliRunner, parquet_trace: Path) -> None:
    args = ["simulate", "--fleet", "demo", "--trace", str(parquet_trace), "--json",
            "--estimate-error", "0.5", "--seed", "7", "--policy", "sjf"]  # fmt: skip
    one = json.loads(runner.invoke(app, args).stdout)
    two = json.loads(runner.invoke(app, args).stdout)
    one.pop("wall_s")
    two.pop("wall_s")
    assert one == two


def test_simulate_time_scale_compresses_arrivals(
    runner: CliRunner, parquet_trace: Path, tmp_path: Path
) -> None:
    base = ["simulate", "--fleet", "demo", "--trace", str(parquet_trace), "--json"]
    slow = runner.invoke(app, [*base, "--out", str(tmp_path / "slow")])
    fast = runner.invoke(app, [*base, "--time-scale", "0.25", "--out", str(tmp_path / "fast")])
    assert slow.exit_code == fast.exit_code == 0
    assert json.loads(fast.stdout)["time_scale"] == 0.25
    submit = {
        name: np.array(pq.read_table(tmp_path / name / "jobs.parquet").column("submit_s"))
        for name in ("slow", "fast")
    }
    trace_submit = np.array(pq.read_table(parquet_trace).column("submit_s"))
    assert submit["slow"] == pytest.approx(trace_submit - trace_submit.min())
    assert submit["fast"] == pytest.approx(0.25 * submit["slow"])


def test_simulate_philly_and_itp_formats(
    runner: CliRunner, philly_csv: Path, itp_csv: Path
) -> None:
    result = runner.invoke(
        app, ["simulate", "--fleet", "philly-2017", "--trace", str(philly_csv),
              "--format", "philly", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["jobs"] == 12
    assert set(s["per_tenant"]) == {"6214e9"}  # the Philly tenant is the `cluster` column
    result = runner.invoke(
        app, ["simulate", "--fleet", "demo", "--trace", str(itp_csv), "--format", "itp", "--json"]
    )
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["jobs"] == 9
    assert set(s["per_tenant"]) == {"lab"}  # no tenants in ITP: all to the default tenant
    assert s["inputs"]["jobs_without_tenant"] == 9


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--policy", "bogus"], "--policy"),
        (["--time-scale", "0"], "--time-scale"),
        (["--time-scale", "-1"], "--time-scale"),
        (["--estimate-error", "-0.1"], "--estimate-error"),
        (["--backfill", "sometimes"], "--backfill"),
        (["--fleet", "no-such-fleet"], "no-such-fleet"),
        (["--preempt-grace", "-1"], "--preempt-grace"),
        (["--preempt-grace", "1e9"], "--preempt-grace"),
    ],
    ids=[
        "policy",
        "time-scale-0",
        "time-scale-negative",
        "estimate-error",
        "backfill",
        "fleet",
        "grace-negative",
        "grace-too-long",
    ],
)
def test_simulate_bad_input_exits_2(
    runner: CliRunner, parquet_trace: Path, extra: list[str], needle: str
) -> None:
    args = ["simulate", "--fleet", "demo", "--trace", str(parquet_trace), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_simulate_missing_trace_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    result = runner.invoke(app, ["simulate", "--fleet", "demo", "--trace", str(missing)])
    assert result.exit_code == 2
    assert "--trace" in result.stderr
    assert "nope.parquet" in result.stderr


def test_simulate_unreadable_trace_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    result = runner.invoke(app, ["simulate", "--fleet", "demo", "--trace", str(junk)])
    assert result.exit_code == 2
    assert "junk.csv" in result.stderr
    assert "Traceback" not in result.output


def test_compare_writes_json_and_html(
    runner: CliRunner, parquet_trace: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        ["compare", "--fleet", "demo", "--trace", str(parquet_trace),
         "--policy", "fifo,sjf,fair", "--out", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["policy"] for r in rows] == ["fifo", "sjf", "fair"]
    assert (out / "compare.html").is_file()
    doc = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert doc["baseline"] == "fifo"
    assert [s["policy"] for s in doc["summaries"]] == ["fifo", "sjf", "fair"]
    assert all(set(s) >= CONTRACT for s in doc["summaries"])
    assert len({s["jobs"] for s in doc["summaries"]}) == 1


def test_compare_table_and_bad_policy(runner: CliRunner, parquet_trace: Path) -> None:
    result = runner.invoke(
        app, ["compare", "--fleet", "demo", "--trace", str(parquet_trace), "--policy", "fifo,las"]
    )
    assert result.exit_code == 0, result.output
    assert "las" in result.stdout
    result = runner.invoke(
        app, ["compare", "--fleet", "demo", "--trace", str(parquet_trace), "--policy", "fifo,nope"]
    )
    assert result.exit_code == 2
    assert "nope" in result.stderr


def test_compare_with_preempt_grace_reports_gpu_hours_lost_per_policy(
    runner: CliRunner, parquet_trace: Path
) -> None:
    """``--preempt-grace`` reaches every policy's run, and each row says how many GPU-hours
    it lost to preemption and to failures."""
    result = runner.invoke(
        app,
        ["compare", "--fleet", "demo", "--trace", str(parquet_trace), "--policy", "fifo,las",
         "--time-scale", "0.05", "--preempt-grace", "30", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for row in rows:
        assert row["gpu_hours_lost_preemption"] >= 0.0
        assert row["gpu_hours_lost_failure"] == 0.0  # (no failures in this run)
    result = runner.invoke(
        app,
        ["simulate", "--fleet", "demo", "--trace", str(parquet_trace), "--policy", "las",
         "--time-scale", "0.05", "--preempt-grace", "30", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["preempt_grace_s"] == 30.0
    assert summary["saved_preemptions"] == summary["preemptions"]  # no checkpoint writes


def test_compare_with_allocations_holds_the_same_projects_in_every_policy(
    runner: CliRunner, parquet_trace: Path, tmp_path: Path
) -> None:
    """issue #19: compare takes --allocations as simulate does. lab's project is granted 2
    H100-hours, far less than its jobs ask, so in every policy's run some of them wait on
    the allocation; the per-project table compares the policies' use of the grant; a bad
    file is refused before any run, naming the field."""
    grants = tmp_path / "grants.yaml"
    grants.write_text(
        "projects: [{name: lab-p, tenant: lab}]\n"
        "grants: [{id: g1, project: lab-p, gpu_class: h100, gpu_hours: 2, end_h: 100}]\n",
        encoding="utf-8",
    )
    out = tmp_path / "cmp"
    args = ["compare", "--fleet", "demo", "--trace", str(parquet_trace), "--policy", "fifo,sjf"]
    result = runner.invoke(app, [*args, "--allocations", str(grants), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Per project (allocations: allocations)" in result.stdout
    assert "lab-p" in result.stdout
    doc = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    for s in doc["summaries"]:
        p = s["projects"]["lab-p"]
        assert p["used_b200h"] > 0
        assert p["jobs_held"] > 0  # 2 GPU-hours cannot cover lab's jobs
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0, plain.output
    assert "Per project" not in plain.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "projects: [{name: p, tenant: lab}]\n"
        "grants: [{id: g, project: p, gpu_hours: 1, start_h: 5, end_h: 1}]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, [*args, "--allocations", str(bad)])
    assert result.exit_code == 2
    assert "grants[0].end_h" in result.output


def test_the_per_tenant_table_shows_the_tenant_tree() -> None:
    """korea-2025's projects appear under their consortium, each parent a subtotal of the
    leaves below it (jobs run in leaves), in the fleet's tree order."""
    fleet = load_fleet("korea-2025")
    leaves = [t.name for t, _p, _c in fleet.iter_tenants() if not t.children]
    per_tenant = {
        name: {"jobs": i + 1, "gpu_hours": 10.0 * (i + 1), "energy_mwh": 1.0}
        for i, name in enumerate(sorted(leaves))
    }
    rows = tenant_rows(per_tenant, fleet)
    labels = [label for label, _v, _sub in rows]
    at = labels.index("  sovereign-lg")
    assert labels[at + 1 : at + 3] == ["    lg-foundation", "    lg-applied"]
    subtotals = {label.strip(): v for label, v, sub in rows if sub}
    assert set(subtotals) == {"government", "sovereign-lg", "sovereign-skt", "national-pool"}
    lg = subtotals["sovereign-lg"]
    assert lg["jobs"] == per_tenant["lg-foundation"]["jobs"] + per_tenant["lg-applied"]["jobs"]
    assert sorted(label.strip() for label, _v, sub in rows if not sub) == sorted(leaves)
    assert [label for label, _v, _sub in tenant_rows(per_tenant, None)] == list(per_tenant)

"""Interleaved A/B runs of the twin against a reference commit (issue #15 §4).

``python -m bench.bench_ab --ref 4815747`` puts a git worktree of the reference and one of
the head commit under /tmp, compiles each natively there with its own
``scripts/build_native.py`` (the compiled modules land in that worktree's ``src``; the
worktree this runs from is never built in), and then runs the four cases of
``bench/bench_twin.py`` -- Philly fifo, Philly las, one million korea-2025 jobs, the 30-day
national mix -- alternately on the two trees, each run in its own process with
``PYTHONPATH`` at that tree's ``src``. Within a round the order alternates (ref first,
then head first), so a slow phase of a shared machine lands on both sides.

Why pairs and instruction counts both: on a machine shared with other work, wall time
moves by more than the 5% the issue allows between two runs of the same build. A ratio of
medians over interleaved pairs takes most of that out; ``--cachegrind`` adds the number
of instructions Philly fifo and las execute under ``valgrind --tool=cachegrind``, which
does not move with load. The instruction counts are of the whole process minus a run
that only imports and reads the trace, so they are the simulation's (and its summary's).

``--features-off`` runs the head a second time with owner hardware and site power caps
switched off, to separate the cost of new work from a slowdown of old work.

In ``make bench`` (``python -m bench``) this module does nothing unless
``AIF_BENCH_AB_REF`` names a reference: it builds two trees, which takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.shared import PHILLY

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


TOLERANCE = 0.05  # issue #15 §4: each case within 5% of the reference

# One run of a case in the tree on PYTHONPATH; the figures as JSON on the last line. The
# same text as bench_twin.CHILD so both trees do identical work, except that it imports
# BackfillMode from where each tree has it and can switch new features off.
CHILD = r"""
import json, os, sys, time
import aifactory
try:
    from aifactory.scheduler.config import BackfillMode
except ImportError:  # the reference, before scheduler/core.py was split
    from aifactory.scheduler.core import BackfillMode
from aifactory.twin import run as twin_run
from aifactory.twin.run import TwinSpec, run_twin
features_off = os.environ.get("AIF_AB_FEATURES_OFF") == "1"
if features_off:  # owner hardware off (no TwinSpec field for it), power caps off below
    import dataclasses, functools
    twin_run.SchedulerConfig = functools.partial(twin_run.SchedulerConfig, owner_hardware=False)
kind, arg, policy, load = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
table = fleet = None
if kind in ("trace", "trace-load"):
    spec = TwinSpec(fleet="philly-2017", trace=arg, policy=policy)
    if kind == "trace-load":  # the baseline of an instruction count: no simulation
        twin_run.load_table(arg, None)
        print(json.dumps({"build": aifactory.BUILD}))
        raise SystemExit(0)
elif kind == "national":
    from aifactory.fleet import load_fleet
    from aifactory.twin.inputs import CheckpointPolicy
    from aifactory.workload.synth import synthesize
    fleet = load_fleet("korea-2025")
    days = float(arg)
    table = synthesize(fleet, days, load, seed=2025)
    spec = TwinSpec(fleet="korea-2025", trace="synth-national", policy=policy,
                    backfill=BackfillMode.EASY, seed=2025, failures="llama3",
                    checkpoint=CheckpointPolicy.TRACE, checkpoint_write_s=60.0,
                    backfill_interval_s=30.0, until_s=days * 86400.0)
else:
    from aifactory.fleet import load_fleet
    from aifactory.workload.synth import load_catalogue, synthesize
    fleet = load_fleet("korea-2025")
    research_only = load_catalogue().model_copy(update={"tenants": {}})
    days = float(arg)
    table = synthesize(fleet, days, load, seed=2025, catalogue=research_only)
    spec = TwinSpec(fleet="korea-2025", trace="synth-research-mix", policy=policy,
                    backfill=BackfillMode.EASY, seed=2025, backfill_interval_s=30.0,
                    until_s=days * 86400.0)
if features_off:
    spec = dataclasses.replace(spec, power_cap=False)
t0 = time.perf_counter()
run = run_twin(spec, table=table, fleet=fleet)
total = time.perf_counter() - t0
r = run.result
print(json.dumps({"jobs": len(r.jobs), "events": r.events, "sim_s": r.wall_s,
                  "total_s": total, "completed": run.summary["completed"],
                  "build": aifactory.BUILD}))
"""


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def prepare(ref: str, *, build: bool = True) -> Path:
    """A worktree of ``ref`` under /tmp, compiled natively there; its path. Named by the
    git tree of ``src``, so a commit that changes no source reuses the built worktree of
    an earlier one."""
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    src = _git("rev-parse", f"{sha}:src")
    tree = Path(tempfile.gettempdir()) / f"aif-ab-src-{src[:10]}"
    if not (tree / "src").is_dir():
        _git("worktree", "add", "--detach", str(tree), sha)
    elif _git("rev-parse", "HEAD:src", cwd=tree) != src:
        msg = f"{tree} holds other sources; remove it (git worktree remove --force)"
        raise RuntimeError(msg)
    if build and _build_state(tree) != "compiled":
        print(f"building {ref} ({sha[:10]}) natively in {tree} ...", flush=True)
        subprocess.run([PYTHON, "scripts/build_native.py"], cwd=tree, check=True)
    state = _build_state(tree)
    if build and state != "compiled":
        msg = f"{tree}: native build is {state}; see scripts/build_native.py's output"
        raise RuntimeError(msg)
    return tree


def _build_state(tree: Path) -> str:
    probe = "import aifactory.native as n; print(n.build_state()[0])"
    return subprocess.run(
        [PYTHON, "-c", probe], cwd=tree, env=_env(tree), check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


def _env(tree: Path, *, features_off: bool = False) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "AIFACTORY_PURE_PYTHON": "0"}
    env["AIF_AB_FEATURES_OFF"] = "1" if features_off else "0"
    return env


def child(
    tree: Path, case: tuple[str, str, str, float], *, features_off: bool = False
) -> dict[str, Any]:
    """One run of a case in its own process in ``tree``; its figures."""
    kind, arg, policy, load = case
    proc = subprocess.run(
        [PYTHON, "-c", CHILD, kind, arg, policy, str(load)],
        cwd=tree, env=_env(tree, features_off=features_off), capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        msg = f"{tree.name} {kind} {policy} failed:\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["build"] != "compiled":
        msg = f"{tree.name} ran the {got['build']} build, not the compiled one"
        raise RuntimeError(msg)
    return got


def instructions(tree: Path, case: tuple[str, str, str, float]) -> int:
    """Instructions executed by one run of ``case`` under cachegrind (no cache model)."""
    kind, arg, policy, load = case
    with tempfile.TemporaryDirectory(prefix="aif-ab-cg-") as tmp:
        proc = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no",
             f"--cachegrind-out-file={tmp}/cg.out", PYTHON, "-c", CHILD, kind, arg, policy,
             str(load)],
            cwd=tree, env=_env(tree), capture_output=True, text=True, check=False,
        )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        msg = f"cachegrind on {tree.name} {kind} {policy} failed:\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    return int(found.group(1).replace(",", ""))


def cases(
    jobs: int, national_days: float, only: str = ""
) -> dict[str, tuple[str, str, str, float]]:
    """The four cases of bench_twin.py, or those whose name has a word of ``only``
    (comma-separated); the 1M horizon for ``jobs`` jobs is bisected as bench_twin does."""
    # This checkout's sources (not an installed copy's) synthesise the horizon's jobs.
    sys.path[:0] = [str(REPO), str(REPO / "src")]
    from bench.bench_twin import LOAD, NATIONAL_LOAD, _days_for  # noqa: PLC0415

    words = [w for w in only.split(",") if w]
    korea = f"korea {jobs / 1e6:g}M jobs"
    names = ["philly fifo", "philly las", korea, f"national {national_days:g} d"]
    wanted = [n for n in names if not words or any(w in n for w in words)]
    out: dict[str, tuple[str, str, str, float]] = {}
    for name in wanted:
        if name.startswith("philly") and PHILLY.is_file():
            out[name] = ("trace", str(PHILLY), name.split()[1], LOAD)
        elif name == korea:
            out[name] = ("synth", f"{_days_for(jobs):.4f}", "fifo", LOAD)
        elif name.startswith("national"):
            out[name] = ("national", str(national_days), "fifo", NATIONAL_LOAD)
    return out


def compare(
    ref: Path, head: Path, chosen: dict[str, tuple[str, str, str, float]], rounds: int,
    *, features_off: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Interleaved pairs of every case; one row per case with every pair and the ratio."""
    rows: list[dict[str, Any]] = []
    for name, case in chosen.items():
        pairs: list[tuple[float, float]] = []
        for i in range(rounds):
            order = [(ref, False), (head, features_off)]
            if i % 2:
                order.reverse()
            got = {tree: float(child(tree, case, features_off=off)["sim_s"]) for tree, off in order}
            pairs.append((got[ref], got[head]))
            print(f"  {name} round {i + 1}: ref {got[ref]:.3f} s, head {got[head]:.3f} s, "
                  f"head/ref {got[head] / got[ref]:.3f}", flush=True)  # fmt: skip
        ratio = statistics.median(h for _, h in pairs) / statistics.median(r for r, _ in pairs)
        rows.append({
            "case": name + (" (head: owner hardware, power cap off)" if features_off else ""),
            "pairs": [[round(r, 3), round(h, 3)] for r, h in pairs],
            "ref_s": statistics.median(r for r, _ in pairs),
            "head_s": statistics.median(h for _, h in pairs),
            "ratio": ratio,
            "best_ratio": min(h for _, h in pairs) / min(r for r, _ in pairs),
            "within": ratio <= 1.0 + TOLERANCE,
        })  # fmt: skip
    return rows


def count(
    ref: Path, head: Path, chosen: dict[str, tuple[str, str, str, float]]
) -> list[dict[str, Any]]:
    """Instruction counts of the Philly cases on both trees, less each tree's load-only run."""
    rows: list[dict[str, Any]] = []
    philly = {k: v for k, v in chosen.items() if v[0] == "trace"}
    if not philly:
        return rows
    load_only = ("trace-load", str(PHILLY), "fifo", 0.0)
    base = {tree: instructions(tree, load_only) for tree in (ref, head)}
    for name, case in philly.items():
        got = {tree: instructions(tree, case) - base[tree] for tree in (ref, head)}
        rows.append({"case": f"{name} (instructions)", "ref": got[ref], "head": got[head],
                     "ratio": got[head] / got[ref]})  # fmt: skip
        print(f"  {name}: ref {got[ref]:,} head {got[head]:,} head/ref {got[head] / got[ref]:.4f}",
              flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    """Build both trees, run the pairs, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the reference commit (e.g. 4815747)")
    parser.add_argument("--head", default="HEAD", help="the commit measured against it")
    parser.add_argument("--rounds", type=int, default=3, help="pairs per case")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs of the korea case")
    parser.add_argument("--national-days", type=float, default=30.0)
    parser.add_argument("--only", default="", help="comma-separated words: cases to run")
    parser.add_argument("--cachegrind", action="store_true", help="count Philly instructions")
    parser.add_argument("--features-off", action="store_true",
                        help="also run head with owner hardware and power caps off")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ab.json")
    args = parser.parse_args(argv)
    ref, head = prepare(args.ref), prepare(args.head)
    chosen = cases(args.jobs, args.national_days, args.only)
    rows = compare(ref, head, chosen, args.rounds)
    if args.features_off:
        rows += compare(ref, head, chosen, args.rounds, features_off=True)
    counted = count(ref, head, chosen) if args.cachegrind else []
    print(f"\nref {args.ref} ({ref}) vs head {args.head} ({head}); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end")  # fmt: skip
    print(f"{'case':58} {'ref s':>8} {'head s':>8} {'ratio':>7}  pairs (ref, head)")
    for r in rows:
        mark = "ok" if r["within"] else "OVER"
        print(f"{r['case']:58} {r['ref_s']:8.3f} {r['head_s']:8.3f} {r['ratio']:7.3f}  "
              f"{mark} {r['pairs']}")  # fmt: skip
    for c in counted:
        print(f"{c['case']:58} {c['ref']:>14,} {c['head']:>14,} {c['ratio']:7.4f}")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"ref": args.ref, "head": args.head, "rows": rows,
                                    "instructions": counted}, indent=2))  # fmt: skip
    return 0 if all(r["within"] for r in rows) else 1


def run() -> list[dict[str, Any]]:
    """``make bench``'s hook: nothing unless ``AIF_BENCH_AB_REF`` names a reference."""
    ref = os.environ.get("AIF_BENCH_AB_REF")
    if not ref:
        return []
    head = prepare("HEAD")
    chosen = cases(int(os.environ.get("AIF_BENCH_JOBS", "1000000")), 30.0)
    return [
        {"name": f"A/B vs {ref}: {r['case']}, head/ref", "value": r["ratio"], "unit": "x",
         "target": f"<= {1 + TOLERANCE:g}", "ok": r["within"]}
        for r in compare(prepare(ref), head, chosen, 3)
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

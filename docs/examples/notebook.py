"""The Python API as a notebook uses it (tests/test_python_api.py runs this file in CI).

Run: python docs/examples/notebook.py [OUT_DIR]  (writes the reports under OUT_DIR).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import aifactory
from aifactory.workload.synth import synthesize


def main(out: Path) -> None:
    """Synthesise 6 hours on the demo fleet, replay it under two policies, plan a run."""
    fleet = aifactory.load_fleet("demo")
    trace = synthesize(fleet, 0.25, 0.5, 7)  # 6 hours at half of each quota, seed 7

    result = aifactory.simulate(fleet=fleet, trace=trace, policy="las", seed=7)
    print(
        f"LAS: {result.summary['completed']:,} jobs, avg JCT {result.summary['avg_jct_s']:,.0f} s"
    )
    jobs = result.jobs_frame()
    print(jobs.group_by("tenant").len().sort("tenant"))
    print("report:", result.report(out / "las"))

    both = aifactory.compare(fleet=fleet, trace=trace, policies=["fifo", "las"], seed=7)
    for row in both.rows:
        print(f"{row['policy']}: avg JCT ratio to fifo {row['avg_jct_s_ratio']:.3f}")
    both.report(out / "compare")

    plan = aifactory.plan_training(70e9, 2e12, "h100", gpus=1024)
    print(f"70B on 1,024 H100: {plan.wall_days:.1f} days")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))

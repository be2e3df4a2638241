"""Fit the research/dev job distributions to the Philly and ITP traces; write fitted.json.

Usage (from the project root)::

    .venv/bin/python scripts/fit_traces.py [--traces ../shared/traces] \
        [--out src/aifactory/workload/data/fitted.json]

The traces are read in place and never copied into the repository; only the fitted
parameters (a few kilobytes) are committed, with the SHA-256 of every input file so a
reader can tell which version of the traces they came from.

What is fitted, per dataset (``philly``, ``itp`` and ``pooled`` = both, one weight per job):

- the gang-size pmf, kept as exact job counts per size (sizes are few and discrete, so
  the empirical pmf *is* the best fit, and a KS test against the trace is then limited
  only by sampling noise);
- per size bucket (1, 2-4, 5-8, 9+ GPUs), the duration quantile function at ``Q + 1``
  equally spaced probabilities. Sampling interpolates log-duration linearly between
  neighbouring quantiles, so the synthetic CDF meets the empirical one at every knot and
  the KS distance of the representation is at most 1/Q. A log-normal is also fitted per
  bucket and stored for reference, but not used: Philly durations are multi-modal (a mass
  of sub-minute failed jobs plus a heavy multi-day tail), and a log-normal misses them by
  a KS distance of about 0.1 (printed by this script). Buckets keep the strong
  size-duration dependence (median 1,117 s at 1 GPU vs 23,683 s at 8 GPUs in Philly),
  which decides where the GPU-hours are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

QUANTILES = 400
BUCKETS: list[tuple[str, int, int | None]] = [
    ("1", 1, 1),
    ("2-4", 2, 4),
    ("5-8", 5, 8),
    ("9+", 9, None),
]

PHILLY_SOURCE = (
    "Microsoft Philly trace, 2017-09-04..2017-12-22 (Jeon et al., ATC'19); processed CSV "
    "from petuum/adaptdl osdi21-artifact simulator/traces/philly.csv"
)
ITP_SOURCE = (
    "Microsoft ITP clusters 01,04,05,07,08,09,10, 2021-03-04..2021-05-03 (Gu et al., "
    "ElasticFlow, ASPLOS'23; microsoft/elasticflow-traces, MIT); jobs < 600 s removed upstream"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_philly(root: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """Philly jobs as (gpus, duration_s); rows with a missing field are dropped."""
    path = root / "philly" / "philly.csv"
    df = (
        pl.read_csv(path, columns=["duration", "num_gpus"])
        .drop_nulls()
        .select(
            pl.col("num_gpus").cast(pl.Int64).alias("gpus"),
            pl.col("duration").cast(pl.Float64).alias("duration_s"),
        )
        .filter((pl.col("gpus") > 0) & (pl.col("duration_s") > 0))
    )
    return df, {"philly/philly.csv": _sha256(path)}


def read_itp(root: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """ITP jobs of every cluster file as (gpus, duration_s)."""
    files = sorted((root / "itp").glob("cluster*.csv"))
    if not files:
        msg = f"no ITP cluster files under {root / 'itp'}"
        raise FileNotFoundError(msg)
    frames = [
        pl.read_csv(f, columns=["duration", "num_gpu"]).select(
            pl.col("num_gpu").cast(pl.Int64).alias("gpus"),
            pl.col("duration").cast(pl.Float64).alias("duration_s"),
        )
        for f in files
    ]
    df = pl.concat(frames).drop_nulls().filter((pl.col("gpus") > 0) & (pl.col("duration_s") > 0))
    return df, {f"itp/{f.name}": _sha256(f) for f in files}


def _ks_lognormal(d: npt.NDArray[np.float64], mu: float, sigma: float) -> float:
    """KS distance between a sample and a fitted log-normal ."""
    x = np.sort(np.log(d))
    z = (x - mu) / (sigma * np.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z))
    n = len(x)
    hi = np.arange(1, n + 1) / n
    lo = np.arange(0, n) / n
    return float(max(np.max(hi - cdf), np.max(cdf - lo)))


def fit(df: pl.DataFrame, source: str) -> dict[str, Any]:
    """Size pmf and per-bucket duration quantiles (plus reference log-normal) of one dataset."""
    gpus = df["gpus"].to_numpy()
    dur = df["duration_s"].to_numpy()
    sizes, counts = np.unique(gpus, return_counts=True)
    probs = np.linspace(0.0, 1.0, QUANTILES + 1)
    buckets: dict[str, Any] = {}
    for name, lo, hi in BUCKETS:
        mask = (gpus >= lo) & (gpus <= (hi if hi is not None else np.iinfo(np.int64).max))
        d = dur[mask]
        if len(d) == 0:
            continue
        q = np.quantile(d, probs)
        logd = np.log(d)
        mu, sigma = float(logd.mean()), float(logd.std())
        buckets[name] = {
            "jobs": len(d),
            "quantiles_s": [round(float(v), 1) for v in q],
            "lognormal": {"mu": round(mu, 4), "sigma": round(sigma, 4)},
            "lognormal_ks": round(_ks_lognormal(d, mu, sigma), 4),
        }
    return {
        "source": source,
        "jobs": len(df),
        "size_counts": {"sizes": sizes.tolist(), "jobs": counts.tolist()},
        "mean_gpu_s": round(float((gpus * dur).mean()), 1),
        "durations": buckets,
    }


def main(argv: list[str]) -> int:
    """Read both traces, fit, and write the JSON (sorted keys, stable across runs)."""
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=here.parent / "shared" / "traces")
    parser.add_argument(
        "--out", type=Path, default=here / "src/aifactory/workload/data/fitted.json"
    )
    args = parser.parse_args(argv)
    root: Path = args.traces
    if not (root / "philly" / "philly.csv").is_file():
        sys.stderr.write(f"error: --traces: no philly/philly.csv under {root}\n")
        return 2
    philly, h1 = read_philly(root)
    itp, h2 = read_itp(root)
    pooled = pl.concat([philly, itp])
    doc: dict[str, Any] = {
        "schema_version": 1,
        "generated_by": "scripts/fit_traces.py",
        "method": (
            "size: empirical pmf (job counts); duration: empirical quantiles at "
            f"{QUANTILES + 1} equally spaced probabilities per size bucket, sampled by "
            "log-linear interpolation (KS distance of the representation <= 1/"
            f"{QUANTILES}); lognormal per bucket kept for reference only"
        ),
        "quantile_intervals": QUANTILES,
        "buckets": [{"name": n, "min_gpus": lo, "max_gpus": hi} for n, lo, hi in BUCKETS],
        "inputs_sha256": {**h1, **h2},
        "datasets": {
            "philly": fit(philly, PHILLY_SOURCE),
            "itp": fit(itp, ITP_SOURCE),
            "pooled": fit(pooled, "philly and itp together, one weight per job"),
        },
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, sort_keys=True)
    # One line per list of numbers: the file stays short and diffs stay readable.
    text = re.sub(r"\[([^\[\]{}\"]*)\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    out.write_text(text + "\n", encoding="utf-8")
    for name, ds in doc["datasets"].items():
        ks = {b: v["lognormal_ks"] for b, v in ds["durations"].items()}
        sys.stdout.write(f"{name}: {ds['jobs']} jobs; log-normal KS per bucket {ks}\n")
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

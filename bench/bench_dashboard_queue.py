"""The dashboard's queue page with 30,000 pending jobs (issue #21 §1: loads in under 1 s).

Times ``GET /v1/queue`` (every pending job with its reason and expected start) over a
SQLite database of 30,000 pending jobs of the demo fleet's three tenants: the first call
(the forecast and the reasons computed, one pass each on a fork of the database), then
calls within the service's fork cache (what a page refreshed by several people meets).
Run: ``python -m bench.bench_dashboard_queue [N]`` (prints one JSON line).

Measured (pure-Python build, 2 shared cores, 2026-12-02): 30,000 jobs did not answer
within 500 s; 2,000 jobs: 7.6 s cold, 7.0 s warm (the 1 s fork cache has expired by the
next call). So the target is NOT met: the forecast and the reasons are recomputed on a
fork of the database for every cache miss; they need to be incremental (or kept by the
leader) first. Where the time goes inside them is not profiled yet.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ExecutorKind, ServiceSettings
from aifactory.service.store import job_values
from aifactory.service.tables import jobs

N_JOBS = 30_000
TARGET_S = 1.0


def main(n_jobs: int = N_JOBS) -> None:
    """Fill a database, then time the queue endpoint cold and warm."""
    rng = np.random.default_rng(21)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp)}/q.db"
        settings = ServiceSettings(
            database_url=url, data_dir=Path(tmp), executor=ExecutorKind.NOOP, run_scheduler=False
        )
        service = Service(settings)
        with TestClient(create_app(service)) as client:
            now = time.time()
            _, token = create_token(service.db, tenant=None, role=Role.ADMIN, now=now)
            tenants = ["lab", "startup", "public"]
            classes = {"lab": "h100", "startup": "b200", "public": "gb200"}
            rows = []
            for i in range(n_jobs):
                tenant = tenants[int(rng.integers(3))]
                req = JobSubmit(
                    name=f"j{i}",
                    gpus=int(rng.choice([1, 2, 4, 8, 16])),
                    gpu_class=classes[tenant],
                    command="true",
                    time_limit_s=float(rng.integers(600, 86_400)),
                )
                rows.append(
                    job_values(req, tenant=tenant, token_id=1, now=now, idempotency_key=None)
                )
            with service.db.write() as conn:
                conn.execute(jobs.insert(), rows)
            auth = {"Authorization": f"Bearer {token}"}
            t0 = time.perf_counter()
            first = client.get("/v1/queue", headers=auth)
            cold = time.perf_counter() - t0
            assert first.status_code == 200, first.text
            body = first.json()
            warm = []
            for _ in range(5):
                t0 = time.perf_counter()
                client.get("/v1/queue", headers=auth)
                warm.append(time.perf_counter() - t0)
            started = sum(1 for j in body["items"] if j["estimated_start"] is not None)
            with_reason = sum(1 for j in body["items"] if j["reason"])
    print(
        json.dumps(
            {
                "bench": "dashboard_queue",
                "pending": body["total"],
                "with_expected_start": started,
                "with_reason": with_reason,
                "cold_s": round(cold, 3),
                "warm_median_s": round(statistics.median(warm), 3),
                "target_s": TARGET_S,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else N_JOBS)

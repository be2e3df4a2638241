"""The dashboard's what-if from the live state (issue #21 §1, the Twin page) with N pending
jobs: ``POST /v1/twin/whatif`` with the policy changed (two twin forecasts on one snapshot
of the database) over a SQLite database of N pending jobs of the demo fleet's three tenants,
made as bench_dashboard_queue makes its queue.
Run: ``python -m bench.bench_whatif [N]`` (prints one JSON line).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.settings import ExecutorKind, ServiceSettings
from bench.bench_dashboard_queue import fill_pending

N_JOBS = 1000


def main(n_jobs: int = N_JOBS) -> None:
    """Fill a database, then time one what-if (fifo against sjf)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp)}/q.db"
        settings = ServiceSettings(
            database_url=url, data_dir=Path(tmp), executor=ExecutorKind.NOOP, run_scheduler=False
        )
        service = Service(settings)
        with TestClient(create_app(service)) as client:
            now = time.time()
            _, token = create_token(service.db, tenant=None, role=Role.ADMIN, now=now)
            fill_pending(service, n_jobs, now)
            auth = {"Authorization": f"Bearer {token}"}
            t0 = time.perf_counter()
            resp = client.post("/v1/twin/whatif", json={"policy": "sjf"}, headers=auth)
            took = time.perf_counter() - t0
            assert resp.status_code == 200, resp.text
            body = resp.json()
    print(
        json.dumps(
            {
                "bench": "whatif",
                "pending": n_jobs,
                "jobs_compared": body["jobs_total"],
                "request_s": round(took, 3),
                "computed_s": round(body["seconds"], 3),
                "tenants": {
                    t["tenant"]: round((t["mean_start_delta_s"] or 0.0) / 3600, 2)
                    for t in body["tenants"]
                },
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else N_JOBS)

"""The quota API on a class that several owners own (issue #17 §1's split classes): a row
per owner's hardware, saying whose it is, what is borrowed on it, and what the tenant
borrows of the class over every lender's hardware, which its borrowing limit caps."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from aifactory.fleet import Fleet
from aifactory.fleet.loader import parse_fleet
from api_support import Env, running_api
from builders import hgx, tenant
from test_service_support import DB_PARAMS, database_url, wait_for


def three_owners() -> Fleet:
    """lab, startup and other each own one 8-GPU H100 server; lab may borrow 16."""
    return parse_fleet(
        {
            "name": "owners",
            "default_tenant": "lab",
            "sites": [
                {
                    "name": "s1",
                    "region": "R1",
                    "power_mw": 1.0,
                    "pue": 1.2,
                    "pods": [
                        {
                            "name": "hgx",
                            "groups": [hgx(1, "lab"), hgx(1, "startup"), hgx(1, "other")],
                        }
                    ],
                }
            ],
            "tenants": [
                tenant("lab", {"h100": {"nominal": 8, "borrowing_limit": 16}}, cohort="c"),
                tenant("startup", {"h100": 8}, cohort="c"),
                tenant("other", {"h100": 8}, cohort="c"),
            ],
        },
        "owners",
    )


def all_running(env: Env, ids: list[int]) -> bool:
    states = [env.client.get(f"/v1/jobs/{i}", headers=env.h("lab")) for i in ids]
    return all(s.json()["state"] == "running" for s in states)


@pytest.mark.parametrize("kind", DB_PARAMS)
def test_rows_per_owner_with_the_total_the_limit_caps(kind: str, tmp_path: Path) -> None:
    for url in database_url(kind, tmp_path):
        with running_api(url, tmp_path, fleet=three_owners()) as env:
            ids = [
                env.submit("lab", gpus=8, gpu_class="h100", name=f"j{i}").json()["id"]
                for i in range(3)
            ]
            wait_for(partial(all_running, env, ids))
            rows = env.client.get("/v1/quotas", headers=env.h("admin")).json()
            lab = {r["hardware_owner"]: r for r in rows if r["tenant"] == "lab"}
            assert {o: r["used"] for o, r in lab.items()} == {"lab": 8, "startup": 8, "other": 8}
            assert {o: r["borrowed"] for o, r in lab.items()} == {
                "lab": 0,
                "startup": 8,
                "other": 8,
            }
            assert {r["borrowed_total"] for r in lab.values()} == {16}
            lent = {(r["tenant"], r["hardware_owner"]): r["lent"] for r in rows if r["lent"]}
            assert lent == {("startup", "startup"): 8, ("other", "other"): 8}

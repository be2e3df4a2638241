"""A tenant-admin of a parent tenant sees and manages its subtree (issue #17 §2), through
the real service: it lists, reads and cancels the jobs of every tenant below its own and
sees their quotas; a project's admin sees neither its parent nor its siblings; a member
sees its own tenant alone. Runs on SQLite and PostgreSQL.

The tree (jobs run in leaves)::

    gov ─┬─ cons-a ─┬─ proj-a1        lab (a tenant of its own)
         │          └─ proj-a2
         └─ cons-b ─── proj-b1
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aifactory.fleet import Fleet
from aifactory.fleet.loader import parse_fleet
from aifactory.service.auth import Role, create_token, descendants_of
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url, wait_for

LEAVES = ("proj-a1", "proj-a2", "proj-b1", "lab")
TENANTS = ("gov", "cons-a", "proj-a1", "proj-a2", "cons-b", "proj-b1", "lab")


def tree_fleet() -> Fleet:
    """The tree's fleet, validated."""
    return parse_fleet(tree_raw(), "tree")


def tree_raw() -> dict[str, object]:
    """One site: 144 gb200 owned by gov and shared down its tree, 64 h100 of lab's."""
    site = {"region": "R1", "power_mw": 1.0, "pue": 1.2}

    def leaf(name: str, nominal: int) -> dict[str, object]:
        return {"name": name, "quotas": [{"gpu_class": "gb200", "nominal": nominal}]}

    return {
        "name": "tree",
        "default_tenant": "lab",
        "sites": [
            {
                "name": "s1",
                **site,
                "pods": [
                    {
                        "name": "nvl",
                        "groups": [{"model": "gb200", "domains": 2, "owner": "gov"}],
                    },
                    {
                        "name": "hgx",
                        "groups": [{"model": "h100", "domains": 8, "owner": "lab"}],
                    },
                ],
            }
        ],
        "tenants": [
            {
                **leaf("gov", 144),
                "cohort": "shared",
                "children": [
                    {
                        **leaf("cons-a", 96),
                        "children": [leaf("proj-a1", 48), leaf("proj-a2", 48)],
                    },
                    {**leaf("cons-b", 48), "children": [leaf("proj-b1", 48)]},
                ],
            },
            {
                "name": "lab",
                "cohort": "shared",
                "quotas": [{"gpu_class": "h100", "nominal": 64}],
            },
        ],
    }


# Tokens of the tree, beyond the ones running_api makes ("admin", "lab", "lab-admin").
TREE_ROLES = {
    "gov-admin": ("gov", Role.TENANT_ADMIN),
    "cons-a-admin": ("cons-a", Role.TENANT_ADMIN),
    "proj-a1-admin": ("proj-a1", Role.TENANT_ADMIN),
    "cons-a-member": ("cons-a", Role.MEMBER),
    "proj-a1-member": ("proj-a1", Role.MEMBER),
}


@dataclass
class Tree:
    """The running service, a token per role, and one job per leaf tenant."""

    env: Env
    job_of: dict[str, int]


def start(env: Env) -> Tree:
    for name, (tenant, role) in TREE_ROLES.items():
        env.tokens[name] = create_token(env.service.db, tenant=tenant, role=role, now=0.0)[1]
    job_of = {}
    for tenant in LEAVES:
        made = env.submit("admin", tenant=tenant, name=f"job-{tenant}", time_limit_s=600)
        assert made.status_code == 201, made.text
        job_of[tenant] = made.json()["id"]
    return Tree(env, job_of)


@pytest.fixture(scope="module", params=DB_PARAMS)
def tree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tree]:
    tmp = tmp_path_factory.mktemp(f"tree-{request.param}")
    for url in database_url(request.param, tmp):
        with running_api(url, tmp, fleet=tree_fleet()) as env:
            yield start(env)


# Who sees which tenants' jobs and quotas (every other tenant: 404 / 403 / left out).
CASES = [
    pytest.param("admin", set(TENANTS), id="admin-sees-all"),
    pytest.param("gov-admin", set(TENANTS) - {"lab"}, id="root-admin-sees-its-tree"),
    pytest.param("cons-a-admin", {"cons-a", "proj-a1", "proj-a2"}, id="parent-admin-sees-children"),
    pytest.param("proj-a1-admin", {"proj-a1"}, id="child-admin-not-parent-or-sibling"),
    pytest.param("cons-a-member", {"cons-a"}, id="member-of-parent-sees-own-only"),
    pytest.param("proj-a1-member", {"proj-a1"}, id="member-sees-own-only"),
    pytest.param("lab-admin", {"lab"}, id="admin-of-a-leaf-outside-the-tree"),
    pytest.param("lab", {"lab"}, id="member-outside-the-tree"),
]


@pytest.mark.parametrize(("who", "sees"), CASES)
def test_who_sees_which_jobs_and_quotas(tree: Tree, who: str, sees: set[str]) -> None:
    env, h = tree.env, tree.env.h(who)
    listed = env.client.get("/v1/jobs", headers=h).json()["items"]
    assert {j["tenant"] for j in listed} == sees & set(LEAVES)
    for tenant, job_id in tree.job_of.items():
        shown = env.client.get(f"/v1/jobs/{job_id}", headers=h)
        assert shown.status_code == (200 if tenant in sees else 404), (tenant, shown.text)
        forecast = env.client.get(f"/v1/jobs/{job_id}/forecast", headers=h)
        assert forecast.status_code == (200 if tenant in sees else 404), tenant
    for tenant in TENANTS:
        page = env.client.get("/v1/jobs", params={"tenant": tenant}, headers=h)
        assert page.status_code == (200 if tenant in sees else 403), (tenant, page.text)
        if page.status_code == 200:
            got = {j["id"] for j in page.json()["items"]}
            assert got == ({tree.job_of[tenant]} if tenant in LEAVES else set())
    quotas = env.client.get("/v1/quotas", headers=h).json()
    assert {r["tenant"] for r in quotas} == sees


def test_a_parent_admin_cancels_a_descendants_job_and_no_one_else_can(tree: Tree) -> None:
    env = tree.env
    job_id = env.submit("admin", tenant="proj-a2", name="to-cancel").json()["id"]
    for outsider in ("proj-a1-admin", "proj-a1-member", "cons-a-member", "lab-admin"):
        refused = env.client.delete(f"/v1/jobs/{job_id}", headers=env.h(outsider))
        assert refused.status_code == 404, outsider
    done = env.client.delete(f"/v1/jobs/{job_id}", headers=env.h("cons-a-admin"))
    assert done.status_code == 202, done.text
    wait_for(
        lambda: (
            env.client.get(f"/v1/jobs/{job_id}", headers=env.h("gov-admin")).json()["state"]
            == "cancelled"
        )
    )


def test_a_parent_admin_submits_as_its_own_tenant_only(tree: Tree) -> None:
    """Managing a subtree is seeing and cancelling; a job is submitted by the project's own
    tokens (whose allocations it is charged to)."""
    refused = tree.env.submit("cons-a-admin", tenant="proj-a1")
    assert refused.status_code == 403
    assert "proj-a1" in refused.json()["detail"]


@pytest.mark.parametrize("who", ["admin", "cons-a-admin", "cons-a-member"])
def test_a_job_for_a_tenant_with_children_is_refused(tree: Tree, who: str) -> None:
    """Jobs run in leaves: a submit to a parent is a 422 at once, not a job that the
    scheduler fails a cycle later."""
    resp = tree.env.submit(who, tenant="cons-a")
    assert resp.status_code == 422, resp.text
    (problem,) = resp.json()["detail"]
    assert problem["field"] == "tenant"
    assert "not a leaf" in problem["reason"]


def test_a_parent_admin_manages_the_tokens_of_its_subtree(tree: Tree) -> None:
    """As a Slurm account coordinator's rights cover the sub-accounts: the consortium's
    admin makes, lists and revokes tokens of its projects, never an admin token and never
    one of a sibling consortium's project; a project's admin, only its own."""
    env = tree.env

    def create(who: str, **body: object) -> Any:
        return env.client.post("/v1/tokens", json=body, headers=env.h(who))

    made = create("cons-a-admin", role="member", tenant="proj-a2", note="a2")
    assert made.status_code == 201, made.text
    token = made.json()
    mine = {"Authorization": f"Bearer {token['token']}"}
    own = env.client.get("/v1/jobs", headers=mine).json()["items"]
    assert {j["tenant"] for j in own} <= {"proj-a2"}
    assert create("cons-a-admin", role="tenant-admin", tenant="proj-a1").status_code == 201
    assert create("cons-a-admin", role="member", tenant="proj-b1").status_code == 403
    assert create("cons-a-admin", role="member", tenant="gov").status_code == 403
    assert create("cons-a-admin", role="admin").status_code == 403
    assert create("proj-a1-admin", role="member", tenant="proj-a2").status_code == 403
    listed = env.client.get("/v1/tokens", headers=env.h("cons-a-admin")).json()
    assert {t["tenant"] for t in listed} == {"cons-a", "proj-a1", "proj-a2"}
    listed = env.client.get("/v1/tokens", headers=env.h("proj-a1-admin")).json()
    assert {t["tenant"] for t in listed} == {"proj-a1"}
    url = f"/v1/tokens/{token['id']}"
    assert env.client.delete(url, headers=env.h("proj-a1-admin")).status_code == 404  # sibling
    assert env.client.delete(url, headers=env.h("lab-admin")).status_code == 404
    assert env.client.delete(url, headers=env.h("cons-a-admin")).status_code == 204
    assert env.client.get("/v1/jobs", headers=mine).status_code == 401


def test_descendants_of_a_tree() -> None:
    got = descendants_of([("gov", None), ("a", "gov"), ("a1", "a"), ("b", "gov"), ("x", None)])
    assert got == {
        "gov": {"a", "a1", "b"},
        "a": {"a1"},
        "a1": frozenset(),
        "b": frozenset(),
        "x": frozenset(),
    }

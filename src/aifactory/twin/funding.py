"""A funding round, drawn: N applicants ask for GPU-hours, a panel grants some (issue #19 §4).

``aifactory alloc synth --applicants N --seed S --out FILE`` writes the round as an
allocations file the twin replays (``simulate``/``run --allocations FILE``). The model, all
of it assumptions of ours (national calls publish their totals, not these laws):

- The applicants are projects of one tenant of the fleet (by default its default tenant:
  on korea-2025 the national pool's research users, i.e. universities, start-ups and
  public agencies). Each runs a share of the tenant's jobs: shares drawn from a flat
  Dirichlet, adding up to one.
- The round's budget is the tenant's capacity over the period: its nominal GPUs of each
  class x the period's hours, in B200-equivalent hours (``aifactory.allocations.rates``),
  times ``budget`` (default 1).
- Each applicant asks for its share of the budget times a log-normal factor (median
  ``ask``, default 1.5: applicants ask for more than they will use; spread 0.5), so some
  under-ask and run out while others leave time unused.
- The panel ranks the applicants by a uniform score and, in that order, grants each a cut
  of its request (a uniform fraction in [0.5, 1]) while the budget lasts; the rest are
  rejected (a grant of zero). Grants run over the whole period, without overdraft unless
  asked.

Everything comes from one ``numpy.random.Generator`` seeded with ``seed``: the same round
for the same inputs.
"""

from __future__ import annotations

import numpy as np

from aifactory.allocations import b200_rates
from aifactory.fleet import Fleet, compile_topology
from aifactory.twin.allocfile import AllocationsFile, GrantSpec, ProjectSpec

KINDS = ("university", "start-up", "public agency")
MAX_APPLICANTS = 10_000
ASK_SPREAD = 0.5  # sigma of the log-normal ask factor (assumption)
CUT = (0.5, 1.0)  # the panel grants this fraction of a request (assumption)


def leaf_capacity_b200h(fleet: Fleet, tenant: str, hours: float) -> float:
    """B200-equivalent hours of ``tenant``'s nominal quotas over ``hours``."""
    topo = compile_topology(fleet)
    rates = b200_rates(
        {c: m.bf16_tflops for c, m in zip(topo.classes, topo.class_model, strict=True)}
    )
    for t, _parent, _cohort in fleet.iter_tenants():
        if t.name == tenant:
            return sum(q.nominal * rates.get(q.gpu_class, 0.0) for q in t.quotas) * hours
    msg = f"--tenant: no tenant '{tenant}' in fleet {fleet.name}"
    raise ValueError(msg)


def funding_round(
    fleet: Fleet,
    applicants: int,
    seed: int,
    *,
    tenant: str | None = None,
    days: float = 14.0,
    budget: float = 1.0,
    ask: float = 1.5,
    overdraft: bool = False,
) -> AllocationsFile:
    """Draw a round (see the module docstring) as an allocations file."""
    if not 1 <= applicants <= MAX_APPLICANTS:
        msg = f"--applicants: must be between 1 and {MAX_APPLICANTS} (got {applicants})"
        raise ValueError(msg)
    if not 0 < days <= 3650:
        msg = f"--days: must be > 0 and <= 3650 (got {days})"
        raise ValueError(msg)
    if not 0 < budget <= 100 or not 0 < ask <= 100:
        msg = "--budget, --ask: must be > 0 and <= 100"
        raise ValueError(msg)
    who = tenant or fleet.default_tenant
    if who is None:
        msg = "--tenant: the fleet has no default tenant; name one"
        raise ValueError(msg)
    hours = days * 24.0
    pot = leaf_capacity_b200h(fleet, who, hours) * budget
    if pot <= 0:
        msg = f"--tenant: '{who}' has no quota with a B200-equivalent rate"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(applicants))
    asked = pot * shares * rng.lognormal(np.log(ask), ASK_SPREAD, applicants)
    order = np.argsort(-rng.uniform(size=applicants), kind="stable")
    cuts = rng.uniform(*CUT, applicants)
    kinds = rng.integers(0, len(KINDS), applicants)
    granted = np.zeros(applicants)
    left = pot
    for i in order:
        want = float(asked[i] * cuts[i])
        if want <= left:
            granted[i] = want
            left -= want
    width = len(str(applicants))
    projects, grants = [], []
    for i in range(applicants):
        name = f"applicant-{i + 1:0{width}d}"
        share = float(shares[i])  # (they add up to one within rounding, as the file allows)
        projects.append(
            ProjectSpec(
                name=name,
                tenant=who,
                title=f"{KINDS[int(kinds[i])]} applicant {i + 1}",
                share=share,
                start_h=0.0,
                end_h=hours,
            )
        )
        grants.append(
            GrantSpec(
                id=f"{name}-grant",
                project=name,
                gpu_hours=round(float(granted[i]), 3),
                requested_gpu_hours=round(float(asked[i]), 3),
                start_h=0.0,
                end_h=hours,
                overdraft=overdraft,
            )
        )
    return AllocationsFile(
        name=f"funding-round-{fleet.name}-n{applicants}-s{seed}",
        notes=(
            (
                f"drawn by aifactory alloc synth: {applicants} applicants of tenant '{who}', "
                f"seed {seed}, {days:g} days, budget {budget:g} x capacity, ask median {ask:g}x"
            ),
            (
                "assumptions: Dirichlet shares, log-normal asks (sigma 0.5), panel by uniform "
                "score granting 50-100% of a request while the budget lasts (twin/funding.py)"
            ),
        ),
        projects=tuple(projects),
        grants=tuple(grants),
    )

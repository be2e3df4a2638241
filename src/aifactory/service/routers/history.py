"""``/v1/metrics/samples``: the metrics history the leader keeps (issue #21 §1), read by the
dashboard's overview charts. Fleet-wide GPU and power figures are shown to every caller
(``/v1/fleet/status`` shows them too); pending GPUs only of the tenants the caller sees."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aifactory.service.api import Caller
from aifactory.service.errors import AUTHENTICATED, FieldError, responses
from aifactory.service.routers import ServiceDep
from aifactory.service.samples import MAX_POINTS, SAMPLE_S, read_samples

router = APIRouter(tags=["metrics"])

DAY_S = 86_400.0
# Bounds of a time in seconds since the epoch: 1970 to the year 2286; a float past them is
# a caller's mistake, and an infinite one cannot be compared with the column.
EPOCH_MAX = 1e10


class GpuCell(BaseModel):
    """GPUs of one site and class in one sample."""

    site: str
    gpu_class: str
    busy: int
    free: int
    down: int


class SitePower(BaseModel):
    """A site's estimated facility power in one sample, and its cap from the fleet."""

    site: str
    kw: float = Field(description="Busy GPUs at busy_watts, free at idle_watts, times PUE.")
    cap_kw: float = Field(description="The site's power_mw from the fleet spec, in kW.")


class Sample(BaseModel):
    """One 5-minute sample of the fleet."""

    at: float = Field(description="Start of the sample's slot, seconds since the epoch.")
    gpus: list[GpuCell]
    pending: dict[str, int] = Field(description="Pending GPUs per tenant (tenants seen).")
    power: list[SitePower]


Time = Annotated[float | None, Query(ge=0, le=EPOCH_MAX)]


@router.get(
    "/v1/metrics/samples", response_model=list[Sample], responses=responses(*AUTHENTICATED, 422)
)
def metrics_samples(
    who: Caller,
    service: ServiceDep,
    start: Annotated[Time, Query(description="From (seconds since the epoch); a day ago.")] = None,
    end: Annotated[Time, Query(description="Until (seconds since the epoch); now.")] = None,
    step: Annotated[
        float, Query(ge=SAMPLE_S, le=7 * DAY_S, description="Seconds between points.")
    ] = SAMPLE_S,
) -> list[Sample]:
    """Samples from ``start`` to ``end``, one per ``step`` (the last of each), at most
    2,000: a longer range needs a longer step."""
    until = service.clock() if end is None else end
    since = until - DAY_S if start is None else start
    if since > until:
        raise FieldError("query.start", "must not be after end")
    if math.floor((until - since) / step) + 1 > MAX_POINTS:
        raise FieldError("query.step", f"more than {MAX_POINTS} points: ask a longer step")
    reach = who.reach(service.descendants)
    out: list[Sample] = []
    for at, data in read_samples(service.db, since, until, step):
        pending = {t: g for t, g in data.get("pending", {}).items() if reach is None or t in reach}
        out.append(
            Sample(at=at, gpus=data.get("gpus", []), pending=pending, power=data.get("power", []))
        )
    return out

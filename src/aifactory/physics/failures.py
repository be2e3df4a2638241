"""The failure model: how often a GPU job is interrupted, by what, and how long repair takes.

Interruptions arrive as a Poisson process at ``rate_per_gpu_hour`` per GPU, so a job on
``g`` GPUs sees them at ``g * rate`` per hour (mean time to failure ``3600 / (g * rate)``
seconds). Why Poisson: Llama 3's 419 interruptions in 54 days on 16,384 GPUs and Meta's
research clusters (Kokolis et al.) both report a job MTTF that falls as ``1 / size``,
which is what independent per-GPU failures give.

Each interruption has a cause drawn by its share of the Llama 3 table-5 counts, and each
cause has a scope (a node outage, or only the job) and a lognormal repair time. The
simulator (:mod:`aifactory.twin`) turns these draws into events; this module only
describes and samples them, with a :class:`numpy.random.Generator` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from aifactory.fleet.errors import SpecError, problems_from
from aifactory.fleet.spec import Frozen, Name

_DATA = "aifactory.physics.data"

#: Bundled failure models by name, and the data file of each.
BUNDLED: dict[str, str] = {"llama3": "failures.yaml"}

#: Unexpected interruptions per GPU-hour in Llama 3 405B pre-training (facts.md §3).
LLAMA3_RATE_PER_GPU_HOUR = 2.0e-5

SECONDS_PER_HOUR = 3600.0


class Scope(StrEnum):
    """What a failure takes out of service."""

    NODE = "node"  # the node is out until repaired; the job re-places or waits for capacity
    JOB = "job"  # software: only the job restarts, the node stays in service


class RepairTime(Frozen):
    """A lognormal repair time: ``median_s * exp(sigma * Z)`` with ``Z`` standard normal.

    Lognormal because repair times are positive and right-skewed (most swaps take hours,
    a few wait days for parts); the median is the figure people quote.
    """

    median_s: float = Field(gt=0, description="Median repair time, seconds.")
    sigma: float = Field(ge=0, le=5, description="Standard deviation of log(repair time).")
    source: str = Field(min_length=1, description="Where the figures come from, or 'assumption'.")

    @property
    def mean_s(self) -> float:
        """Mean repair time, seconds (``median * exp(sigma^2 / 2)``)."""
        return self.median_s * math.exp(self.sigma**2 / 2)

    def sample_s(self, rng: np.random.Generator) -> float:
        """One repair time, seconds."""
        return self.median_s * math.exp(self.sigma * rng.standard_normal())


class Cause(Frozen):
    """One cause of interruption, with its observed count, scope and repair time."""

    name: Name = Field(description="Identifier, e.g. 'faulty-gpu'.")
    label: str = Field(min_length=1, description="Human-readable name.")
    count: int = Field(ge=0, description="Interruptions observed with this cause.")
    scope: Scope = Field(description="'node': node out until repaired; 'job': only the job.")
    repair: RepairTime = Field(description="Repair time (for 'job' scope: relaunch delay).")

    def sample_repair_s(self, rng: np.random.Generator) -> float:
        """One repair time for this cause, seconds."""
        return self.repair.sample_s(rng)


@dataclass(frozen=True, slots=True)
class FailureDraws:
    """Failures drawn for a horizon, as parallel arrays sorted by time."""

    times_s: npt.NDArray[np.float64]  # seconds from the start of the horizon
    gpu_index: npt.NDArray[np.int64]  # which GPU (0 .. gpus-1) fails
    cause: npt.NDArray[np.intp]  # index into FailureModel.causes
    repair_s: npt.NDArray[np.float64]  # repair (or relaunch delay) seconds

    def __len__(self) -> int:
        return len(self.times_s)


class FailureModel(Frozen):
    """A per-GPU-hour interruption rate split into causes; loaded from YAML, frozen after."""

    name: Name
    description: str = ""
    rate_per_gpu_hour: float = Field(
        default=LLAMA3_RATE_PER_GPU_HOUR,
        ge=0,
        description="Unexpected interruptions per GPU-hour (Poisson, independent GPUs).",
    )
    rate_source: str = Field(default="assumption", min_length=1)
    counts_source: str = Field(default="assumption", min_length=1)
    causes: list[Cause] = Field(min_length=1, description="Causes with their observed counts.")

    @field_validator("causes")
    @classmethod
    def _unique_causes(cls, causes: list[Cause]) -> list[Cause]:
        seen: set[str] = set()
        for i, cause in enumerate(causes):
            if cause.name in seen:
                msg = f"[{i}].name: duplicate '{cause.name}'"
                raise ValueError(msg)
            seen.add(cause.name)
        return causes

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.total == 0:
            msg = "causes: counts must not all be 0"
            raise ValueError(msg)
        return self

    @property
    def total(self) -> int:
        """Interruptions observed over all causes (419 for Llama 3)."""
        return sum(c.count for c in self.causes)

    @property
    def shares(self) -> npt.NDArray[np.float64]:
        """Share of each cause (``count / total``), in ``causes`` order."""
        counts = np.array([c.count for c in self.causes], dtype=np.float64)
        out: npt.NDArray[np.float64] = counts / counts.sum()
        return out

    def cause(self, name: str) -> Cause:
        """The cause called ``name``; KeyError if there is none."""
        for c in self.causes:
            if c.name == name:
                return c
        raise KeyError(name)

    def with_rate(self, rate_per_gpu_hour: float) -> FailureModel:
        """The same cause mix at another rate (e.g. ``--failure-rate``), validated."""
        data = self.model_dump()
        data["rate_per_gpu_hour"] = rate_per_gpu_hour
        data["rate_source"] = "given by the user"
        return _validate(data, self.name)

    def job_mttf_s(self, gpus: int) -> float:
        """Mean time to failure of a job on ``gpus`` GPUs at this model's rate, seconds."""
        return job_mttf_s(gpus, self.rate_per_gpu_hour)

    def sample_cause(self, rng: np.random.Generator) -> Cause:
        """Draw one cause by its share; uses exactly one uniform draw from ``rng``."""
        return self.causes[int(self.sample_cause_indices(rng, 1)[0])]

    def sample_cause_indices(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.intp]:
        """Draw ``n`` causes at once, as indices into ``causes`` (same stream as sample_cause)."""
        cumulative = np.cumsum(self.shares)
        cumulative[-1] = 1.0  # guard against rounding leaving a sliver above the last cause
        idx: npt.NDArray[np.intp] = np.searchsorted(cumulative, rng.random(n), side="right")
        return idx

    def sample_repairs_s(
        self, rng: np.random.Generator, indices: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float64]:
        """Repair times, seconds, for causes given by index (vectorised ``sample_repair_s``)."""
        medians = np.array([c.repair.median_s for c in self.causes])[indices]
        sigmas = np.array([c.repair.sigma for c in self.causes])[indices]
        out: npt.NDArray[np.float64] = medians * np.exp(sigmas * rng.standard_normal(len(indices)))
        return out

    def sample_failures(
        self, rng: np.random.Generator, gpus: int, horizon_s: float
    ) -> FailureDraws:
        """All interruptions of ``gpus`` GPUs over ``[0, horizon_s)``, drawn at once.

        Why at once: a fleet of 300,000 GPUs sees hundreds of failures a day; drawing
        the whole Poisson process up front (count, then uniform times, sorted) lets the
        simulator push them as events without a per-failure Python call. Each failure
        hits one GPU chosen uniformly, has a cause by share and a repair time.
        """
        if gpus <= 0:
            msg = f"gpus: must be > 0 (got {gpus})"
            raise ValueError(msg)
        if not horizon_s >= 0:
            msg = f"horizon_s: must be >= 0 (got {horizon_s})"
            raise ValueError(msg)
        mean = expected_interruptions(gpus, self.rate_per_gpu_hour, horizon_s)
        n = int(rng.poisson(mean))
        times = np.sort(rng.random(n) * horizon_s)
        gpu_index = rng.integers(0, gpus, size=n)
        causes = self.sample_cause_indices(rng, n)
        repairs = self.sample_repairs_s(rng, causes)
        return FailureDraws(times_s=times, gpu_index=gpu_index, cause=causes, repair_s=repairs)

    def sample_time_to_failure_s(self, rng: np.random.Generator, gpus: int) -> float:
        """Seconds until the next interruption of a job on ``gpus`` GPUs (inf at rate 0)."""
        mttf = self.job_mttf_s(gpus)
        return math.inf if math.isinf(mttf) else float(rng.exponential(mttf))


def job_mttf_s(gpus: int, rate_per_gpu_hour: float) -> float:
    """Mean time to failure of a job on ``gpus`` GPUs: ``3600 / (gpus * rate)`` seconds.

    ``inf`` when the rate is 0 (no failures). Llama 3: 16,384 GPUs at 2e-5 give ~3.05 h.
    """
    if gpus <= 0:
        msg = f"gpus: must be > 0 (got {gpus})"
        raise ValueError(msg)
    if rate_per_gpu_hour < 0:
        msg = f"rate_per_gpu_hour: must be >= 0 (got {rate_per_gpu_hour})"
        raise ValueError(msg)
    if rate_per_gpu_hour == 0:
        return math.inf
    return SECONDS_PER_HOUR / (gpus * rate_per_gpu_hour)


def expected_interruptions(gpus: int, rate_per_gpu_hour: float, seconds: float) -> float:
    """Expected interruptions of a job on ``gpus`` GPUs over ``seconds`` of wall time."""
    if seconds < 0:
        msg = f"seconds: must be >= 0 (got {seconds})"
        raise ValueError(msg)
    return gpus * rate_per_gpu_hour * seconds / SECONDS_PER_HOUR


def bundled_failure_models() -> list[str]:
    """Names of the failure models shipped with the package."""
    return sorted(BUNDLED)


def load_failure_model(name_or_path: str | Path) -> FailureModel:
    """Load a bundled failure model by name (``llama3``) or a YAML file by path.

    ``off`` (no failures) is the caller's business: it needs no model at all.
    Raises :class:`SpecError` with ``path: problem`` messages.
    """
    name = str(name_or_path)
    if name in BUNDLED:
        text = resources.files(_DATA).joinpath(BUNDLED[name]).read_text(encoding="utf-8")
        source = name
    else:
        path = Path(name_or_path)
        if path.suffix not in {".yaml", ".yml"} and not path.exists():
            known = ", ".join(bundled_failure_models())
            raise SpecError(
                [f"no bundled failure model or file of that name (bundled: {known})"], name
            )
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(["file not found"], source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError([f"cannot read ({exc})"], source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", exc)
        raise SpecError([f"{where}not valid YAML ({problem})"], source) from None
    return _validate(raw, source)


def _validate(raw: Any, source: str) -> FailureModel:
    if not isinstance(raw, dict):
        raise SpecError(["document: must be a mapping with 'name' and 'causes'"], source)
    try:
        return FailureModel.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source) from None

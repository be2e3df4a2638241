"""The job-class catalogue (``classes.yaml``) and the fitted trace data (``fitted.json``), typed.

Both are bundled data, loaded and validated once; a user may pass their own
``classes.yaml`` to override every figure. The types are frozen pydantic records so a
typo in a hand-edited file is an error naming the field, not a silently ignored key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aifactory.fleet.errors import SpecError, problems_from
from aifactory.workload.synth import exact

_DATA = "aifactory.workload.data"
DAY_S = 86_400.0
REQUIRED_SOURCES = ("size", "duration", "arrival", "estimate")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class SizeKind(StrEnum):
    """How a class draws gang sizes."""

    FITTED = "fitted"
    CHOICE = "choice"
    LOG_UNIFORM = "log_uniform"


class DurationKind(StrEnum):
    """How a class draws true run times."""

    FITTED = "fitted"
    LOGNORMAL = "lognormal"
    LOG_UNIFORM = "log_uniform"


class ArrivalKind(StrEnum):
    """How a class's jobs are placed in time."""

    POISSON = "poisson"
    BURST = "burst"
    STANDING = "standing"


class FittedSize(_Frozen):
    """Empirical size pmf of a fitted trace dataset, optionally scaled by a whole factor."""

    kind: Literal[SizeKind.FITTED]
    dataset: str = Field(description="Dataset of fitted.json: philly, itp or pooled.")
    scale: int = Field(default=1, ge=1, description="Multiply every size (node granularity).")


class ChoiceSize(_Frozen):
    """Sizes from a short list with weights."""

    kind: Literal[SizeKind.CHOICE]
    values: list[Annotated[int, Field(gt=0)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.values) != len(self.weights):
            msg = "weights: must have one weight per value"
            raise ValueError(msg)
        return self


class LogUniformSize(_Frozen):
    """Sizes log-uniform in [min, max], rounded to a multiple of ``granularity``."""

    kind: Literal[SizeKind.LOG_UNIFORM]
    min: int = Field(gt=0)
    max: int = Field(gt=0)
    granularity: int = Field(default=1, gt=0, description="Sizes are multiples of this.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max < self.min:
            msg = "max: must be >= min"
            raise ValueError(msg)
        return self


class FittedDuration(_Frozen):
    """Durations from the fitted per-size-bucket quantile functions of a dataset."""

    kind: Literal[DurationKind.FITTED]
    dataset: str = Field(description="Dataset of fitted.json: philly, itp or pooled.")


class LognormalDuration(_Frozen):
    """Log-normal durations given by median and log-space sigma, clipped to [min_s, max_s]."""

    kind: Literal[DurationKind.LOGNORMAL]
    median_s: float = Field(gt=0)
    sigma: float = Field(ge=0)
    min_s: float = Field(gt=0)
    max_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.min_s <= self.median_s <= self.max_s:
            msg = "median_s: must lie within [min_s, max_s]"
            raise ValueError(msg)
        return self


class LogUniformDuration(_Frozen):
    """Durations log-uniform in [min_s, max_s]."""

    kind: Literal[DurationKind.LOG_UNIFORM]
    min_s: float = Field(gt=0)
    max_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max_s < self.min_s:
            msg = "max_s: must be >= min_s"
            raise ValueError(msg)
        return self


SizeSpec = Annotated[FittedSize | ChoiceSize | LogUniformSize, Field(discriminator="kind")]
DurationSpec = Annotated[
    FittedDuration | LognormalDuration | LogUniformDuration, Field(discriminator="kind")
]


class Arrival(_Frozen):
    """Placement in time. poisson: uniform over the horizon; burst: groups of ``burst_jobs``
    submitted within ``spread_s``; standing: all submitted within ``spread_s`` of t=0."""

    kind: ArrivalKind = ArrivalKind.POISSON
    burst_jobs: int = Field(default=1, ge=1, description="Jobs per burst (burst only).")
    spread_s: float = Field(default=0.0, ge=0, description="Window of a burst / of standing.")


class Estimate(_Frozen):
    """The user's time limit: true duration x a log-uniform factor, capped (never below it)."""

    factor_min: float = Field(default=1.0, ge=1.0)
    factor_max: float = Field(default=1.0, ge=1.0)
    cap_s: float | None = Field(
        default=None, gt=0, description="Largest limit asked for, unless the job runs longer."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.factor_max < self.factor_min:
            msg = "factor_max: must be >= factor_min"
            raise ValueError(msg)
        return self


MAX_PARAMS = 1e14  # parameters of one model: far beyond any trained (GPT-4 class: ~1e12)
MAX_MEMORY_GB = 1024.0  # GB per GPU a class may ask: above any GPU (B300: 288 GB)


class ModelMemory(_Frozen):
    """GPU memory per GPU from the size of the model a job trains.

    Mixed-precision training with Adam keeps 16 bytes per parameter: fp16 weights and
    gradients (2 + 2) and fp32 master weights, momentum and variance (4 + 4 + 4); ZeRO
    stage 3 / FSDP shards all of it over the data-parallel GPUs (Rajbhandari et al.,
    "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", SC'20, §3.1
    and §5: 16 bytes/parameter, partitioned N ways over N GPUs). A job of ``gpus`` GPUs
    training a model of ``params`` parameters therefore needs

        params x bytes_per_param / min(gpus, shard_gpus) / 1e9 + activation_gb   [GB]

    per GPU: the model state sharded over at most ``shard_gpus`` GPUs (state is sharded
    inside a group and replicated across groups, as hybrid-sharded FSDP does, since
    sharding over every GPU of a 10,000-GPU job costs more in communication than it
    saves), plus the activations of the micro-batch each GPU runs. The ask is capped at
    ``max_gb``: a model too big for it is laid out over more GPUs (a larger group) until
    it fits, so it asks the cap, never more.
    """

    params_min: float = Field(gt=0, le=MAX_PARAMS, description="Smallest model, parameters.")
    params_max: float = Field(gt=0, le=MAX_PARAMS, description="Largest model, parameters.")
    bytes_per_param: float = Field(
        default=16.0,
        ge=2.0,
        le=64.0,
        description="Model state per parameter (mixed-precision Adam: 16, ZeRO §3.1).",
    )
    shard_gpus: int = Field(
        gt=0, le=1_000_000, description="Most GPUs the model state is sharded over."
    )
    activation_gb: float = Field(ge=0, le=MAX_MEMORY_GB, description="Activations per GPU, GB.")
    max_gb: float = Field(gt=0, le=MAX_MEMORY_GB, description="Largest ask, GB per GPU.")
    grad_bytes_per_param: float | None = Field(
        default=None,
        gt=0,
        le=16.0,
        description=(
            "Gradient bytes all-reduced per parameter per step (bf16: 2), so that what a "
            "gang spanning sites sends grows with its model; null: the class's grad_gb."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.params_max < self.params_min:
            msg = "params_max: must be >= params_min"
            raise ValueError(msg)
        if self.activation_gb >= self.max_gb:
            msg = "max_gb: must be above activation_gb (no room left for the model state)"
            raise ValueError(msg)
        return self

    def per_gpu_gb(
        self, params: npt.NDArray[np.float64], gpus: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """GB each GPU needs, per job (see the class docstring)."""
        shard = np.minimum(gpus, self.shard_gpus).astype(np.float64)
        state = params * self.bytes_per_param / np.maximum(shard, 1.0) / 1e9
        out: npt.NDArray[np.float64] = np.minimum(state + self.activation_gb, self.max_gb)
        return out


class JobClass(_Frozen):
    """A kind of job: sizes, durations, arrivals, priority and checkpointing, with sources."""

    description: str = Field(min_length=1)
    priority: int = Field(description="0 research/dev, 100 training campaigns, 1000 inference.")
    preemptible: bool
    checkpoint_s: float | None = Field(default=None, gt=0, description="Checkpoint interval.")
    hbm_gb_per_gpu: float | None = Field(
        default=None,
        gt=0,
        description="GPU memory each GPU of a job must have (from the model it trains); null: any.",
    )
    model: ModelMemory | None = Field(
        default=None,
        description="Each job's memory from its model's size (excludes hbm_gb_per_gpu).",
    )
    preempt_grace_s: float | None = Field(
        default=None,
        ge=0,
        le=86400,
        description=(
            "Seconds a preempted job keeps its GPUs to save (SIGTERM, then the kill); "
            "null: the run's default (--preempt-grace)."
        ),
    )
    service: bool = Field(
        default=False,
        description=(
            "A service (inference, AI-RAN): its duration is a lifetime to serve, not work; "
            "interrupted, it is down until placed again and loses no work."
        ),
    )
    gpu_class: list[str] = Field(
        default_factory=list,
        description="Preferred GPU classes; the first the tenant holds quota in; else any.",
    )
    dataset_tb: float | None = Field(
        default=None,
        gt=0,
        le=10000,
        description=(
            "Size of the corpus the class's jobs read (TB, 1e12 bytes), one per tenant, kept "
            "at the site where the tenant's own GPUs are most; null: no dataset."
        ),
    )
    allow_cross_site: bool = Field(
        default=False, description="Whether its gangs may span sites (slower, see physics.comm)."
    )
    grad_gb: float | None = Field(
        default=None,
        gt=0,
        le=100000,
        description="Gradient bytes all-reduced per training step (GB): what spanning costs.",
    )
    step_s: float | None = Field(
        default=None, gt=0, le=3600, description="Compute seconds per training step."
    )
    size: SizeSpec
    duration: DurationSpec
    arrival: Arrival = Field(default_factory=Arrival)
    estimate: Estimate = Field(default_factory=Estimate)
    sources: dict[str, str] = Field(description="Source or 'assumption: why', per figure.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        required = [*REQUIRED_SOURCES, *(("model",) if self.model is not None else ())]
        missing = [k for k in required if k not in self.sources]
        if missing:
            msg = f"sources: no source for {', '.join(missing)}"
            raise ValueError(msg)
        if self.model is not None and self.hbm_gb_per_gpu is not None:
            msg = "model: a class asks memory from its model or as hbm_gb_per_gpu, not both"
            raise ValueError(msg)
        if self.model is not None and self.model.grad_bytes_per_param and self.grad_gb:
            msg = "grad_gb: a class's gradients come from its model or as grad_gb, not both"
            raise ValueError(msg)
        return self


class MixEntry(_Frozen):
    """One class in a tenant's mix, with its share of the tenant's offered GPU-hours."""

    job_class: str = Field(alias="class", min_length=1)
    share: float = Field(gt=0, le=1)


class TenantMix(_Frozen):
    """A tenant's job mix; the shares add up to 1."""

    mix: list[MixEntry] = Field(min_length=1)
    source: str = Field(min_length=1, description="Why this mix.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        total = sum(e.share for e in self.mix)
        if abs(total - 1.0) > 1e-6:
            msg = f"mix: shares add up to {total:.6g}, not 1"
            raise ValueError(msg)
        names = [e.job_class for e in self.mix]
        if len(set(names)) != len(names):
            msg = "mix: a class appears twice"
            raise ValueError(msg)
        return self


class Catalogue(_Frozen):
    """The whole classes.yaml: classes, the default mix, and per-tenant mixes."""

    version: Literal[1]
    classes: dict[str, JobClass] = Field(min_length=1)
    default: TenantMix = Field(description="Mix of tenants not listed under 'tenants'.")
    tenants: dict[str, TenantMix] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[str] = []
        mixes = [("default", self.default), *((f"tenants.{k}", v) for k, v in self.tenants.items())]
        for path, mix in mixes:
            problems.extend(
                f"{path}.mix[{i}].class: unknown class '{e.job_class}'"
                for i, e in enumerate(mix.mix)
                if e.job_class not in self.classes
            )
        datasets = fitted_document()["datasets"]
        for name, cls in self.classes.items():
            problems.extend(
                f"classes.{name}.{field}.dataset: unknown fitted dataset '{spec.dataset}' "
                f"(known: {', '.join(sorted(datasets))})"
                for field, spec in (("size", cls.size), ("duration", cls.duration))
                if isinstance(spec, FittedSize | FittedDuration) and spec.dataset not in datasets
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def mix_for(self, tenant: str) -> TenantMix:
        """The tenant's mix, or the default research/dev mix."""
        return self.tenants.get(tenant, self.default)


@dataclass(frozen=True, slots=True, eq=False)
class FittedDataset:
    """One fitted dataset as arrays: size pmf and per-bucket log-duration quantiles."""

    name: str
    sizes: npt.NDArray[np.int64]
    size_probs: npt.NDArray[np.float64]
    bucket_max: npt.NDArray[np.int64]
    log_quantiles: npt.NDArray[np.float64]

    def bucket_of(self, sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Index of the duration bucket of each (unscaled) size."""
        return np.searchsorted(self.bucket_max, sizes, side="left").astype(np.int64)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The bundled classes.yaml, or a user's file. Raises :class:`SpecError`."""
    if path is None:
        return _bundled_catalogue()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(["file not found"], str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read ({exc})"], str(p)) from None
    return parse_catalogue(text, str(p))


def parse_catalogue(text: str, source: str) -> Catalogue:
    """Validate a classes.yaml document."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML ({exc})"], source) from None
    if not isinstance(raw, dict):
        raise SpecError(["document: must be a mapping with 'classes' and 'default'"], source)
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source) from None


@cache
def _bundled_catalogue() -> Catalogue:
    text = resources.files(_DATA).joinpath("classes.yaml").read_text(encoding="utf-8")
    return parse_catalogue(text, "classes.yaml")


@cache
def fitted_document() -> dict[str, Any]:
    """The raw fitted.json (for provenance display and tests)."""
    text = resources.files(_DATA).joinpath("fitted.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def fitted_dataset(name: str) -> FittedDataset:
    """A fitted dataset by name; raises :class:`SpecError` naming the known ones."""
    doc = fitted_document()
    ds = doc["datasets"].get(name)
    if ds is None:
        known = ", ".join(sorted(doc["datasets"]))
        raise SpecError([f"dataset: unknown fitted dataset '{name}' (known: {known})"], "fitted")
    counts = np.asarray(ds["size_counts"]["jobs"], dtype=np.float64)
    buckets = doc["buckets"]
    big = np.iinfo(np.int64).max
    bucket_max = np.asarray(
        [b["max_gpus"] if b["max_gpus"] is not None else big for b in buckets], dtype=np.int64
    )
    # A dataset with an empty bucket borrows the next smaller one's quantiles, so that any
    # size maps to some duration distribution.
    rows: list[list[float]] = []
    for b in buckets:
        entry = ds["durations"].get(b["name"])
        if entry is not None:
            rows.append(entry["quantiles_s"])
        elif rows:
            rows.append(rows[-1])
        else:
            msg = f"{name}: no durations for the smallest bucket '{b['name']}'"
            raise SpecError([msg], "fitted")
    return FittedDataset(
        name=name,
        sizes=np.asarray(ds["size_counts"]["sizes"], dtype=np.int64),
        size_probs=counts / counts.sum(),
        bucket_max=bucket_max,
        log_quantiles=exact.log(np.asarray(rows, dtype=np.float64)),
    )

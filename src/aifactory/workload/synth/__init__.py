"""Synthetic national workloads: ``aifactory workload synth``.

Per tenant, a mix of job classes (``workload/data/classes.yaml``) is turned into a
job trace in the normalised schema (:mod:`aifactory.workload.schema`) plus the columns
``preemptible``, ``checkpoint_s`` and ``kind`` (the class name). Arrival rates are
scaled so that the offered load on every tenant's nominal quota is the requested load
(see :mod:`.core` for the exact definition and why it is hit exactly).

Where each figure comes from
----------------------------

- **Research/dev sizes and durations** (classes ``research``, ``research-node``): fitted
  by ``scripts/fit_traces.py`` to the Microsoft Philly trace (2017, 82,247 jobs; Jeon et
  al., ATC'19) and the Microsoft ITP trace (2021, 58,166 jobs in 7 clusters; Gu et al.,
  ElasticFlow, ASPLOS'23), read from ``../shared/traces`` and not copied; the parameters
  are committed as ``workload/data/fitted.json`` with the SHA-256 of every input file.
  Sizes: the empirical pmf (job counts per size). Durations: empirical quantiles (401
  knots) per size bucket (1, 2-4, 5-8, 9+ GPUs), sampled by log-linear interpolation, so
  the synthetic CDF is within 1/400 of the trace's (KS) by construction; a log-normal
  per bucket is stored for reference only, because it misses the multi-modal Philly
  durations by a KS distance of 0.08-0.17. ``research-node`` multiplies every size by 8
  (one node as the unit on 2025 HGX/NVL72 hardware; an assumption, stated in the file).
- **LLM pre-training campaigns** (``pretrain``, the five sovereign consortia): 1,000-32,000
  GPUs (issue #5), capped at the tenant's quota plus what it can borrow in its cohort;
  1-8 weeks, anchored on Llama 3 405B's 54 days on 16,384 H100 (arXiv 2407.21783);
  checkpoint every 30 min, from Young's formula with a 60 s write and the ~8 h job mean
  time to failure at 1,024 GPUs of Kokolis et al. (HPCA'25). Preemptible, priority 100.
  GPU memory per GPU from the model each campaign trains (10-500 billion parameters,
  log-uniform, an assumption): 16 bytes per parameter for mixed-precision Adam
  (Rajbhandari et al., ZeRO, SC'20), sharded over up to 128 GPUs, plus 60 GB of
  activations, capped at what the GPUs it may run on have
  (:class:`~aifactory.workload.synth.catalogue.ModelMemory`).
- **Fine-tuning, evaluation bursts, digital twin (Samsung), driving and robotics training
  (Hyundai), inference services (Naver, SK) and AI-RAN inference**: the uses are from the
  2025-10-31 announcement (``facts.md`` §1); sizes, durations and shares are assumptions,
  each marked ``assumption:`` with its reason in ``classes.yaml``. Inference classes
  have priority 1000 and are not preemptible, so they preempt batch work.
- **Time limits** (``estimate_s``): true duration x a log-uniform over-estimate factor
  (>= 1) per class, capped, never below the duration; loose user estimates are
  documented by Mu'alem and Feitelson (IEEE TPDS, 2001).
- **Tenant quotas** come from the fleet at run time (any fleet works); tenants that
  ``classes.yaml`` does not list get the ``default`` mix (research/dev only).
"""

from aifactory.workload.synth.catalogue import Catalogue, JobClass, load_catalogue
from aifactory.workload.synth.core import (
    SYNTH_SCHEMA,
    ReportRow,
    SynthReport,
    TenantLoad,
    synth_report,
    synthesize,
)

__all__ = [
    "SYNTH_SCHEMA",
    "Catalogue",
    "JobClass",
    "ReportRow",
    "SynthReport",
    "TenantLoad",
    "load_catalogue",
    "synth_report",
    "synthesize",
]

"""The one normalised trace schema every importer writes and every consumer reads.

Columns (Parquet, one row per GPU job):

- ``job_id`` (string): unique within the trace.
- ``tenant`` (string): who submitted it; empty when the source has none.
- ``submit_s`` (float64): submit time, seconds from the start of the trace (>= 0).
- ``duration_s`` (float64): true run time in seconds (> 0), known only to the twin.
- ``gpus`` (int32): gang size (> 0).
- ``gpu_class`` (string, nullable): requested GPU class, null for "any"; several
  acceptable classes comma-separated (``gb200,b200``): the scheduler picks among them by
  its own order (where the tenant has most unused nominal quota first).
- ``estimate_s`` (float64, nullable): what the scheduler may see (time limit / estimate).
- ``priority`` (int32): priority class value, larger is more important; 0 by default.
- ``observed_start_s`` (float64, nullable): start time seen on the real system.
- ``status`` (string, nullable): final status on the real system.

Optional extra columns a synthesiser may add (consumers ignore unknown columns):
``preemptible`` (bool), ``checkpoint_s`` (float64, nullable), ``kind`` (string),
``hbm_gb_per_gpu`` (float64, nullable: the GPU memory each GPU must have; the job runs
only on classes whose model has at least that much), ``preempt_grace_s`` (float64,
nullable: seconds the job may keep its GPUs to save when preempted; null: the run's
default, ``--preempt-grace``), ``service`` (bool, nullable: the job is a service
(inference, AI-RAN) whose ``duration_s`` is a lifetime, not a quantity of work: an
interruption takes it down until it runs again, and it loses no work; null: false).
Data and spanning (issue #20 §1, null: none): ``dataset`` (string: the name of the data the
job reads; jobs naming the same dataset share its copies), ``dataset_bytes`` (float64, its
size), ``data_site`` (string, the site that holds it), ``stage_hold`` (bool: the job holds
its GPUs while its data is copied, else it waits for the copy without them; see
``aifactory.twin.staging``), ``allow_cross_site`` (bool: its gang may span sites),
``grad_bytes`` and ``step_s`` (float64: gradient bytes all-reduced per training step and
compute seconds per step, which price spanning: ``aifactory.physics.comm``).
"""

from __future__ import annotations

import pyarrow as pa

TRACE_COLUMNS = (
    "job_id",
    "tenant",
    "submit_s",
    "duration_s",
    "gpus",
    "gpu_class",
    "estimate_s",
    "priority",
    "observed_start_s",
    "status",
)

TRACE_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("submit_s", pa.float64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("gpus", pa.int32(), nullable=False),
        pa.field("gpu_class", pa.string(), nullable=True),
        pa.field("estimate_s", pa.float64(), nullable=True),
        pa.field("priority", pa.int32(), nullable=False),
        pa.field("observed_start_s", pa.float64(), nullable=True),
        pa.field("status", pa.string(), nullable=True),
    ]
)

OPTIONAL_COLUMNS = {
    "preemptible": pa.bool_(),
    "checkpoint_s": pa.float64(),
    "kind": pa.string(),
    "hbm_gb_per_gpu": pa.float64(),
    "preempt_grace_s": pa.float64(),
    "service": pa.bool_(),
    "dataset": pa.string(),
    "dataset_bytes": pa.float64(),
    "data_site": pa.string(),
    "stage_hold": pa.bool_(),
    "allow_cross_site": pa.bool_(),
    "grad_bytes": pa.float64(),
    "step_s": pa.float64(),
}

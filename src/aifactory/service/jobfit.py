"""Whether a submitted job's hardware ask can ever be met by this fleet (issue #17 §3).

A job may list acceptable classes (``gpu_classes``) and ask for GPU memory per GPU
(``hbm_gb_per_gpu``). One it could never run anywhere is refused at submit, with a 422
naming the field and saying why, rather than accepted to wait forever (or to be failed
by the scheduler a cycle later): a class the fleet lacks, memory no acceptable class has,
or more GPUs than the classes that fit hold. Quotas are not checked here: a job within
the fleet's hardware but past its tenant's quota is the scheduler's to refuse.
"""

from __future__ import annotations

from collections.abc import Mapping

from aifactory.fleet.topology import Topology
from aifactory.service.errors import FieldError
from aifactory.service.schemas import JobSubmit


def check_hardware(body: JobSubmit, topo: Topology, capacity: Mapping[str, int]) -> None:
    """Raise :class:`FieldError` if no class the job accepts has the memory and GPUs it
    asks for, or it names a site the fleet lacks. ``body.gpu_class`` is known already (the
    API checks it first)."""
    for field in ("site", "data_site"):
        site = getattr(body, field)
        if site is not None and site not in topo.sites:
            known = ", ".join(topo.sites)
            raise FieldError(field, f"unknown site '{site}' (fleet has: {known})")
    for name in body.gpu_classes or ():
        if name not in capacity:
            known = ", ".join(capacity)
            raise FieldError("gpu_classes", f"unknown GPU class '{name}' (fleet has: {known})")
    accepted = [body.gpu_class] if body.gpu_class else list(body.gpu_classes or topo.classes)
    asked = body.hbm_gb_per_gpu
    if asked is None:
        fits = accepted
    else:
        memory = {c: topo.class_model[i].hbm_gb for i, c in enumerate(topo.classes)}
        fits = [c for c in accepted if memory[c] >= asked]
        if not fits:
            best = max(accepted, key=lambda c: memory[c])
            where = "this fleet" if len(accepted) == len(topo.classes) else "the classes asked"
            raise FieldError(
                "hbm_gb_per_gpu",
                f"not enough GPU memory: {asked:g} GB per GPU asked, no GPU of {where} has "
                f"that much (the most: {memory[best]:g} GB, class {best})",
            )
    most = max(capacity[c] for c in fits)
    if body.gpus > most:
        which = ", ".join(fits)
        raise FieldError(
            "gpus", f"{body.gpus} is more than the {most} GPUs of any class that fits ({which})"
        )

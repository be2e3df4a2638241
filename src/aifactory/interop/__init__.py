"""Interoperability with the schedulers operators already run: Slurm and Kueue.

Export writes a fleet's nodes, GPUs, topology, tenants and quotas as the other system's
configuration (so a policy proven in the twin can become production configuration); import
reads that configuration back into a validated :class:`~aifactory.fleet.spec.Fleet` (so an
operator gets a twin of *their* cluster without writing a fleet file). Each direction and
system is one small module; what does not map is written down in ``docs/interop.md`` and, for
one fleet, in the ``NOTES.md`` written beside the exported files.
"""

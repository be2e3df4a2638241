"""Who decides: the pure scheduler core (quota, ordering, placement, backfill, preemption)."""

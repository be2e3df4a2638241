"""The twin: a discrete-event simulator that drives the scheduler core on simulated time."""

"""What is asked: jobs, their lifecycle, traces and synthetic national workloads."""

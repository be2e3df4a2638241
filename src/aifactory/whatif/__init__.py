"""What-if planning: scenario files (a base run and named variations) and sweeps over them.

:mod:`.model` is the scenario file's typed form, :mod:`.apply` turns a variation into a run
plan (an edited, re-validated fleet and settings), :mod:`.runner` does one run, :mod:`.engines`
runs every variation x seed on a local process pool or on Ray, and :mod:`.report` writes
``sweep.parquet`` and ``sweep.html``.
"""

"""Reports: summaries, Parquet results, charts and the self-contained HTML report.

- :mod:`aifactory.reports.results`: ``JOBS_SCHEMA``, ``timeseries_schema()`` and the writers of
  ``jobs.parquet``, ``timeseries.parquet`` and ``summary.json`` (no matplotlib import).
- :mod:`aifactory.reports.report`: ``write_report()``, ``report.html`` and ``summary.png``.
- :mod:`aifactory.reports.compare`: ``comparison_rows()`` and ``write_compare()``.
- :mod:`aifactory.reports.charts` and :mod:`aifactory.reports.html`: the drawing and page
  building blocks both pages share.

Nothing is re-exported here, so importing the schemas does not pull in matplotlib.
"""

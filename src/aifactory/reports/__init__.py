"""Reports: summaries, Parquet results, charts and the self-contained HTML report.

- :mod:`aifactory.reports.results`: ``JOBS_SCHEMA``, ``timeseries_schema()`` and the writers of
  ``jobs.parquet``, ``timeseries.parquet`` and ``summary.json``.
- :mod:`aifactory.reports.report`: ``write_report()``, ``report.html`` and ``summary.png``.
- :mod:`aifactory.reports.compare`: ``comparison_rows()`` and ``write_compare()``.
- :mod:`aifactory.reports.charts` and :mod:`aifactory.reports.html`: the drawing and page
  building blocks both pages share; :mod:`aifactory.reports.svgplot` draws the charts as
  inline SVG and :mod:`aifactory.reports.raster` turns one into ``summary.png`` (Pillow).

Nothing is re-exported here, so importing the schemas imports no drawing code.
"""

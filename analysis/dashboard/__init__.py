"""The live web dashboard: ``python -m analysis serve RUN_DIR [RUN_DIR ...]`` (docs/analysis.md).

- :mod:`~analysis.dashboard.follow`: reads what was appended to a run's JSON logs since the last read.
- :mod:`~analysis.dashboard.registry`: the run dirs the server may read (named ones and runs inside named
  parents), nothing else.
- :mod:`~analysis.dashboard.info`: pure functions from run data to the JSON the charts draw.
- :mod:`~analysis.dashboard.server`: the read-only HTTP server (standard library) and its static page,
  whose charts are Plotly's JavaScript as shipped in the ``plotly`` Python package (no CDN).
"""

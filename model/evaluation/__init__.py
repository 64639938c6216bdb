"""The ``evaluate`` stage's parts (the stage itself is :mod:`model.evaluate`): ``params`` (the ``evaluate``
and ``inference`` sections with the tiny overrides), ``report`` (metrics.json, per_clip.parquet, table.md,
index.html)."""

"""Experiments: maps for every method, cached on disk, evaluated into tables with intervals.

- :mod:`.run` — :func:`run_experiment`: the run loop, its stages and the checks of its
  inputs and of computed or cached maps.
- :mod:`.keys` — cache keys (model, method, code and input fingerprints).
- :mod:`.store` — atomic writes, ``run.json`` and the output folder's lock.
- :mod:`.result` — :class:`ExperimentResult`, means with bootstrap intervals, tables.
- :mod:`.distributed` — torchrun sharding (rank r computes batches r, r + n, …).
"""

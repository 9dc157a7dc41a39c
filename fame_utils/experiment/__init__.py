"""Experiments: maps for every method, cached on disk, evaluated into tables with intervals.

- :mod:`.run` — :func:`run_experiment`, the run loop (maps, evaluation, outputs).
- :mod:`.stages` — the run's two stages: computing and caching maps, evaluating metrics.
- :mod:`.checks` — checks of the run's inputs and of computed or cached maps and values.
- :mod:`.result` — :class:`ExperimentResult` with the per-item, curve and interval accessors.
- :mod:`.report` — summaries: means with bootstrap intervals, Markdown and LaTeX tables.
- :mod:`.cache` — cache keys (model fingerprint, method keys, input and source hashes) and
  atomic writes.
- :mod:`.record` — ``run.json`` (every setting and the environment), refusal to mix
  settings in one folder, the folder's lock.
- :mod:`.distributed` — torchrun sharding (rank r computes batches r, r + n, …).

Datasets and items live in :mod:`fame_utils.data.items`, metric adapters in
:mod:`fame_utils.metrics.adapters`, methods in the registry :mod:`fame_utils.methods`.
"""

"""Experiments: :func:`~.run.run_experiment` caches every method's maps (:mod:`.keys`,
:mod:`.store`), evaluates them into tables with intervals (:mod:`.result`), under torchrun
too (:mod:`.distributed`)."""

"""Baseline attribution methods under FAME's calling convention (:mod:`fame_utils.methods`)."""

"""Analyses of trained or untrained networks: the effective receptive field (:func:`erf`).

``unireplknet.analysis.erf(model, images, stage=4)`` returns the averaged contribution map and the
high-contribution area ratios; ``unireplknet erf`` is the command line over it (``analysis/erf_cli.py``).
"""
from .erf import ERF_THRESHOLDS, ERFResult, erf, high_contribution_area, input_contribution, log_scale, stage_feature_fn

__all__ = ["ERF_THRESHOLDS", "ERFResult", "erf", "high_contribution_area", "input_contribution", "log_scale",
           "stage_feature_fn"]

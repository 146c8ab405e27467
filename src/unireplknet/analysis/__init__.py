"""Analyses of trained or untrained networks: the effective receptive field (:func:`erf`).

``unireplknet.analysis.erf(model, images, stage=4)`` returns the averaged contribution map and the
high-contribution area ratios; ``unireplknet erf`` is the command line over it (``analysis/erf_cli.py``).
The names are imported on first use, so registering the ``erf`` subcommand does not import torch.
"""
import importlib

__all__ = ["ERF_THRESHOLDS", "ERFResult", "erf", "high_contribution_area", "input_contribution", "log_scale",
           "stage_feature_fn"]


def __getattr__(name: str):
    if name in __all__:
        module = importlib.import_module(".receptive_field", __name__)
        globals().update({n: getattr(module, n) for n in __all__})  # later look-ups are plain attributes
        return globals()[name]
    raise AttributeError(f"module 'unireplknet.analysis' has no attribute {name!r}")

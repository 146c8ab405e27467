"""UniRepLKNet: a universal large-kernel ConvNet for images, audio, video, point clouds and time series.

``import unireplknet`` registers the variants ``unireplknet_a`` … ``unireplknet_xl`` with timm.
"""
from .checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    PretrainedWeightsUnavailableError,
    infer_config,
    load_checkpoint,
    load_model,
    read_state_dict,
    save_model,
    to_deploy_state_dict,
)
from .deploy import DeployedModel, deploy_model
from .model import DilatedReparamBlock, UniRepLKNet, UniRepLKNetBlock, reparameterize
from .zoo import VARIANTS, count_macs, create_model, variant_config, variants_table

__version__ = "0.1.0"

# The training engine, data and export helpers are imported on first use: `import unireplknet` stays light.
_LAZY = {
    "TrainConfig": "engine", "TrainResult": "engine", "train": "engine", "evaluate": "engine",
    "load_digits": "data", "DigitsDataset": "data", "build_data": "data", "DataError": "data",
    "export_onnx": "export", "export_torch_program": "export",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'unireplknet' has no attribute {name!r}")

__all__ = [
    "UniRepLKNet",
    "UniRepLKNetBlock",
    "DilatedReparamBlock",
    "reparameterize",
    "deploy_model",
    "DeployedModel",
    "create_model",
    "variant_config",
    "variants_table",
    "count_macs",
    "VARIANTS",
    "load_checkpoint",
    "load_model",
    "save_model",
    "read_state_dict",
    "infer_config",
    "to_deploy_state_dict",
    "CheckpointError",
    "CheckpointMismatchError",
    "PretrainedWeightsUnavailableError",
    *_LAZY,
]

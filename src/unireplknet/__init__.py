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
]

"""UniRepLKNet checkpoints: the official and own key layouts, safe reading, and the one atomic writer.

* :mod:`.io` — what a file is (:func:`file_kind`), reading it with ``torch.load(weights_only=True)`` or
  safetensors — never by unpickling arbitrary objects — (:func:`read_state_dict`), and :func:`atomic_write`,
  through which every file of the package is written (temporary file beside it, fsync, rename).
* :mod:`.layouts` — the official layouts (top level, ``model``, ``state_dict`` + ``backbone.``; training or
  deploy structure), structure detection (:func:`infer_config`, :func:`is_deploy_layout`) and the strict fit
  of a state dict to a model.
* :mod:`.weights` — :func:`load_checkpoint`, timm's pretrained filter and :func:`save_model`.

The package sits below the model: it imports no model code. Building the model a file was saved from is
:func:`unireplknet.load_model` (and :func:`unireplknet.to_deploy_state_dict`), one layer up.
"""
from .io import (
    DestinationError,
    check_destination,
    check_destination_folder,
    NotARegularFileError,
    file_type_name,
    not_a_regular_file,
    require_regular_file,
    KIND_NAMES,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointWriteError,
    PathLike,
    PretrainedWeightsUnavailableError,
    StateDict,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    describe_unreadable_checkpoint,
    file_kind,
    read_state_dict,
    unwrap_state_dict,
    write_safetensors,
)
from .layouts import (
    ARCHITECTURES,
    STEM_WEIGHT,
    check_model_config,
    convert_to_deploy_layout,
    differs_only_in_input_channels,
    infer_config,
    is_deploy_layout,
    load_state_dict_pre_hook,
    require_fields,
    strip_prefixes,
    variant_name,
)
from .weights import checkpoint_filter_fn, load_checkpoint, save_model

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointWriteError",
    "PretrainedWeightsUnavailableError",
    "PathLike",
    "StateDict",
    "KIND_NAMES",
    "file_kind",
    "read_state_dict",
    "unwrap_state_dict",
    "describe_unreadable_checkpoint",
    "DestinationError",
    "check_destination",
    "check_destination_folder",
    "require_regular_file",
    "NotARegularFileError",
    "file_type_name",
    "not_a_regular_file",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_torch_save",
    "write_safetensors",
    "ARCHITECTURES",
    "STEM_WEIGHT",
    "strip_prefixes",
    "infer_config",
    "check_model_config",
    "require_fields",
    "is_deploy_layout",
    "variant_name",
    "differs_only_in_input_channels",
    "convert_to_deploy_layout",
    "load_state_dict_pre_hook",
    "checkpoint_filter_fn",
    "load_checkpoint",
    "save_model",
]

"""UniRepLKNet: a universal large-kernel ConvNet for images, audio, video, point clouds and time series.

``import unireplknet`` registers the variants ``unireplknet_a`` … ``unireplknet_xl`` with timm. The public names
below are imported on first use, so the ``unireplknet`` command answers ``--help`` without loading torch.
"""
import importlib
import sys
from pathlib import PurePath

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("CheckpointError", "CheckpointMismatchError", "PretrainedWeightsUnavailableError",
                     "infer_config", "load_checkpoint", "read_state_dict", "save_model"), "checkpoint"),
    **dict.fromkeys(("load_model", "to_deploy_state_dict"), "loading"),
    **dict.fromkeys(("DeployedModel", "deploy_model"), "deploy"),
    **dict.fromkeys(("DilatedReparamBlock", "UniRepLKNet", "UniRepLKNetBlock", "reparameterize"), "model"),
    **dict.fromkeys(("VARIANTS", "count_macs", "create_model", "save_pretrained", "variant_config", "variants_table"),
                   "zoo"),
    **dict.fromkeys(("TrainConfig", "train", "evaluate"), "tasks.image"),
    **dict.fromkeys(("TrainResult",), "engine"),
    **dict.fromkeys(("build_model",), "factory"),
    **dict.fromkeys(("load_digits", "DigitsDataset", "build_data", "DataError"), "data"),
    **dict.fromkeys(("export_onnx", "export_torch_program"), "export"),
}
__all__ = sorted(_EXPORTS)

#: Submodules reachable as attributes without their own import (``unireplknet.deploy.available_backends()``),
#: imported on first use like the names above.
_SUBMODULES = frozenset(("analysis", "checkpoint", "cli", "data", "deploy", "engine", "export",
                         "factory", "fast", "guards", "loading", "modalities", "model", "ops", "reparam", "tasks", "zoo"))


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        # import_module binds the submodule as a package attribute itself, so this runs once per name.
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'unireplknet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


def _console_script_start() -> bool:
    """True while the ``unireplknet`` console script (its argv[0] is the script itself) or ``python -m
    unireplknet.cli`` imports the package.

    The command line then registers the timm variants itself before running a command (``cli.main``), so that
    ``unireplknet --help`` stays instant; every other import registers them here.
    """
    if bool(sys.argv) and PurePath(sys.argv[0]).stem == "unireplknet":
        return True
    # `python -m unireplknet.cli …`: argv[0] is still "-m" while the package imports; the interpreter's own
    # command line names the module
    argv = list(getattr(sys, "orig_argv", ()))
    return any(a == "-m" and b == "unireplknet.cli" for a, b in zip(argv, argv[1:]))


if not _console_script_start():
    from . import zoo as _zoo  # noqa: F401  registers unireplknet_a … unireplknet_xl with timm

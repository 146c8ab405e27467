"""One subpackage per task, each with its model wrapper, task object(s), recipes and command line (``cli.py``).

======================  ===================================================================================
:mod:`.image`           image classification (``unireplknet train`` / ``eval``)
:mod:`.audio`           audio classification on log-mel images (``audio-*``)
:mod:`.video`           video classification on frame mosaics (``video-*``)
:mod:`.pointcloud`      point-cloud classification on depth views (``points-*``)
:mod:`.views`           the multi-view classification base that video and point clouds share
:mod:`.forecast`        time-series forecasting: the linear-head forecaster and Corrformer (``forecast-*``)
:mod:`.dense`           detection and segmentation (``det-*``, ``seg-*``, ``dense-scenes``)
======================  ===================================================================================

A subpackage's ``__init__`` imports nothing heavy: its public names load on first use, so that the command
line's ``--help`` reads every ``cli.py`` without torch.
"""
import importlib
from typing import Any, Callable, Dict, Tuple


def lazy_exports(package: str, exports: Dict[str, str]) -> Tuple[Callable[[str], Any], Callable[[], list]]:
    """``__getattr__`` and ``__dir__`` of a package whose public names (name -> submodule) load on first use."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list:
        return sorted(exports)

    return __getattr__, __dir__

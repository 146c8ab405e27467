"""Run checkpoints: the training-state schema, RNG states as tensors, reading them back for ``--resume``.

Files are written through the package's one atomic writer (:func:`unireplknet.checkpoint.atomic_write`, re-exported
here) and read with ``weights_only=True``.

A training checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing that
needs unpickling arbitrary classes — so ``torch.load(..., weights_only=True)`` reads it back:
``model``, ``optimizer``, ``scheduler``, ``scaler``, ``model_ema``, ``epoch`` (completed epochs),
``num_updates``, ``rng`` (one entry per rank), ``config`` (the training arguments), ``model_config``,
``data_config``, ``class_names``, ``data_fingerprint``, ``best`` and ``format``.

What defines a run — its model, class names, data config (input size, normalisation) and a fingerprint of its
data — is checked on ``--resume`` (:func:`check_resume_identity`): a mismatch is refused by name, not trained on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from ..checkpoint import (
    CheckpointWriteError,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    describe_unreadable_checkpoint,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointWriteError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_torch_save",
    "get_rng_state",
    "set_rng_state",
    "load_training_checkpoint",
    "read_run_metadata",
    "data_fingerprint",
    "check_run_metadata",
    "check_resume_identity",
]

_logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "unireplknet-train-v1"


# ----------------------------------------------------------------------------------------------- RNG
def get_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states, as tensors and numbers (``weights_only``-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: Dict[str, Any] = {
        "python_version": int(py_version),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], state["numpy_has_gauss"],
         state["numpy_gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------- reading
def load_training_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu",
                             task: Optional[str] = None, command: Optional[str] = None) -> Dict[str, Any]:
    """Read a training checkpoint written by the engine (``weights_only=True``); with ``task``, refuse one that
    another task wrote (``command``, e.g. ``audio-train``, names the run to pass instead)."""
    path = Path(path)
    if not path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist; pass the last.pth of a training run")
        from ..checkpoint import not_a_regular_file

        raise FileNotFoundError(not_a_regular_file(path, "checkpoint") + " (the last.pth of a training run)")
    from ..checkpoint.io import check_archive_sizes

    check_archive_sizes(path)  # a zip bomb is refused before torch.load inflates it
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holds objects that need unpickling
        raise ValueError(describe_unreadable_checkpoint(
            path, e, "the last.pth or best.pth written by a unireplknet training run")) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a unireplknet training checkpoint (no format={CHECKPOINT_FORMAT!r}); "
            "--resume needs the last.pth written by `unireplknet train` (use --checkpoint to start from other weights)"
        )
    written_for = (ckpt.get("model_config") or {}).get("task", "image")
    if task is not None and written_for != task:
        raise ValueError(f"{path} is not a {command or task} checkpoint (task {written_for!r}); pass the last.pth or "
                         f"best.pth of a {command or task} run")
    return ckpt


def read_run_metadata(path: Union[str, Path]) -> Dict[str, Any]:
    """``class_names``, ``data_config`` and ``model_config`` stored with a checkpoint (.pth or .safetensors), if any."""
    path = Path(path)
    meta: Dict[str, Any] = {}
    if not path.is_file():  # a FIFO would block the reader; the weights reader names what the path is
        return meta
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
        except Exception:  # unreadable: no metadata; the weights reader gives the one-paragraph error
            return meta
        for key in ("class_names", "data_config", "model_config"):
            if key in raw:
                try:
                    meta[key] = json.loads(raw[key])
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: the metadata field {key} is not valid JSON ({e}); the file was not "
                                     "written by unireplknet or was altered — re-export it") from None
        return check_run_metadata(meta, path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return meta
    if isinstance(obj, dict):
        for key in ("class_names", "data_config", "model_config"):
            if key in obj:
                meta[key] = obj[key]
    return check_run_metadata(meta, path)


def check_run_metadata(meta: Dict[str, Any], path: Union[str, Path]) -> Dict[str, Any]:
    """Refuse metadata fields of the wrong type, naming the field: the file may come from anyone."""
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"{path}: the field class_names is {type(names).__name__} {str(names)[:60]!r}, not a list "
                         "of class names (strings); the file was altered or not written by unireplknet")
    for key in ("data_config", "model_config"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            raise ValueError(f"{path}: the field {key} is a {type(meta[key]).__name__}, not a mapping of settings; "
                             "the file was altered or not written by unireplknet")
    overlay = (meta.get("model_config") or {}).get("pretrained_cfg_overlay")
    if overlay is not None:
        raise ValueError(f"{path}: the field model_config.pretrained_cfg_overlay ({str(overlay)[:60]!r}) would make "
                         "the loader read another file named by the checkpoint; it is not accepted from a file")
    return meta


# ----------------------------------------------------------------------------------------------- run identity
def _sample_files(dataset: Any) -> list:
    """The file names a dataset reads (``samples`` of an image folder, through ``Subset`` splits), or []."""
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, (list, tuple)):
        return [str(s[0]) if isinstance(s, (list, tuple)) else str(s) for s in samples]
    base, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if base is not None and indices is not None:
        files = _sample_files(base)
        return [files[i] for i in indices] if files else []
    return []


def data_fingerprint(train: Any, val: Any = None) -> str:
    """A short hash of the data a run trains on: the size of each split and, where the dataset lists its files,
    their names relative to the class folder (``class/file``) — so moving the data folder keeps it, while another
    folder, another split or added files change it. Nothing is read or stat'ed (quick on ImageNet too)."""
    digest = hashlib.sha256()
    for split, dataset in (("train", train), ("val", val)):
        if dataset is None:
            continue
        digest.update(f"{split} {len(dataset)}\n".encode())
        for name in _sample_files(dataset):
            digest.update(("/".join(Path(name).parts[-2:]) + "\n").encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def _first_difference(stored: Any, given: Any, settings_only: bool = False) -> Optional[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        for key in sorted(set(stored) | set(given), key=str):
            if settings_only and (isinstance(stored.get(key), dict) or isinstance(given.get(key), dict)):
                continue  # a nested record (e.g. the whole run config a task keeps) holds paths, not data settings
            if stored.get(key) != given.get(key):
                return str(key)
        return None
    return None if stored == given else ""


def check_resume_identity(ckpt: Dict[str, Any], given: Dict[str, Any], path: Union[str, Path]) -> None:
    """Refuse to resume the run of ``ckpt`` with options or data that define another run.

    ``given`` maps ``model_config``, ``class_names``, ``data_config`` and ``data_fingerprint`` to this command's
    values; a field the checkpoint does not record (an older file) is not compared. The error names the field,
    the stored and the given value, and the fix.
    """
    fixes = {
        "model_config": "resume with the original --model / --model-kwargs",
        "class_names": "resume with the data folder the run was started on (the classes differ)",
        "data_config": "resume with the original --input-size and data options",
        "data_fingerprint": "resume with the data the run was started on (its files or split sizes differ)",
    }
    for field, fix in fixes.items():
        if field not in ckpt or ckpt[field] is None or field not in given:
            continue
        stored, new = ckpt[field], given[field]
        if field == "class_names":
            stored, new = list(stored), list(new)
        key = _first_difference(stored, new, settings_only=field == "data_config")
        if key is None:
            continue
        if key:
            stored_v, new_v = stored.get(key) if isinstance(stored, dict) else stored, new.get(key)
            what = f"{field}.{key}"
        else:
            stored_v, new_v, what = stored, new, field
        shown = lambda v: (repr(v)[:120] + "…") if len(repr(v)) > 120 else repr(v)  # noqa: E731
        raise ValueError(f"--resume {path}: the run was started with {what} = {shown(stored_v)}, this command gives "
                         f"{shown(new_v)}; a resumed run would mix the two. {fix[0].upper() + fix[1:]}, or start a "
                         "new run in another --output (--checkpoint to start from its weights)")

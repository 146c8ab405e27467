"""Checkpoint files: what a file is, reading it safely, and the package's one atomic writer.

Imports no model code (only torch; safetensors where it is used), so the model, the loaders, the exporters and
the training engine all build on it.

* Files are read with ``torch.load(weights_only=True)`` or from safetensors — never by unpickling arbitrary
  objects. A file that is no checkpoint at all (text, an HTML error page, random bytes) is called so, with
  no advice to unpickle it (:func:`file_kind`, :func:`describe_unreadable_checkpoint`).
* Every file the package writes goes through :func:`atomic_write`: a temporary file beside the destination,
  fsync'ed and renamed into place, so an interrupted or failed write never destroys an earlier file.
"""
from __future__ import annotations

import errno
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch

from .._files import NotARegularFileError, file_type_name, not_a_regular_file, require_regular_file

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointWriteError",
    "PretrainedWeightsUnavailableError",
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
    "not_a_regular_file",
    "file_type_name",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_torch_save",
    "write_safetensors",
]

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]

_CONTAINER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema", "module")


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read (missing, corrupt, truncated, unsafe or of an unknown type)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model it is loaded into."""


class CheckpointWriteError(OSError):
    """A file could not be written; the previous file at the destination is untouched."""


class DestinationError(CheckpointWriteError):
    """A destination the write policy refuses (a symbolic link, or a file the command did not create)."""

    def __init__(self, message: str):
        super().__init__(errno.EEXIST, message)

    def __str__(self) -> str:
        return str(self.strerror)


class PretrainedWeightsUnavailableError(CheckpointError):
    """Official pretrained weights were asked for but could not be downloaded."""

    def __init__(self, variant: str, tag: Optional[str], cause: BaseException, filename: Optional[str] = None,
                 hub_id: str = "DingXiaoH/UniRepLKNet"):
        name = f"{variant}.{tag}" if tag else variant
        filename = filename or "the checkpoint file"
        super().__init__(
            f"could not download the pretrained weights for {name}: {filename} from the Hugging Face repo "
            f"{hub_id} ({type(cause).__name__}: {cause}). If this machine is offline, download the file "
            f"elsewhere (https://huggingface.co/{hub_id}/blob/main/{filename}) and pass it locally: "
            f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/{filename}')) "
            f"or unireplknet.create_model('{variant}', checkpoint_path='/path/{filename}')."
        )
        self.filename, self.hub_id = filename, hub_id


# ----------------------------------------------------------------------------------------------- reading
def read_state_dict(path: PathLike, use_ema: bool = False) -> StateDict:
    """Read a checkpoint file (.pth/.pt/.bin or .safetensors) and return its flat tensor state dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the checkpoint file inside it")
    require_regular_file(path, "checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty (an interrupted download or save?); get it again")
    kind = file_kind(path)
    if kind == "other" and path.suffix == ".safetensors":
        kind = "safetensors"  # let the safetensors reader produce the precise corruption message
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({err}); it is probably truncated or corrupt — "
                "download or export it again"
            ) from err
    elif kind == "torch":
        check_archive_sizes(path)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if not _holds_disallowed_objects(err):  # garbage that happens to start like a pickle
                raise _unreadable(path, err) from err
            raise CheckpointError(
                f"{path} is a PyTorch checkpoint that also holds Python objects other than tensors and plain "
                f"containers, which are not unpickled for safety ({first_error_line(err)}). If you trust the file, "
                "re-save just its tensors: torch.save(torch.load(path, weights_only=False)['model'], "
                "'weights.pth'), or convert it to safetensors"
            ) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError, TypeError, IndexError,
                AttributeError) as err:
            raise _unreadable(path, err) from err
    elif kind in ("pt2", "onnx"):
        what = "a torch.export program (.pt2)" if kind == "pt2" else "an ONNX model"
        raise CheckpointError(
            f"{path} is {what}, not a checkpoint: exported programs hold no state dict to load. Pass the "
            "training checkpoint (.pth) or the weights file (.safetensors) the export was made from"
        )
    else:
        raise CheckpointError(
            f"{path} is not a readable checkpoint: it is neither a PyTorch (.pth) nor a safetensors file "
            f"({describe_head(path)}); pass the weights file, e.g. unireplknet_t_in1k_224_acc83.21.pth or "
            "model.safetensors (a download that failed can leave an HTML error page under the file's name)"
        )
    return unwrap_state_dict(obj, use_ema=use_ema, source=str(path))


#: torch.save stores its records uncompressed; a deflated record that inflates more than this is a zip bomb.
MAX_INFLATION = 64


def check_archive_sizes(path: PathLike) -> None:
    """Refuse a PyTorch zip checkpoint whose records inflate by more than :data:`MAX_INFLATION` × (a 2.3 MB file
    that becomes 2.4 GB once read), before ``torch.load`` inflates them.

    Only the zip directory is read (the sizes it declares); the legacy non-zip format stores tensors raw, and an
    uncompressed archive needs no more memory than its size on disk.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip archive: torch.load gives the precise error
    stored = sum(r.compress_size for r in records)
    inflated = sum(r.file_size for r in records)
    if inflated > MAX_INFLATION * max(stored, 1 << 20):
        raise CheckpointError(
            f"{path} is a {stored / 1e6:,.1f} MB zip archive whose compressed records would inflate to "
            f"{inflated / 1e9:,.2f} GB; torch.save never compresses tensors, so this is not a checkpoint it wrote "
            "(a zip bomb?). Refused before reading; re-save the weights with torch.save or as safetensors")


def first_error_line(err: BaseException) -> str:
    """The informative line of a (possibly long, multi-line) torch.load error."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    # never the generic weights_only advice torch.load prepends: for a file that is no checkpoint it misleads
    lines = [line for line in lines if "weights_only" not in line and "file an issue" not in line] or lines
    for marker in ("Unsupported global", "GLOBAL", "Unsupported operand", "Unpickler error", "failed"):
        for line in lines:
            if marker in line:
                return line[:300]
    return lines[0][:300] if lines else type(err).__name__


def _holds_disallowed_objects(err: BaseException) -> bool:
    """A weights_only refusal of a real pickle names the global it refused; corrupt bytes fail otherwise."""
    text = str(err)
    return "Unsupported global" in text or "GLOBAL" in text


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a readable checkpoint ({type(err).__name__}: {first_error_line(err)}; {describe_head(path)}): "
        "it is truncated, corrupt or not a checkpoint at all — download or save it again"
    )


def describe_head(path: Path) -> str:
    """What a file that is no checkpoint looks like, from its first bytes (HTML page, text, or the bytes)."""
    head = _head(path, 64)
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return f"it starts like an HTML/XML page: {head[:32]!r}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"first bytes {head[:16]!r}"
    if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"it is a text file starting {text[:32]!r}"
    return f"first bytes {head[:16]!r}"


def _head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def file_kind(path: Union[str, Path]) -> str:
    """What an existing file holds, from its first bytes: safetensors, torch, pt2, onnx or other.

    Only headers are read (never unpickled): safetensors starts with an 8-byte header length and ``{``; a
    torch.save file is a zip holding ``data.pkl`` (or a legacy pickle, ``0x80``); a torch.export program is a
    zip holding ``archive_format``; an ONNX model is a protobuf whose first field is ``ir_version`` (``0x08``).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "torch"  # a zip cut short: most likely a truncated torch.save file
        if any(n == "archive_format" or n.endswith("/archive_format") for n in names):
            return "pt2"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return "other"
    if head[:1] == b"\x80":
        return "torch"
    if head[:1] == b"\x08":
        return "onnx"
    return "other"


def unwrap_state_dict(obj: Any, use_ema: bool = False, source: str = "checkpoint") -> StateDict:
    """The flat tensor dict inside an official or own checkpoint (``model``, ``state_dict``, EMA …)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    if use_ema and not any(isinstance(obj.get(k), Mapping) for k in ("model_ema", "state_dict_ema")):
        raise CheckpointError(
            f"--ema: {source} holds no EMA weights (no 'model_ema' or 'state_dict_ema'; a run without --model-ema, "
            "or a deploy/weights file), so they cannot be used; drop --ema to use its weights")
    containers = ("model_ema", "state_dict_ema") + _CONTAINER_KEYS if use_ema else _CONTAINER_KEYS
    for key in containers:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{source} is not a tensor state dict: entries {bad[:5]} are not tensors "
            f"(top-level keys: {list(obj)[:8]})"
        )
    # Weights stored as integers (a quantized file, or a tampered one) would be cast to float silently and give
    # meaningless, confident predictions; only counters (num_batches_tracked) are integers in a float model.
    quantized = [k for k, v in obj.items() if not (v.is_floating_point() or v.is_complex())
                 and k.rsplit(".", 1)[-1] in ("weight", "bias", "running_mean", "running_var", "gamma", "beta")]
    if quantized:
        raise CheckpointError(
            f"{source}: {quantized[0]} is stored as {obj[quantized[0]].dtype}, not as floating-point weights "
            f"({len(quantized)} such tensor(s)); integer-quantized weights are not read — pass the float checkpoint")
    return dict(obj)


# ----------------------------------------------------------------------------------------------- what a file is
#: What each kind of :func:`file_kind` is, in words.
KIND_NAMES = {
    "safetensors": "a safetensors weights file",
    "torch": "a PyTorch checkpoint (.pth)",
    "pt2": "a torch.export program (.pt2)",
    "onnx": "an ONNX model",
    "other": "a file of unknown kind",
}


def describe_unreadable_checkpoint(path: PathLike, error: BaseException, expected: str) -> str:
    """One paragraph for a checkpoint that ``torch.load(weights_only=True)`` refused, by what the file is.

    torch's own message runs to many lines and suggests ``weights_only=False``, which is wrong advice for a text
    or HTML page saved as ``.pth`` and dangerous advice for a file of unknown origin.
    """
    path = Path(path)
    kind = file_kind(path) if path.is_file() and path.stat().st_size else "empty"
    if kind == "empty":
        return f"{path} is empty (an interrupted download or save?); pass {expected}"
    if kind != "torch":
        what = describe_head(path) if kind == "other" else f"it is {KIND_NAMES[kind]}"
        return f"{path} is not a PyTorch checkpoint ({what}); pass {expected}"
    if isinstance(error, pickle.UnpicklingError):
        return (f"{path} holds pickled Python objects that are never loaded, for safety "
                f"({first_error_line(error).rstrip('.')}); it is not a checkpoint written by unireplknet — pass "
                f"{expected}")
    return (f"{path} is not a readable checkpoint ({type(error).__name__}: {first_error_line(error)}); it is "
            f"probably truncated or corrupt — pass {expected}")


# ----------------------------------------------------------------------------------------------- writing
def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform lets a directory be opened for this.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# The write policy of every command, in one place (docs/cli/refusals.md, "What the commands write"):
# 1. never through a symbolic link: the link would lead the write to a file outside the destination;
# 2. never over a file the command did not create, unless the user said --overwrite;
# 3. always atomically (:func:`atomic_write`), so a failed write leaves the previous file as it was.
def check_destination(path: PathLike, overwrite: bool = False, flag: str = "--output") -> Path:
    """Refuse a destination the write policy forbids, before any work is done; return it as a ``Path``.

    A symbolic link is refused without ``overwrite`` and, with it, replaced by the new file (its target is never
    written). An existing file is refused without ``overwrite``.
    """
    path = Path(path)
    if path.is_symlink():
        if not overwrite:
            raise DestinationError(
                f"{flag} {path} is a symbolic link (to {os.readlink(path)}); nothing is written through a link, "
                "since that would change a file outside the destination. Pass another path, or add --overwrite "
                "to replace the link itself (its target is left as it is)")
        return path
    if path.is_dir():
        raise DestinationError(f"{flag} {path} is a folder; pass a file path inside it")
    if path.exists() and not overwrite:
        raise DestinationError(
            f"{flag} {path} already exists and was not written by this command; it is left as it is. Pass "
            "another path, or add --overwrite to replace it")
    return path


def check_destination_folder(folder: PathLike, overwrite: bool = False, flag: str = "output") -> Path:
    """The write policy for a command that fills a folder: an existing folder that holds anything (another data
    set, say) is refused without ``overwrite``; a symbolic link is never followed."""
    folder = Path(folder)
    if folder.is_symlink() and not overwrite:
        raise DestinationError(
            f"{flag} {folder} is a symbolic link (to {os.readlink(folder)}); nothing is written through a link. "
            "Pass the real folder, or add --overwrite")
    if folder.exists() and not folder.is_dir():
        raise DestinationError(f"{flag} {folder} is a file, not a folder; pass a folder to write into")
    if folder.is_dir() and not overwrite:
        held = sorted(p.name for p in folder.iterdir())
        if held:
            more = f" and {len(held) - 3} more" if len(held) > 3 else ""
            raise DestinationError(
                f"{flag} {folder} already holds files ({', '.join(held[:3])}{more}) that this command did not "
                "write; they are left as they are. Pass a new or empty folder, or add --overwrite to replace them")
    return folder


def atomic_write(path: PathLike, write: Callable[[Any], Any], to_path: bool = False,
                 overwrite: bool = True, flag: str = "--output") -> Path:
    """Write ``path`` so that it is either the old file or the complete new one: the package's one writer.

    ``write`` fills a temporary file in the same folder — given the open binary file, or with ``to_path`` its
    path (for writers that take a file name only, such as safetensors' ``save_file`` or matplotlib) — which is
    then fsync'ed, given the permissions of an ordinary new file, and ``os.replace``'d over ``path``. On any
    error the temporary file is removed; an ``OSError`` becomes :class:`CheckpointWriteError`, which says why
    (a full disk by name) and that the previous file is intact.

    A symbolic link at ``path`` is replaced, never written through. ``overwrite=False`` (a file named by the
    user, without ``--overwrite``) applies :func:`check_destination`: an existing file or a link is refused.
    """
    path = Path(path)
    if not overwrite:
        check_destination(path, False, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if to_path:
            os.close(fd)
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, CheckpointWriteError):
            survived = f"; the previous {path.name} is intact" if path.exists() else ""
            hint = " (disk full: free space or pass another --output folder)" if e.errno == errno.ENOSPC else ""
            raise CheckpointWriteError(e.errno, f"could not write {path}: {e.strerror or e}{hint}{survived}") from e
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: PathLike,
                      metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``tensors`` to ``path`` as safetensors, atomically (:func:`atomic_write`)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=dict(metadata or {})), to_path=True)

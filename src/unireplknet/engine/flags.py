"""Argument parsing and printing shared by the task subcommands (audio-, forecast-, video-, points-, det-/seg-)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from typing import Any, Callable, Dict, Optional, Sequence

from ..guards import positive_int

__all__ = ["json_dict_arg", "format_metrics", "set_torch_threads", "default_threads",
           "COMMON_FLAGS", "add_common_arguments", "ENGINE_FLAGS", "add_engine_arguments", "engine_options",
           "add_eval_loader_arguments", "CLIError", "format_duration", "text_table", "is_main_rank",
           "add_checkpoint_arguments", "add_data_config_arguments", "number_in", "PROBABILITY", "RATE",
           "NON_NEGATIVE", "POSITIVE", "SHARE", "FRACTION", "INTERPOLATIONS", "add_overwrite_argument", "OVERWRITE_HELP"]


# ----------------------------------------------------------------------------------------------- number ranges
def number_in(low: Optional[float] = None, high: Optional[float] = None, *, low_open: bool = False,
              high_open: bool = False, meaning: str = "") -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (``low_open``/``high_open``: that end excluded), the one
    range check of every numeric flag; the usage error names the range and ``meaning``."""
    left = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
    right = "" if high is None else (f"< {high:g}" if high_open else f"<= {high:g}")
    span = " and ".join(p for p in (left, right) if p)
    what = f"a number {span}" + (f" ({meaning})" if meaning else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (value != value or value in (float("inf"), float("-inf"))
                or (low is not None and (value <= low if low_open else value < low))
                or (high is not None and (value >= high if high_open else value > high))):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: The ranges of the numeric flags every command shares (docs/cli/refusals.md, "Numbers that make no sense").
PROBABILITY = number_in(0, 1, meaning="a probability")
RATE = number_in(0, 1, high_open=True, meaning="a rate: 0 = off, below 1")
NON_NEGATIVE = number_in(0, meaning="0 or more")
POSITIVE = number_in(0, low_open=True, meaning="more than 0")
SHARE = number_in(0, 1, low_open=True, high_open=True, meaning="a share of the data, between 0 and 1")
FRACTION = number_in(0, 1, low_open=True, meaning="more than 0, at most 1")
#: The resize interpolations (timm / PIL names) that a data config or --interpolation may name.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


def json_dict_arg(text: str) -> Dict[str, Any]:
    """argparse type: a JSON object such as '{"depths": [1, 1, 1, 1]}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"depths\": [1,1,1,1]}}', got {text!r}")
    return value


def format_metrics(row: Dict[str, Any]) -> str:
    """'name value, …' with floats to four significant digits."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


#: Environment variables that fix the thread count themselves (torchrun sets OMP_NUM_THREADS=1 per process).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Help of every command's --threads (cli.main applies it through set_torch_threads before the command runs).
THREADS_HELP = ("torch CPU threads per process [default: torch's choice (the physical cores), at most the cores "
                "free now; OMP_NUM_THREADS overrides]")

_torch_default_threads: Optional[int] = None  # torch's own choice, read before the first change


def default_threads(torch_default: int, cores: int, total_cores: int, load: float) -> int:
    """The thread count of a command without ``--threads``: torch's choice, but never more than the free cores.

    torch takes every physical core. On a machine whose cores are busy with other jobs, OpenMP threads that wait
    for each other spin and burn CPU: measured here, a 3-epoch detection run took 361 CPU-s with torch's two
    threads on two cores loaded 11-19, and 42 CPU-s with one thread (docs/dense.md). The free cores are the
    ``cores`` this process may run on times the idle share of the machine (``load`` over ``total_cores``,
    the 1-minute load average), rounded to the nearest whole core, and at least 1.
    """
    busy = min(1.0, max(0.0, load) / max(1, total_cores))
    free = max(1, int(cores * (1.0 - busy) + 0.5))
    return max(1, min(torch_default, free))


def set_torch_threads(threads: Optional[int]) -> int:
    """Apply ``--threads``; None or 0 picks :func:`default_threads` unless ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` is set (then torch already follows it). Returns the thread count in effect."""
    global _torch_default_threads
    import torch

    if _torch_default_threads is None:
        _torch_default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    elif not any(os.environ.get(name) for name in THREAD_ENV_VARS):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows: no load average; keep torch's choice
            load = 0.0
        chosen = default_threads(_torch_default_threads, cores, os.cpu_count() or cores, load)
        if chosen != torch.get_num_threads():
            logging.getLogger(__name__).info(
                "using %d CPU thread(s) of torch's %d: load %.1f on %d cores (set --threads or OMP_NUM_THREADS to "
                "choose)", chosen, _torch_default_threads, load, os.cpu_count() or cores)
            torch.set_num_threads(chosen)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------------------------- common flags
#: The flags of the one vocabulary every subcommand shares (docs/cli/engine.md, "Common flags"): ``--threads`` and
#: ``--quiet`` everywhere, ``--device`` where the command computes, ``--json`` where it prints results.
COMMON_FLAGS = ("threads", "device", "json", "quiet")
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:1 …"
JSON_HELP = "print the results as JSON on stdout instead of text"
QUIET_HELP = "no progress bars and no INFO log lines (warnings and errors still show)"


def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads (0 = the default), got {text!r}")
    return value


def add_common_arguments(parser: Any, *, device: bool = False, json: bool = False,
                         device_default: Optional[str] = "auto") -> None:
    """Add the common flags to a subcommand's parser (or argument group): ``--threads`` and ``--quiet`` always,
    ``--device`` when ``device`` (the command computes), ``--json`` when ``json`` (it prints results).

    :func:`unireplknet.cli.main` applies ``--threads`` and ``--quiet`` before the command runs, so a command body
    only reads ``args.device`` and ``args.json``. ``device_default`` None: the task's recipe decides (``*-train``).
    """
    if device:
        shown = device_default if device_default is not None else "auto"
        parser.add_argument("--device", default=device_default, help=f"{DEVICE_HELP} [default: {shown}]")
    parser.add_argument("--threads", type=_thread_count, default=None, help=THREADS_HELP)
    if json:
        parser.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)


# ----------------------------------------------------------------------------------------------- engine flags
#: The options every ``*-train`` subcommand takes, with the same names and meaning (the engine owns them,
#: docs/cli/engine.md). Each defaults to None on the command line, so an unset option takes the value of the
#: task's recipe (its config class); :func:`engine_options` drops the unset ones.
ENGINE_FLAGS = (
    "model", "model_kwargs", "pretrained", "checkpoint", "drop_path", "grad_checkpointing", "sync_bn",
    "epochs", "batch_size", "accum_steps", "lr", "min_lr", "warmup_epochs", "weight_decay", "layer_decay",
    "clip_grad", "model_ema", "model_ema_decay", "deploy_from_ema", "device", "amp", "channels_last", "seed",
    "workers", "output", "resume", "overwrite", "eval_every", "tensorboard", "export_onnx", "progress",
)

#: The example in the help text (a test runs it): one kernel size per block, as UniRepLKNet requires.
MODEL_KWARGS_EXAMPLE = '{"depths":[1,1,1,1],"dims":[8,16,32,64],"kernel_sizes":[[3],[7],[3],[3]]}'
_MODEL_KWARGS_HELP = ("UniRepLKNet arguments as JSON, for --model custom (a named variant takes them as overrides), "
                      f"e.g. '{MODEL_KWARGS_EXAMPLE}'")


def add_engine_arguments(parser: argparse.ArgumentParser, defaults: Optional[Dict[str, str]] = None) -> None:
    """Add the engine flags (see :data:`ENGINE_FLAGS`) in three groups. ``defaults`` maps a flag's dest to the
    task's default, shown in its help text (e.g. ``{"epochs": "300; digits 12"}``)."""
    d = dict(defaults or {})

    def h(text: str, dest: str, fallback: Optional[str] = None) -> str:
        value = d.get(dest, fallback)
        if value is None:
            return text
        value = re.sub(r"^\s*defaults?:\s*", "", str(value), flags=re.I)  # the bracket says "default:" itself
        return f"{text} [default: {value}]"

    g = parser.add_argument_group("model (engine)")
    g.add_argument("--model", default=None, help=h("unireplknet_a … unireplknet_xl, 'custom' with --model-kwargs, or "
                                                   "another timm model (e.g. convnext_tiny, resnet50) as a peer "
                                                   "backbone of any task (dense tasks: one with features_only)",
                                                   "model"))
    g.add_argument("--model-kwargs", type=json_dict_arg, default=None, help=_MODEL_KWARGS_HELP)
    g.add_argument("--pretrained", action="store_true", default=None,
                   help="start from the official ImageNet weights of a named variant (timm / Hugging Face)")
    g.add_argument("--checkpoint", default=None,
                   help="start from these weights (official or own .pth/.safetensors; a head of another class count "
                        "is replaced)")
    g.add_argument("--drop-path", type=RATE, default=None, help=h("stochastic depth rate", "drop_path"))
    g.add_argument("--grad-checkpointing", dest="grad_checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass: less memory, more compute")
    g.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm across GPUs under torchrun")
    g = parser.add_argument_group("optimisation (engine)")
    g.add_argument("--epochs", type=int, default=None, help=h("training epochs, at least 1", "epochs"))
    g.add_argument("--batch-size", type=int, default=None, help=h("micro-batch per process", "batch_size"))
    g.add_argument("--accum-steps", type=int, default=None,
                   help="gradient accumulation: micro-batches per optimizer step (official update_freq) [default: 1]")
    g.add_argument("--lr", type=POSITIVE, default=None, help=h("peak learning rate (after the warmup)", "lr"))
    g.add_argument("--min-lr", type=NON_NEGATIVE, default=None, help=h("learning rate at the end of the cosine schedule", "min_lr", "1e-6"))
    g.add_argument("--warmup-epochs", type=NON_NEGATIVE, default=None,
                   help=h("linear warmup from 0, updated every step", "warmup_epochs"))
    g.add_argument("--weight-decay", type=NON_NEGATIVE, default=None,
                   help=h("weight decay, not on 1-D parameters and biases", "weight_decay", "0.05"))
    g.add_argument("--layer-decay", type=FRACTION, default=None,
                   help=h("layer-wise learning-rate decay, e.g. 0.8 for fine-tuning", "layer_decay"))
    g.add_argument("--clip-grad", type=NON_NEGATIVE, default=None,
                   help="clip the gradient norm to this value; 0 = off [default: off]")
    g.add_argument("--model-ema", action="store_true", default=None, help="keep an exponential moving average of the "
                   "weights (evaluated next to the model)")
    g.add_argument("--model-ema-decay", type=PROBABILITY, default=None, help="EMA decay per step [default: 0.9999]")
    g.add_argument("--deploy-from-ema", action="store_true", default=None,
                   help="re-parameterize and export the EMA weights (needs --model-ema)")
    g = parser.add_argument_group("execution (engine)")
    g.add_argument("--amp", default=None, choices=("none", "bf16", "fp16"),
                   help="autocast dtype: bf16 on CPU or GPU, fp16 on GPU only [default: none]")
    g.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="NHWC memory format [default: on with CUDA, off on CPU]")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="NCHW memory format")
    add_common_arguments(g, device=True, json=True, device_default=None)  # --device --threads --json --quiet
    g.add_argument("--seed", type=int, default=None, help="seed of every random stream [default: 0]")
    g.add_argument("--workers", type=int, default=None, help=h("data-loading processes per rank", "workers"))
    g.add_argument("--output", "-o", default=None, help=h("run folder", "output"))
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue a stopped run: a last.pth path, or no value / 'auto' for OUTPUT/last.pth")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="start afresh in an --output folder that holds another run (its files are replaced)")
    g.add_argument("--eval-every", type=int, default=None,
                   help="evaluate every N epochs, at least 1; the last epoch always [default: 1]")
    g.add_argument("--tensorboard", action="store_true", default=None,
                   help="require TensorBoard logging to OUTPUT/tensorboard [default: on when tensorboard is installed]")
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard event files")
    g.add_argument("--no-onnx", dest="export_onnx", action="store_false", default=None,
                   help="skip the ONNX export at the end (the deploy .safetensors is still written)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")


def add_recipe_argument(parser: Any, recipes: Sequence[str], help_text: str) -> None:
    """``--recipe NAME``: a named recipe of the task's config (its ``RECIPES``), given to ``with_recipe``; unset,
    the config's ``default_recipe`` for the other options applies. ``help_text`` says what each recipe is."""
    parser.add_argument("--recipe", default=None, choices=tuple(recipes), help=help_text)


def engine_options(args: argparse.Namespace, **task_options: Any) -> Dict[str, Any]:
    """Config keyword arguments of a ``*-train`` command: the engine flags and ``task_options`` that were set
    (None = unset: the recipe's value applies). ``--progress`` is on unless ``--no-progress``."""
    options = {k: getattr(args, k, None) for k in ENGINE_FLAGS}
    chosen = {k for k, v in options.items() if v is not None} | {k for k, v in task_options.items() if v is not None}
    options["progress"] = options["progress"] is not False
    options.update(task_options)
    options = {k: v for k, v in options.items() if v is not None}
    options["set_by_user"] = tuple(sorted(chosen - {"progress"}))  # what the run may adapt only with a warning
    # A named network must not inherit a demo recipe's custom model_kwargs (its default).
    if options.get("model") not in (None, "custom", "official") and "model_kwargs" not in options:
        options["model_kwargs"] = {}
    return options


def add_eval_loader_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """The options that end the ``*-eval`` commands: ``--batch-size --workers --skip-unreadable`` and the common
    flags (``--device --threads --json --quiet``)."""
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"samples per batch ({batch_size})")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (0)")
    parser.add_argument("--skip-unreadable", action="store_true", help="leave out files that fail to load (counted)")
    add_common_arguments(parser, device=True, json=True)


#: Help of every --overwrite (the one write policy, unireplknet.checkpoint.check_destination).
OVERWRITE_HELP = ("replace {what} when it exists; a symbolic link is replaced itself, never written through "
                  "[default: refuse, leaving it as it is]")


def add_overwrite_argument(parser: Any, what: str = "the destination") -> None:
    """``--overwrite`` of a command that writes files named by the user (the one write policy)."""
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format(what=what))


class CLIError(Exception):
    """A problem with the command line or its inputs; printed as one line, exit status 2."""


def format_duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: left-aligned columns under a dashed rule."""
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def is_main_rank() -> bool:
    """Whether this is the printing process: rank 0 of a torchrun job, or a single process (no torch import)."""
    # A malformed RANK counts as rank 0 here; cli.main refuses it with a clear error (_runtime.check_environment).
    return os.environ.get("RANK", "0").strip() in ("0", "")


def add_checkpoint_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The checkpoint file (positional) and ``--ema`` of the commands that read one model file."""
    if required:
        parser.add_argument("checkpoint", help="a .pth (own or official) or .safetensors file")
    parser.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")


def add_data_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Overrides of the image preprocessing a checkpoint records: ``--input-size --crop-pct --interpolation``."""
    parser.add_argument("--input-size", type=positive_int, default=None, help="override the checkpoint's input size")
    parser.add_argument("--crop-pct", type=FRACTION, default=None,
                        help="override the centre-crop fraction (more than 0, at most 1)")
    parser.add_argument("--interpolation", default=None, choices=INTERPOLATIONS,
                        help="override the resize interpolation")

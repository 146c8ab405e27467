"""Argument parsing and printing shared by the task subcommands (audio-, forecast-, video-, points-, det-/seg-)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional

__all__ = ["json_dict_arg", "format_metrics", "print_epoch", "set_torch_threads", "add_optimisation_arguments",
           "add_execution_arguments", "add_eval_loader_arguments", "clf_train_options"]


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


def print_epoch(row: Dict[str, Any]) -> None:
    """Progress callback of the train commands: 'epoch N: metrics' on stderr (stdout keeps the summary)."""
    print(f"epoch {row['epoch']}: {format_metrics(row)}", file=sys.stderr)


def set_torch_threads(threads: Optional[int]) -> None:
    """Apply ``--threads`` (None or 0: leave torch's choice)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


# The clip and point-cloud train commands (video-train, points-train) share the options below. Every one
# defaults to None so that an unset option takes the value of the chosen recipe (demo or official), which
# the task's config class holds; clf_train_options drops the unset ones.

def add_optimisation_arguments(group: argparse._ActionsContainer, model_help: str) -> None:
    """``--model`` … ``--weight-decay`` (in this order) for a train command built on ``tasks._clf_loop``."""
    group.add_argument("--model", default=None, help=model_help)
    group.add_argument("--model-kwargs", type=json_dict_arg, default=None, help="UniRepLKNet arguments (JSON)")
    group.add_argument("--drop-path", type=float, default=None)
    group.add_argument("--epochs", type=int, default=None)
    group.add_argument("--batch-size", type=int, default=None)
    group.add_argument("--lr", type=float, default=None)
    group.add_argument("--warmup-epochs", type=float, default=None)
    group.add_argument("--weight-decay", type=float, default=None)


def add_execution_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    """The "execution" group: ``--seed --workers --device --threads --output/-o --resume`` (a flag)."""
    g = parser.add_argument_group("execution")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--workers", type=int, default=None)
    g.add_argument("--device", default=None)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.add_argument("--output", "-o", default=None, help=output_help)
    g.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pth")


def add_eval_loader_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """The options that end video-eval and points-eval: ``--batch-size --workers --skip-unreadable --json``."""
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--skip-unreadable", action="store_true")
    parser.add_argument("--json", action="store_true")


def clf_train_options(args: argparse.Namespace, **task_options: Any) -> Dict[str, Any]:
    """Config keyword arguments of a clip/point-cloud train command: the options added by
    :func:`add_optimisation_arguments` and :func:`add_execution_arguments` (``--threads`` aside) plus
    ``task_options``, leaving out those that are None (unset: the recipe's value applies)."""
    options = dict(
        task_options, model=args.model, model_kwargs=args.model_kwargs, drop_path=args.drop_path, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
        seed=args.seed, workers=args.workers, device=args.device, output=args.output, resume=args.resume or None)
    options = {k: v for k, v in options.items() if v is not None}
    # A named network must not inherit the demo recipe's custom model_kwargs (its default).
    if args.model not in (None, "custom") and args.model_kwargs is None:
        options["model_kwargs"] = {}
    return options

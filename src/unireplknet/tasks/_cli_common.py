"""Argument parsing and printing shared by the task subcommands (audio-, forecast-, video-, points-, det-/seg-)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict

__all__ = ["json_dict_arg", "format_metrics"]


def json_dict_arg(text: str) -> Dict[str, Any]:
    """argparse type: a JSON object such as '{"depths": [1, 1, 1, 1]}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def format_metrics(row: Dict[str, Any]) -> str:
    """'name value, …' with floats to four significant digits."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())

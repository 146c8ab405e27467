"""``unireplknet erf``: the effective receptive field of one or several timm models, side by side.

    unireplknet erf --model unireplknet_t,convnext_tiny,resnet50 --pretrained --data /imagenet/val \\
        --input-size 1024 --images 50 --output erf.png

writes ``erf.png`` (one panel per model, one shared colour scale), ``erf.json`` and ``erf.csv`` (the
high-contribution area ratios) and ``erf.npz`` (the raw averaged maps), and prints the table. Without
``--data`` the held-out part of the embedded digits is used, so the command runs with no download.

This module is light to import (torch and timm are imported inside :func:`run`), so ``--help`` is fast.
``python -m unireplknet.analysis.erf_cli ...`` runs it stand-alone.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..engine.flags import add_common_arguments, add_overwrite_argument

__all__ = ["add_parser", "run", "main", "PLOT_MISSING"]

_logger = logging.getLogger("unireplknet.erf")

PLOT_MISSING = ("the ERF figure needs matplotlib, which is not installed: pip install 'unireplknet[plot]' "
                "(or give --output a .json/.csv file name to write the table only)")
_TABLE_SUFFIXES = (".json", ".csv")


def _names(text: str) -> List[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _stage(text: str) -> Any:
    if text.lower() in ("none", "output"):
        return None
    if text.isdigit():
        value = int(text)
        if not 1 <= value <= 4:
            raise argparse.ArgumentTypeError(f"--stage takes 1..4 (stride 4, 8, 16, 32) or a module name, got {text}")
        return value
    return text  # a module name such as layer3 or stages.2


def add_parser(subparsers: Any) -> None:
    """Add the ``erf`` subcommand to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "erf", help="effective receptive field: heat map and high-contribution area ratios of timm models",
        description="The effective receptive field as the large-kernel papers measure it (RepLKNet, CVPR 2022; "
                    "UniRepLKNet, CVPR 2024): the gradient of the central point of a stage's output with respect "
                    "to the input, |.| summed over channels, averaged over images; drawn on log10(x+1) scale "
                    "and summarised by the share of the input area of the smallest centred square holding "
                    "20/30/50/75/99% of the total score. Several models share one figure and one colour scale.")
    p.add_argument("--model", type=_names, required=True,
                   help="comma-separated timm model names, e.g. unireplknet_t,convnext_tiny,resnet50")
    p.add_argument("--checkpoint", type=_names, default=None,
                   help="comma-separated weight files, one per model ('none': random weights, the model's "
                        "initialisation); .pth (read with weights_only) or .safetensors. A UniRepLKNet file (e.g. "
                        "runs/digits/deploy.safetensors) decides its own variant: any unireplknet_* name reads it")
    p.add_argument("--pretrained", action="store_true",
                   help="load timm's pretrained weights for models without a --checkpoint (needs a download)")
    p.add_argument("--labels", type=_names, default=None, help="comma-separated panel titles (default: the names)")
    p.add_argument("--data", default="embedded",
                   help="folder of images (searched recursively, e.g. an ImageNet val folder), or 'embedded' "
                        "for the held-out embedded digits (default)")
    p.add_argument("--images", type=int, default=50, help="images to average over (50, as the papers)")
    p.add_argument("--sample", choices=("spread", "first"), default="spread",
                   help="which images of the folder: evenly spread over the sorted list (default) or the first "
                        "ones (RepLKNet's script: the first images of the sorted ImageNet val folder)")
    p.add_argument("--stage", type=_stage, default=4,
                   help="1..4: the output at stride 4, 8, 16, 32 (default 4, the last stage); or a module name")
    p.add_argument("--input-size", type=int, default=1024, help="input side in pixels (1024, as the papers)")
    p.add_argument("--in-chans", type=int, default=None,
                   help="input channels of models built here (default 3; a checkpoint decides for itself)")
    p.add_argument("--batch-size", type=int, default=1, help="images per backward pass (memory, not result)")
    p.add_argument("--contribution", choices=("abs", "relu"), default="abs",
                   help="abs: |gradient| (default); relu: RepLKNet's script (ReLU on the central point and "
                        "on the gradient)")
    p.add_argument("--ratio-on", choices=("log", "linear"), default="log",
                   help="take the area ratios on the log-scaled map (default, RepLKNet's analysis) or the raw one")
    p.add_argument("--deploy", action="store_true",
                   help="re-parameterize UniRepLKNet models first (the map is the same; this checks it)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="activation checkpointing while measuring: less memory for a second forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation of models built here")
    p.add_argument("--output", "-o", default="erf.png",
                   help="figure file (.png/.pdf/.svg); the table goes next to it as .json and .csv and the maps "
                        "as .npz. A .json or .csv name writes the table and maps only (no matplotlib needed)")
    add_overwrite_argument(p, "the figure, table and map files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_arguments(p, device=True)  # --device --threads --quiet (the table is written as .json already)
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------- models
def build_model(name: str, checkpoint: Optional[str], pretrained: bool, in_chans: int) -> Any:
    """A timm model by name; ``checkpoint`` (own or official UniRepLKNet file, or a timm-layout state dict)."""
    import timm
    import torch

    import unireplknet  # noqa: F401  (registers the unireplknet_* names with timm)

    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}; list the names with python -c \"import timm, unireplknet; "
                         f"print(timm.list_models('*{name.split('_')[0]}*'))\"")
    if checkpoint and name.startswith("unireplknet_"):
        from ..loading import load_model

        return load_model(checkpoint)  # the file decides variant, structure, channels and classes
    if checkpoint:
        return _timm_model_from_file(name, checkpoint)
    return timm.create_model(name, pretrained=pretrained, in_chans=in_chans)


def _timm_model_from_file(name: str, path: str) -> Any:
    """A non-UniRepLKNet timm model with the weights of ``path``, read without unpickling. The classifier is
    left out (the ERF never reaches it) and the input channels follow the file's first convolution."""
    import timm

    from ..checkpoint import CheckpointError, read_state_dict, strip_prefixes

    sd = strip_prefixes(read_state_dict(path))
    probe = timm.create_model(name, pretrained=False)
    cfg = getattr(probe, "pretrained_cfg", {}) or {}
    classifiers = cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    first = cfg.get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) else first
    in_chans = int(sd[f"{first}.weight"].shape[1]) if first and f"{first}.weight" in sd else 3
    model = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0)
    sd = {k: v for k, v in sd.items() if not any(k.startswith(c + ".") for c in classifiers)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:  # an official (non-timm) layout, e.g. facebookresearch/ConvNeXt files
            sd = {k: v for k, v in filter_fn(sd, model).items()
                  if not any(k.startswith(c + ".") for c in classifiers)}
            missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {name}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}; "
            "check that the file holds the weights of this architecture")
    return model


# ----------------------------------------------------------------------------------------------- images
def _pick(count: int, available: int, how: str) -> List[int]:
    import numpy as np

    n = min(count, available)
    if how == "first":
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, available - 1, n)}) if n else []


def embedded_images(count: int, size: int, in_chans: int) -> Any:
    """``count`` held-out embedded digits, upsampled (bilinear) to ``size`` and normalised like
    :class:`unireplknet.data.DigitsDataset`, grey repeated to ``in_chans`` channels."""
    import torch
    import torch.nn.functional as F

    from ..data.digits import DIGITS_MEAN, DIGITS_STD, digits_split_indices, load_digits

    if size < 32:
        raise ValueError(f"--input-size {size} is too small; the networks need at least 32 pixels")
    images, _ = load_digits()
    _, held_out = digits_split_indices()
    keep = held_out[_pick(count, len(held_out), "spread")]
    x = torch.from_numpy(images[keep]).float().div_(16.0).unsqueeze(1)
    # Only the chosen images are upsampled (the whole split at 1024 pixels would be 1.5 GB).
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - DIGITS_MEAN[0]) / DIGITS_STD[0]
    return x.repeat(1, in_chans, 1, 1)


def folder_images(root: str, count: int, size: int, model: Any, how: str) -> Any:
    """``count`` images of ``root`` (recursive, sorted) resized to ``size``×``size`` (no crop, as the papers'
    ERF scripts) and normalised with the model's pretrained mean/std."""
    import torch
    from PIL import Image, UnidentifiedImageError
    from timm.data import resolve_data_config

    from ..data.build import eval_transform
    from ..data.folder import IMAGE_EXTENSIONS, DataError

    path = Path(root)
    if not path.is_dir():
        raise DataError(f"--data {root} is not a folder; pass a folder of images (e.g. ImageNet val) or 'embedded'")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"--data {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}); point it at an image folder")
    in_chans = _in_chans_of(model)
    dc = dict(resolve_data_config({}, model=model))
    if len(dc["mean"]) != in_chans:
        dc["mean"], dc["std"] = (0.5,) * in_chans, (0.5,) * in_chans
    dc.update(input_size=(in_chans, size, size), crop_pct=1.0)
    transform = eval_transform(dc)
    picked = _pick(count, len(files), how)
    # Unreadable files are replaced by the next files not picked, so the count holds when there are enough.
    order = picked + sorted(set(range(len(files))) - set(picked))
    out, unreadable = [], 0
    for p in (files[i] for i in order):
        if len(out) == count:
            break
        try:
            with Image.open(p) as img:
                out.append(transform(img.convert("RGB" if in_chans == 3 else "L")))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            unreadable += 1
    if unreadable:
        _logger.warning("%d unreadable image(s) in %s were skipped", unreadable, root)
    if not out:
        raise DataError(f"none of the images in {root} could be read")
    return torch.stack(out)


def _in_chans_of(model: Any) -> int:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels * m.groups)
    return 3


# ----------------------------------------------------------------------------------------------- outputs
def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through the package's one atomic writer: an interrupted run keeps the old file."""
    from ..checkpoint import atomic_write

    atomic_write(path, write, to_path=True)


def _figure_class() -> Any:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(PLOT_MISSING) from None
    return Figure


def plot_erf(maps: Sequence[Any], titles: Sequence[str], path: Path, caption: str = "") -> None:
    """One panel per map (each already on the [0, 1] log scale), one shared colour bar, written to ``path``."""
    Figure = _figure_class()
    n = len(maps)
    fig = Figure(figsize=(3.1 * n + 0.9, 3.4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, m, title in zip(axes, maps, titles):
        image = ax.imshow(m, cmap="RdYlGn", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), shrink=0.85, label="log10(score + 1), scaled to [0, 1]")
    if caption:
        fig.suptitle(caption, fontsize=8)
    suffix = path.suffix.lstrip(".").lower() or "png"
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format=suffix, bbox_inches="tight"))


def weights_description(checkpoint: Optional[str], pretrained: bool, seed: int) -> str:
    """What the measured network's weights are, for the table, the console and the figure: an untrained
    network's ERF shows its initialisation, not what training makes of the architecture, so it says so."""
    if checkpoint:
        return f"trained: {checkpoint}"
    if pretrained:
        return "pretrained (timm)"
    return f"random weights (seed {seed})"


def _default_label(name: str, checkpoint: Optional[str]) -> str:
    if checkpoint is None:
        return name
    # a UniRepLKNet file decides its own variant (build_model), so the name given only says "UniRepLKNet"
    family = "unireplknet" if name.startswith("unireplknet_") else name
    return f"{family} ({Path(checkpoint).name})"


def _ratio(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"  # None: an all-zero map has no ratios


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The area-ratio table (one row per model) as aligned text."""
    thresholds = list(rows[0]["area_ratio"]) if rows else []
    headers = ["model", "weights", "stage", "images", "input", *(f"r({float(t) * 100:g}%)" for t in thresholds),
               "seconds"]
    cells = [headers] + [[r["label"], r["weights"], r["module"] or "output", str(r["images"]),
                          "x".join(map(str, r["input_size"])), *(_ratio(r["area_ratio"][t]) for t in thresholds),
                          f"{r['seconds']:.1f}"] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _write_tables(rows: List[Dict[str, Any]], settings: Dict[str, Any], stem: Path) -> List[Path]:
    import csv

    js, cs = stem.with_suffix(".json"), stem.with_suffix(".csv")

    def write_json(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(dict(settings=settings, models=rows), f, indent=2)

    def write_csv(tmp: str) -> None:
        thresholds = list(rows[0]["area_ratio"])
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", "label", "weights", "module", "images", "input_size", "feature_size",
                        *(f"area_ratio_{t}" for t in thresholds), *(f"square_side_{t}" for t in thresholds),
                        "seconds"])
            for r in rows:
                w.writerow([r["model"], r["label"], r["weights"], r["module"], r["images"],
                            "x".join(map(str, r["input_size"])),
                            "x".join(map(str, r["feature_size"])), *(r["area_ratio"][t] for t in thresholds),
                            *(r["square_side"][t] for t in thresholds), f"{r['seconds']:.2f}"])

    _atomic_write(js, write_json)
    _atomic_write(cs, write_csv)
    return [js, cs]


# ----------------------------------------------------------------------------------------------- run
def _check_args(args: argparse.Namespace) -> None:
    if args.checkpoint is not None and len(args.checkpoint) != len(args.model):
        raise ValueError(f"--checkpoint names {len(args.checkpoint)} file(s) for {len(args.model)} model(s); give "
                         "one per model, 'none' for a model that keeps its initialisation")
    if args.labels is not None and len(args.labels) != len(args.model):
        raise ValueError(f"--labels names {len(args.labels)} title(s) for {len(args.model)} model(s); give one each")
    if args.images < 1:
        raise ValueError(f"--images must be at least 1, got {args.images}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.input_size < 32:
        raise ValueError(f"--input-size {args.input_size} is too small; the networks need at least 32 pixels")


def run(args: argparse.Namespace) -> int:
    """Measure every ``--model``, print the table, write the figure, JSON, CSV and maps; 0 on success."""
    _check_args(args)
    output = Path(args.output)
    draw = output.suffix.lower() not in _TABLE_SUFFIXES
    from ..checkpoint import check_destination  # the one write policy, before minutes of computing

    for path in ([output] if draw else []) + [output.with_suffix(s) for s in (".json", ".csv", ".npz")]:
        check_destination(path, args.overwrite)
    if draw:
        _figure_class()  # say it before minutes of computing, not after
    import numpy as np
    import torch

    from ..engine.distributed import resolve_device
    from ..model import UniRepLKNet, reparameterize
    from .receptive_field import ERF_THRESHOLDS, erf

    device = resolve_device(args.device)
    checkpoints = [None if c.lower() == "none" else c for c in (args.checkpoint or ["none"] * len(args.model))]
    labels = args.labels or [_default_label(n, c) for n, c in zip(args.model, checkpoints)]
    rows: List[Dict[str, Any]] = []
    maps: Dict[str, Any] = {}
    for name, ckpt, label in zip(args.model, checkpoints, labels):
        torch.manual_seed(args.seed)
        model = build_model(name, ckpt, args.pretrained, args.in_chans or 3)
        if args.deploy and isinstance(model, UniRepLKNet):
            reparameterize(model)
        model.to(device)
        in_chans = _in_chans_of(model)
        if args.data == "embedded":
            images = embedded_images(args.images, args.input_size, in_chans)
        else:
            images = folder_images(args.data, args.images, args.input_size, model, args.sample)
        t0 = time.perf_counter()
        result = erf(model, images, args.stage, batch_size=args.batch_size, contribution=args.contribution,
                     ratio_on=args.ratio_on, grad_checkpointing=True if args.grad_checkpointing else None,
                     progress=not args.no_progress, description=label)
        seconds = time.perf_counter() - t0
        weights = weights_description(ckpt, args.pretrained, args.seed)
        row = dict(model=name, label=label, weights=weights, checkpoint=ckpt, seconds=seconds, **result.to_dict())
        rows.append(row)
        maps[label] = result.scores.astype(np.float32)
        _logger.info("%s: %d images in %.1f s", label, result.images, seconds)
        del model
    settings = dict(data=args.data, images=args.images, sample=args.sample, stage=args.stage,
                    input_size=args.input_size, contribution=args.contribution, ratio_on=args.ratio_on,
                    thresholds=list(ERF_THRESHOLDS), pretrained=args.pretrained, deploy=args.deploy,
                    device=str(device), seed=args.seed, torch=torch.__version__)
    print(format_table(rows))
    untrained = [r["label"] for r in rows if r["checkpoint"] is None and not args.pretrained]
    if untrained:
        print(f"random weights (untrained, seed {args.seed}): {', '.join(untrained)} -- the map shows the "
              "initialisation, not a trained network; give --checkpoint (or --pretrained) to measure one")
    written = _write_tables(rows, settings, output)
    npz = output.with_suffix(".npz")

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would append .npz to a bare temporary name
            np.savez_compressed(f, labels=np.array(list(maps)),
                                **{f"map_{i}": m for i, m in enumerate(maps.values())})

    _atomic_write(npz, write_npz)
    written.append(npz)
    if draw:
        from .receptive_field import log_scale

        titles = [f"{r['label']}\n{r['weights']}\nr(50%)={_ratio(r['area_ratio']['0.5'], 3)}  "
                  f"r(99%)={_ratio(r['area_ratio']['0.99'], 3)}" for r in rows]
        source = "held-out embedded digits" if args.data == "embedded" else f"image(s) of {args.data}"
        caption = (f"ERF at stage {args.stage}, mean over {rows[0]['images']} {source} at "
                   f"{args.input_size}x{args.input_size} ({args.contribution})")
        plot_erf([log_scale(m) for m in maps.values()], titles, output, caption)
        written.insert(0, output)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m unireplknet.analysis.erf_cli`` (the same as ``unireplknet erf``)."""
    parser = argparse.ArgumentParser(prog="unireplknet")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_parser(sub)
    args = parser.parse_args(["erf", *(sys.argv[1:] if argv is None else argv)])
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("unireplknet").setLevel(level)
    args.no_progress = args.no_progress or args.quiet
    for noisy in ("timm", "PIL", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ..checkpoint import CheckpointError
    from ..data.folder import DataError

    from ..engine.flags import set_torch_threads

    try:
        set_torch_threads(args.threads)
        return args.func(args)
    except (CheckpointError, DataError, FileNotFoundError, ImportError, ValueError) as e:
        print(f"unireplknet erf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line of dense prediction: ``det-train``, ``det-eval``, ``seg-train``, ``seg-eval``, ``dense-scenes``.

Registered in ``unireplknet``'s parser by :func:`add_subcommands`. Under ``torchrun`` the training commands run
one process per GPU (or CPU worker)::

    torchrun --nproc_per_node 8 -m unireplknet.cli det-train --data /data/coco --model unireplknet_t \\
        --checkpoint unireplknet_t_in1k_224_acc83.21.pth
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

from ...engine.flags import (add_common_arguments, add_overwrite_argument, add_engine_arguments, engine_options, json_dict_arg as _json_arg,
                          set_torch_threads)

__all__ = ["add_subcommands"]

def _int_tuple(text: str):
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _float_pair(text: str):
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}") from err
    return (a, b)


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _add_common_train_args(p: argparse.ArgumentParser, task: str) -> None:
    data_help = ("'scenes' (default: the generated scene set, written under OUTPUT/scenes) or a data root in the "
                 + ("COCO layout: annotations/instances_{train,val}[2017].json + {train,val}[2017]/"
                    if task == "detection" else
                    "ADE20K layout: images/{training,validation}/ + annotations/{training,validation}/ (PNG labels)"))
    g = p.add_argument_group("data and head")
    g.add_argument("--data", default="scenes", help=data_help)
    g.add_argument("--num-classes", type=int, default=None, help="default: from the data")
    g.add_argument("--head-kwargs", type=_json_arg, default=None, help="head options (JSON), e.g. "
                   "'{\"fpn_channels\": 256}' or '{\"channels\": 512}'")
    g.add_argument("--num-layers", type=int, default=None, help="layer-decay depth (12)")
    g.add_argument("--decay-type", default=None, choices=("layer_wise", "stage_wise"),
                   help="layer decay per block (layer_wise) or per stage (stage_wise)")
    g.add_argument("--warmup-iters", dest="warmup_steps", type=int, default=None,
                   help=f"linear warmup steps ({500 if task == 'detection' else 1500}; scenes 20)")
    g.add_argument("--warmup-ratio", type=float, default=None,
                   help=f"warmup start as a share of the lr ({'1e-3' if task == 'detection' else '1e-6'})")
    g.add_argument("--eval-at-start", action="store_true", default=None,
                   help="also score the untrained model (a baseline)")
    g.add_argument("--scenes-train", type=int, default=None,
                   help=f"generated training scenes (--data scenes; default {640 if task == 'detection' else 1600})")
    g.add_argument("--scenes-val", type=int, default=None, help="generated held-out scenes (--data scenes; 100)")
    g.add_argument("--scenes-style", dest="scene_style", default=None, choices=("flat", "textured"),
                   help="generated scenes: shapes in flat saturated colours (flat, the demo; a colour threshold "
                        "finds them) or filled with background-like textures (textured; only outlines tell them "
                        "apart) [default: flat]")
    add_engine_arguments(p, dict(
        min_lr="unused: a step or poly schedule", 
        model="unireplknet_t; a tiny custom network for --data scenes. A timm model here (e.g. convnext_atto, "
              "resnet18) is built with features_only=True and its last four feature levels (strides doubling, "
              "e.g. 4-32) feed the same neck and heads",
        drop_path=f"{'0.3' if task == 'detection' else '0.2'}; scenes 0",
        epochs=f"{36 if task == 'detection' else 128}; scenes 10", batch_size="2; scenes 4",
        lr="AdamW, 1e-4; scenes 2e-3", layer_decay=f"{'0.8' if task == 'detection' else '1.0'}; scenes and timm backbones 1.0",
        workers="0", output=f"runs/{'det' if task == 'detection' else 'seg'}"))


def _config(args: argparse.Namespace, task: str):
    from .task import DenseTrainConfig

    opts: Dict[str, Any] = engine_options(args, task=task, **{k: getattr(args, k, None) for k in (
        "data", "num_classes", "head_kwargs", "num_layers", "decay_type", "warmup_steps", "warmup_ratio",
        "eval_at_start", "scenes_train", "scenes_val", "scene_style", "detector", "min_size", "max_size", "crop_size",
        "scale_range", "short_side")})
    opts.setdefault("output", f"runs/{'det' if task == 'detection' else 'seg'}")
    if args.model_kwargs is not None:
        opts.setdefault("model", "custom")
    elif opts.get("model_kwargs") == {}:
        opts.pop("model_kwargs")  # the recipe fills the scene network only for an unset model
    steps = getattr(args, "step_epochs", None)
    if steps:
        opts["decay_epochs"] = steps
    return DenseTrainConfig.with_recipe(**opts)


def _print_summary(summary: Dict[str, Any]) -> None:
    key = summary["key_metric"]
    final = summary.get("final") or {}
    lines = [f"unireplknet {summary['task']}: {summary['epochs']} epochs in {summary['wall_s']:.0f} s "
             f"on {summary['world_size']} process(es)"]
    # A detector with masks (Mask R-CNN, Cascade Mask R-CNN) is scored on its masks as well as its boxes.
    keys = [key] + [k for k in ("mask_AP",) if k != key and (f"val_{k}" in final or k in (summary.get("deploy") or {}))]

    def scores(m: Dict[str, Any], prefix: str = "") -> str:
        return "  ".join(f"{k} {m[prefix + k]:.2f}" for k in keys if prefix + k in m)

    if summary.get("untrained"):
        lines.append(f"  untrained model       {scores(summary['untrained'])}")
    if f"val_{key}" in final:
        lines.append(f"  after training        {scores(final, 'val_')}")
    if summary.get("deploy"):
        lines.append(f"  re-parameterized      {scores(summary['deploy'])}")
    for k in ("checkpoint", "deploy_file", "onnx_file"):
        if summary.get(k):
            lines.append(f"  {summary[k]}")
    if summary.get("onnx_max_diff") is not None:
        lines.append(f"  ONNX vs PyTorch max |difference|: {summary['onnx_max_diff']:.2e}")
    if summary.get("onnx_skipped"):
        lines.append(f"  ONNX export skipped: {summary['onnx_skipped']}")
    print("\n".join(lines))


def cmd_train(args: argparse.Namespace, task: str) -> int:
    from .task import dense_summary, train_dense

    set_torch_threads(args.threads)
    cfg = _config(args, task)
    if _is_main():
        print(f"unireplknet {task}: data {cfg.data} -> {cfg.output}", file=sys.stderr)
    summary = dense_summary(train_dense(cfg))
    if _is_main():
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            _print_summary(summary)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .task import evaluate_dense

    metrics = evaluate_dense(args.checkpoint, args.data, args.device, args.batch_size)
    if _is_main():
        if args.json:
            print(json.dumps(metrics, indent=2))
        else:
            for k, v in metrics.items():
                print(f"{k:>14}  {v:.3f}" if isinstance(v, float) else f"{k:>14}  {v}")
    return 0


def cmd_scenes(args: argparse.Namespace) -> int:
    from ...checkpoint import check_destination_folder
    from ...data import scenes

    check_destination_folder(args.output, args.overwrite)  # another data set there is not replaced silently
    for split, n in (("train", args.num_train), ("val", args.num_val)):
        if args.layout == "coco":
            path = scenes.write_coco(args.output, split, n, seed=args.seed, size=args.size, style=args.style)
        else:
            path = scenes.write_ade20k(args.output, split, n, seed=args.seed, size=args.size, style=args.style)
        print(f"{split}: {n} scenes -> {path}")
    return 0


def add_subcommands(sub: Any) -> None:
    """Add ``det-train``, ``det-eval``, ``seg-train``, ``seg-eval`` and ``dense-scenes`` to a subparsers object."""
    p = sub.add_parser("det-train", help="train a detector (Mask/Faster R-CNN, RetinaNet, FCOS) with COCO mAP; torchrun-ready",
                       description="Train a torchvision detector on a UniRepLKNet backbone with the official COCO "
                                   "recipe's optimizer; ends with re-parameterization (score checked) and ONNX export.")
    _add_common_train_args(p, "detection")
    p.add_argument("--detector", default="maskrcnn", choices=("maskrcnn", "fasterrcnn", "retinanet", "fcos",
                                                                 "cascade_mask_rcnn"),
                   help="detector on the UniRepLKNet FPN: torchvision's, or the paper's cascade_mask_rcnn (maskrcnn)")
    p.add_argument("--min-size", type=int, default=None, help="resize the shorter image side to this (800)")
    p.add_argument("--max-size", type=int, default=None, help="cap on the longer side (1333)")
    p.add_argument("--step-epochs", type=_int_tuple, default=None, help="lr x0.1 after these epochs (27,33)")
    p.set_defaults(func=lambda a: cmd_train(a, "detection"))

    p = sub.add_parser("seg-train", help="train UperNet (+FCN aux head) semantic segmentation with mIoU; torchrun-ready",
                       description="Train the official UperNet segmenter on ADE20K-layout data (or the generated "
                                   "scenes); ends with re-parameterization (score checked) and ONNX export.")
    _add_common_train_args(p, "segmentation")
    p.add_argument("--crop-size", type=int, default=None, help="training crop (512)")
    p.add_argument("--short-side", type=int, default=None, help="resize shorter side to this first (512)")
    p.add_argument("--scale-range", type=_float_pair, default=None, help="random rescale range (0.5,2.0)")
    p.set_defaults(func=lambda a: cmd_train(a, "segmentation"))

    for name, what in (("det-eval", "COCO box/mask AP"), ("seg-eval", "mIoU / mAcc / aAcc")):
        p = sub.add_parser(name, help=f"{what} of a det-train/seg-train checkpoint on the held-out split")
        p.add_argument("checkpoint", help="last.pth, best.pth or deploy.safetensors of a run")
        p.add_argument("--data", default=None, help="data root (default: the run's own data)")
        p.add_argument("--batch-size", type=int, default=8, help="images per batch (8)")
        add_common_arguments(p, device=True, json=True)
        p.set_defaults(func=cmd_eval)

    p = sub.add_parser("dense-scenes", help="write the generated scene set in the COCO or ADE20K layout")
    p.add_argument("output", help="destination folder")
    p.add_argument("--layout", default="coco", choices=("coco", "ade20k"), help="annotation layout (coco)")
    p.add_argument("--num-train", type=int, default=400, help="training scenes (400)")
    p.add_argument("--num-val", type=int, default=100, help="held-out scenes (100)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--style", default="flat", choices=("flat", "textured"),
                   help="shapes in flat saturated colours or in background-like textures (flat)")
    add_overwrite_argument(p, "the files of a folder that is not empty")
    add_common_arguments(p)
    p.set_defaults(func=cmd_scenes)

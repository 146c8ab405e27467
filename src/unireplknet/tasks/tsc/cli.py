"""``unireplknet tsc-train | tsc-eval | tsc-predict`` (registered by :mod:`unireplknet.cli`); docs/tsc.md.

A thin layer over :mod:`unireplknet.tasks.tsc.task`; nothing heavy is imported at module level.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List

from ...engine.flags import add_common_arguments, add_engine_arguments, engine_options, format_metrics
from ...guards import positive_int

__all__ = ["add_subcommands"]


def cmd_tsc_train(args: argparse.Namespace) -> int:
    from .task import TscConfig, train_tsc

    options = engine_options(args, data=args.data, problem=args.problem, val_split=args.val_split,
                             mapping=args.mapping, length=args.length, height=args.height, gaf_size=args.gaf_size,
                             level_plane=args.level_plane, downsample_norm=args.downsample_norm,
                             train_steps=args.train_steps)
    cfg = TscConfig.with_recipe(**options)
    print(f"unireplknet tsc-train: {cfg.model} on {cfg.data}{' / ' + cfg.problem if cfg.problem else ''} "
          f"({cfg.mapping} images), {cfg.epochs or f'about {cfg.train_steps} steps of'} epochs -> {cfg.output}",
          file=sys.stderr)
    r = train_tsc(cfg)  # the engine logs each epoch once
    if args.json:
        x = r.extras
        print(json.dumps(dict(problem=x["problem"], classes=r.class_names, best_epoch=r.best_epoch, val=x["val"],
                              test=x["test"], test_acc=x["test"]["acc"] if x["test"] else None, series=x["series"],
                              checkpoint=str(r.checkpoint) if r.checkpoint else None,
                              best_checkpoint=str(r.best_checkpoint) if r.best_checkpoint else None,
                              deploy_file=str(r.deploy_file) if r.deploy_file else None,
                              onnx_file=str(r.onnx_file) if r.onnx_file else None, wall_s=r.wall_s), indent=2))
        return 0
    lines = [f"time-series classification — {r.extras['problem']}: {len(r.class_names)} classes "
             f"(chance {100.0 / len(r.class_names):.1f}%)",
             f"best epoch {r.best_epoch} of {r.extras['epochs']} on the validation split of TRAIN, {r.wall_s:.0f} s",
             f"validation accuracy: {r.extras['val']['acc']:.2f}% on {r.extras['val']['series']} series"]
    test = r.extras["test"]
    if test is not None:
        lines.append(f"test accuracy: {test['acc']:.2f}% on {test['series']} series (archive TEST split)")
    lines.extend(r.file_lines())
    print("\n".join(lines))
    return 0


def cmd_tsc_eval(args: argparse.Namespace) -> int:
    import torch

    from ...data.timeseries.archive import load_problem
    from ...engine.distributed import resolve_device
    from .task import load_tsc_model, score, series_images

    device = resolve_device(args.device)
    model, series_cfg, names = load_tsc_model(args.checkpoint, device)
    problem = load_problem(args.data, args.problem)
    if problem.class_names != names:
        raise ValueError(f"the problem's classes {problem.class_names[:8]} differ from the checkpoint's {names[:8]}; "
                         "evaluate on the problem the model was trained on")
    split = problem.test if args.split == "test" else problem.train
    if not split.has_labels:
        raise ValueError(f"{split.path} carries no labels: use tsc-predict")
    _, metrics = score(model, series_images(split, series_cfg), torch.from_numpy(problem.targets(split)), device,
                       args.batch_size)
    metrics = dict(metrics, problem=problem.name, split=args.split)
    print(json.dumps(metrics) if args.json else f"{problem.name} {args.split}: {format_metrics(metrics)}")
    return 0


def cmd_tsc_predict(args: argparse.Namespace) -> int:
    import torch

    from ...data.timeseries.archive import read_split
    from ...engine.distributed import resolve_device
    from .task import load_tsc_model, score, series_images

    device = resolve_device(args.device)
    model, series_cfg, names = load_tsc_model(args.checkpoint, device)
    results: List[Dict[str, Any]] = []
    for path in args.files:
        split = read_split(path)
        if split.channels != series_cfg.channels:
            raise ValueError(f"{path}: {split.channels} channel(s) per series, the model was trained on "
                             f"{series_cfg.channels}")
        logits, _ = score(model, series_images(split, series_cfg), None, device, args.batch_size)
        probs = torch.softmax(logits, 1)
        top = torch.topk(probs, min(args.top_k, len(names)), dim=1)
        for i, (values, indices) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            row: Dict[str, Any] = dict(file=str(path), series=i + 1,
                                       top=[dict(label=names[j], score=float(p)) for p, j in zip(values, indices)])
            if split.labels[i] is not None:
                row["label"] = split.labels[i]
            results.append(row)
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            truth = f" (labelled {r['label']})" if "label" in r else ""
            print(f"{r['file']} #{r['series']}: " + ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["top"])
                  + truth)
    return 0


def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    """Add ``tsc-train``, ``tsc-eval`` and ``tsc-predict`` to the main parser."""
    p = sub.add_parser("tsc-train", help="time-series classification on a UCR/UEA archive problem (.ts/.tsv)",
                       description="Train an image network on series drawn as images. Choices are made on a "
                                   "validation split held out of TRAIN; TEST is scored once, after training.")
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="a problem folder (<Name>_TRAIN.ts and <Name>_TEST.ts, or .tsv), "
                   "or an archive root (Univariate_ts/, Multivariate_ts/) with --problem")
    g.add_argument("--problem", default=None, help="the problem's name under an archive root, or in a folder that "
                   "holds several")
    g.add_argument("--val-split", type=float, default=None,
                   help="share of each class of TRAIN held out for validation, drawn with --seed [default: 0.2]")
    g = p.add_argument_group("series to image")
    g.add_argument("--mapping", default=None, choices=("rows", "gaf"),
                   help="rows: one row per channel, time as the width; gaf: Gramian angular field per channel "
                        "[default: rows]")
    g.add_argument("--length", type=int, default=None, help="time steps after resampling (rows: width) [default: 256]")
    g.add_argument("--height", type=int, default=None, help="rows: least image height [default: 32]")
    g.add_argument("--gaf-size", type=int, default=None, help="gaf: image side [default: 64]")
    g.add_argument("--level-plane", action=argparse.BooleanOptionalAction, default=None,
                   help="rows: add a constant image channel so the stem's LayerNorm cannot divide out the series' "
                        "local level (docs/tsc.md) [default: on]")
    g.add_argument("--train-steps", type=positive_int, default=None,
                   help="the training budget when --epochs is not given: epochs of about this many optimizer steps, "
                        "at most 100 [default: 300]")
    g.add_argument("--downsample-norm", default=None, choices=("batchnorm", "layernorm"),
                   help="the norm of UniRepLKNet's stem and down-sampling layers: batchnorm keeps each pixel's level "
                        "(the series' value), the official layernorm divides it out; --pretrained official weights "
                        "need layernorm (docs/tsc.md) [default: batchnorm]")
    add_engine_arguments(p, dict(model="custom: a small UniRepLKNet (dims 16-32-64-128)", drop_path="0",
                                 epochs="as many as make --train-steps steps, at most 100", batch_size="16", lr="2e-3", warmup_epochs="5", workers="0",
                                 output="runs/tsc"))
    p.set_defaults(func=cmd_tsc_train)

    p = sub.add_parser("tsc-eval", help="accuracy of a tsc-train checkpoint on a problem's TEST (or TRAIN) split")
    p.add_argument("checkpoint", help="best.pth or last.pth of a tsc-train run")
    p.add_argument("--data", required=True, help="as for tsc-train")
    p.add_argument("--problem", default=None, help="as for tsc-train")
    p.add_argument("--eval-split", "--split", dest="split", default="test", choices=("train", "test"),
                   help="which split to score [default: test]")
    p.add_argument("--batch-size", type=int, default=64, help="series per batch [default: 64]")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_tsc_eval)

    p = sub.add_parser("tsc-predict", help="top-k classes of every series in .ts/.tsv files")
    p.add_argument("checkpoint", help="best.pth of a tsc-train run")
    p.add_argument("files", nargs="+", help=".ts (labels optional: @classLabel false) or .tsv files")
    p.add_argument("--top-k", type=int, default=3, help="classes per series [default: 3]")
    p.add_argument("--batch-size", type=int, default=64, help="series per batch [default: 64]")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_tsc_predict)

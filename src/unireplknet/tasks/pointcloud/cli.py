"""``unireplknet points-train | points-eval | points-project`` (registered by :mod:`unireplknet.cli`).

Thin layers over :mod:`unireplknet.tasks.pointcloud`, :mod:`unireplknet.modalities.pointcloud` and
:mod:`unireplknet.data.pointcloud`.
``unireplknet points-train`` with no arguments trains the small model on the generated shapes;
``unireplknet points-train --data modelnet40_normal_resampled --recipe modelnet40`` runs the official
ModelNet-40 recipe (see docs/pointcloud.md).
"""
from __future__ import annotations

import argparse
import json
import sys

from ...engine.flags import (RATE, add_common_arguments, add_overwrite_argument, add_engine_arguments, add_eval_loader_arguments, engine_options,
                          set_torch_threads)

__all__ = ["add_subcommands", "projection_picture"]


def cmd_points_train(args: argparse.Namespace) -> int:
    from .task import PointCloudTrainConfig, train_pointcloud

    set_torch_threads(args.threads)
    options = engine_options(
        args, data=args.data, num_points=args.num_points, use_normals=args.use_normals,
        projection=args.projection, num_views=args.num_views, image_size=args.image_size,
        shapes_per_class=args.shapes_per_class, smoothing=args.smoothing, test_rotations=args.test_rotations,
        skip_unreadable=args.skip_unreadable, generated=args.generated, held_out=args.held_out, align=args.align)
    cfg = PointCloudTrainConfig.with_recipe(args.recipe, **options)
    what = f"the generated {cfg.generated} ({cfg.held_out} split)" if cfg.data is None else cfg.data
    print(f"unireplknet points-train: {cfg.model}, {cfg.projection} projection, {cfg.num_views} views of "
          f"{cfg.image_size}px, {cfg.num_points} points, on {what}, {cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    r = train_pointcloud(cfg)
    f, checkpoint = r.train_structure, str(r.checkpoint) if cfg.output else None
    if args.json:
        print(json.dumps(dict(data=str(what), classes=r.class_names, test_rotations=cfg.test_rotations, final=f,
                              history=r.history, checkpoint=checkpoint, wall_s=r.wall_s), indent=2))
        return 0
    print(f"point-cloud classification — {what}: {len(r.class_names)} classes (chance {100 / len(r.class_names):.1f}%), "
          f"{r.wall_s:.0f} s")
    print(f"held-out OA over all {cfg.test_rotations} test rotations (official, val_top1): {f['top1']:.2f}%; "
          f"rotation-voted (val_voted_top1): {f['voted_top1']:.2f}% on {f['samples']} shapes")
    print(f"checkpoint: {checkpoint}")
    return 0


def cmd_points_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from ...data.pointcloud.modelnet import ModelNet40
    from ...modalities.pointcloud import eval_rotations
    from ...engine.task import collate_samples
    from ..views import evaluate_views
    from .task import load_pointcloud_classifier, pointcloud_metrics

    from ...engine.distributed import resolve_device

    device = resolve_device(args.device)
    model, mc = load_pointcloud_classifier(args.checkpoint)
    model.to(device)
    if args.data is None:
        from .task import generated_dataset_class

        generated = generated_dataset_class(mc.get("generated", "shapes"))  # older checkpoints: the shapes
        ds = generated(args.held_out, args.shapes_per_class, mc["num_points"], args.seed)
    else:
        ds = ModelNet40(args.data, "test", mc["num_points"], on_error="skip" if args.skip_unreadable else "raise",
                        classes=mc["classes"])
    if list(ds.classes) != list(mc["classes"]):
        raise ValueError(f"the data's classes {list(ds.classes)[:5]}… differ from the checkpoint's {mc['classes'][:5]}…")
    rotations = eval_rotations()[: args.test_rotations]
    loader = DataLoader(ds, batch_size=args.batch_size, collate_fn=collate_samples, num_workers=args.workers)
    m = pointcloud_metrics(evaluate_views(model, loader, device,
                                          lambda mod, x: mod.forward_views(x, rotations.to(x.device))))
    print(json.dumps(m) if args.json else
          f"OA over all {len(rotations)} rotations (top1) {m['top1']:.2f}%, rotation-voted (voted_top1) "
          f"{m['voted_top1']:.2f}% on {m['samples']} shapes")
    return 0


def projection_picture(points, num_views: int = 4, image_size: int = 96, scale: int = 1):
    """A PIL image: the fixed depth projection of each cloud (rows) from ``num_views`` views (columns)."""
    import numpy as np
    import torch
    from PIL import Image

    from ...modalities.pointcloud import DepthProjection

    pts = torch.as_tensor(points, dtype=torch.float32)
    pts = pts[None] if pts.dim() == 2 else pts
    img = DepthProjection(num_views, image_size)(pts[..., :3])  # B·V 3 S S in [-1, 1]
    img = ((img + 1) / 2).clamp(0, 1).mul(255).round().byte()
    b = pts.shape[0]
    grid = img.view(b, num_views, 3, image_size, image_size).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(b * image_size, num_views * image_size, 3).numpy()
    pic = Image.fromarray(np.ascontiguousarray(grid))
    return pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST) if scale > 1 else pic


def cmd_points_project(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from .._pictures import label_picture, save_picture
    from ...checkpoint import check_destination

    check_destination(args.output, args.overwrite)  # before any work: the one write policy
    from ...data.pointcloud.modelnet import read_off, read_points
    from ...modalities.pointcloud import farthest_point_sample, gather_points, normalize_unit_sphere

    clouds, names = [], []
    if args.files:
        import numpy as np

        from ...data.pointcloud.shapes import sample_surface

        for f in args.files:
            if f.lower().endswith(".off"):
                v, fc = read_off(f)
                pts = torch.from_numpy(sample_surface(v, fc, 8192, np.random.default_rng(0))).float()
            else:
                pts = torch.from_numpy(read_points(f))[:, :3]
            pts = gather_points(pts, farthest_point_sample(pts, min(args.num_points, len(pts))))
            clouds.append(normalize_unit_sphere(pts))
            names.append(Path(f).name)
    else:
        from ...data.pointcloud import GeneratedShapes

        ds = GeneratedShapes("val", 1, args.num_points)
        for i in range(len(ds)):
            points, label = ds[i]
            clouds.append(points)
            names.append(ds.classes[label])
    n = min(len(c) for c in clouds)
    pic = projection_picture(torch.stack([c[:n] for c in clouds]), args.num_views, args.image_size)
    # each row named by its file or class, each column by its view (numbered: a 24-pixel view fits no word)
    pic, _ = label_picture(pic, "views; R occupancy, G mean depth, B front depth", names,
                           [str(v + 1) for v in range(args.num_views)])
    save_picture(pic, args.output, args.overwrite)
    print(f"{args.output}: {len(clouds)} clouds x {args.num_views} views of {args.image_size}px (occupancy, mean "
          f"depth, front depth as R, G, B), labelled")
    return 0


def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    """Add ``points-train``, ``points-eval`` and ``points-project`` to the main parser."""
    p = sub.add_parser("points-train", help="point-cloud classification: multi-view projection -> UniRepLKNet -> "
                       "view-pooling head (default: generated shapes; ModelNet-40 layouts)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="ModelNet-40 root (modelnet40_normal_resampled or the .off release)")
    g.add_argument("--num-points", type=int, default=None, help="points per cloud after FPS (1024; modelnet40 4096)")
    g.add_argument("--use-normals", action="store_true", default=None, help="keep normals (rotated with the points; not projected)")
    g.add_argument("--shapes-per-class", type=int, default=None,
                   help="generated set: training shapes per class (shapes 32, scans 24; held out: a quarter)")
    g.add_argument("--generated", default=None, choices=("shapes", "scans"),
                   help="generated set without --data: shapes = 8 full-surface primitives (default); scans = the "
                        "hard demo, 16 classes of partial, noisy, non-uniform scans, held-out proportions disjoint")
    g.add_argument("--eval-split", dest="held_out", default=None, choices=("val", "test"),
                   help="generated set: the split evaluated (val, to choose settings; test, the reported number; "
                        "default: val for shapes, test for --recipe scans)")
    g.add_argument("--skip-unreadable", action="store_true", default=None, help="replace unreadable/degenerate files (logged)")
    g = p.add_argument_group("model and recipe")
    g.add_argument("--recipe", "--preset", dest="recipe", default=None, choices=("demo", "scans", "modelnet40"),
                   help="defaults: demo = light settings of the generated shapes (default without --data); "
                        "scans = the hard partial-scan demo (default with --generated scans); "
                        "modelnet40 = the official recipe (default with --data)")
    g.add_argument("--projection", default=None, choices=("depth", "learned"),
                   help="depth = fixed differentiable rendering; learned = the official point-to-pixel encoder")
    g.add_argument("--align", default=None, choices=("none", "pca"),
                   help="none = project the cloud as given (official); pca = in its principal-axes frame first, "
                        "so the views do not depend on its pose (no ONNX export: skipped with a warning)")
    g.add_argument("--num-views", type=int, default=None, help="4 (official)")
    g.add_argument("--image-size", type=int, default=None, help="view side in pixels (32; modelnet40 224)")
    g.add_argument("--smoothing", type=RATE, default=None, help="official 0.2 (eps/(K-1) off target)")
    g.add_argument("--test-rotations", type=int, default=None, help="how many of the 8 official test rotations")
    add_engine_arguments(p, dict(
        model="official = the S backbone of the paper; demo: a small custom net", drop_path="demo 0; modelnet40 0.4",
        epochs="demo 12; scans 24; modelnet40 300", batch_size="16", lr="demo 4e-3; modelnet40 5e-4",
        warmup_epochs="demo 1; modelnet40 0", workers="demo 0; modelnet40 4", output="runs/pointcloud"))
    p.set_defaults(func=cmd_points_train)

    p = sub.add_parser("points-eval", help="the 8-rotation test of a points-train checkpoint")
    p.add_argument("checkpoint", help="last.pth of points-train")
    p.add_argument("--data", default=None, help="ModelNet-40 root (default: the generated held-out shapes)")
    p.add_argument("--shapes-per-class", type=int, default=8, help="generated set: held-out shapes per class (8)")
    p.add_argument("--eval-split", dest="held_out", default="val", choices=("val", "test"),
                   help="generated set: the split (val)")
    p.add_argument("--seed", type=int, default=0, help="generated set: the data seed of the training run (0)")
    p.add_argument("--test-rotations", type=int, default=8, help="how many of the 8 official test rotations (8)")
    add_eval_loader_arguments(p, batch_size=16)
    p.set_defaults(func=cmd_points_eval)

    p = sub.add_parser("points-project", help="save the fixed depth projections of clouds (PNG)")
    p.add_argument("files", nargs="*", help=".off / .txt / .npy files (default: one generated shape per class)")
    p.add_argument("--output", "-o", default="projection.png", help="destination PNG (projection.png)")
    add_overwrite_argument(p, "the destination PNG")
    p.add_argument("--num-points", type=int, default=2048, help="points sampled from a mesh (2048)")
    p.add_argument("--num-views", type=int, default=4, help="views per cloud (4)")
    p.add_argument("--image-size", type=int, default=64, help="view side in pixels (64)")
    add_common_arguments(p)
    p.set_defaults(func=cmd_points_project)

"""``unireplknet video-train | video-eval | video-mosaic`` (registered by :mod:`unireplknet.cli`).

Thin layers over :mod:`unireplknet.tasks.video`, :mod:`unireplknet.modalities.video` and :mod:`unireplknet.data.video`.
``unireplknet video-train`` with no arguments trains the small model on the generated motion clips;
``unireplknet video-train --data k400/train.csv --data-root k400/videos --val-data k400/val.csv --recipe kinetics``
runs the official Kinetics-400 recipe (see docs/video.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from ...engine.flags import (NON_NEGATIVE, PROBABILITY, RATE, SHARE, add_common_arguments, add_overwrite_argument, add_engine_arguments, add_eval_loader_arguments, engine_options,
                          set_torch_threads)

__all__ = ["add_subcommands", "clip_picture"]


def cmd_video_train(args: argparse.Namespace) -> int:
    from .task import VideoTrainConfig, motion_set_name, train_video

    set_torch_threads(args.threads)
    options = engine_options(
        args, data=args.data, val_data=args.val_data, data_root=args.data_root, val_split=args.val_split,
        num_frames=args.num_frames, sampling_rate=args.sampling_rate, input_size=args.input_size, layout=args.layout,
        clips_per_class=args.clips_per_class, difficulty=args.difficulty, eval_split=args.eval_split,
        smoothing=args.smoothing,
        mixup=args.mixup, cutmix=args.cutmix, auto_augment=args.aa, hflip=args.hflip, reprob=args.reprob,
        test_clips=args.test_clips, test_crops=args.test_crops, skip_unreadable=args.skip_unreadable)
    cfg = VideoTrainConfig.with_recipe(args.recipe, **options)
    what = motion_set_name(cfg) if cfg.data is None else cfg.data
    print(f"unireplknet video-train: {cfg.model} ({cfg.layout} layout, {cfg.num_frames} frames of "
          f"{cfg.input_size}px) on {what}, {cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    r = train_video(cfg)
    f, checkpoint = r.train_structure, str(r.checkpoint) if cfg.output else None
    views = cfg.test_clips * cfg.test_crops
    if args.json:
        print(json.dumps(dict(data=str(what), classes=r.class_names, chance=r.chance, views=views, final=f,
                              history=r.history, checkpoint=checkpoint, wall_s=r.wall_s), indent=2))
        return 0
    print(f"video classification — {what}: {len(r.class_names)} classes (chance {r.chance:.1f}%), {r.wall_s:.0f} s")
    print(f"held-out top-1 {f['top1']:.2f}% on {f['samples']} clips ({views} view(s) each, softmax averaged)"
          + (f"; {f['unreadable']} unreadable videos skipped" if f.get("unreadable") else ""))
    print(f"checkpoint: {checkpoint}")
    return 0


def cmd_video_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from ...data.video import VideoClipDataset, collate_clips, read_kinetics_csv, scan_video_folder
    from ...modalities.video import ClipEvalTransform
    from ...engine.task import collate_samples
    from ..views import evaluate_views
    from .task import load_video_classifier

    from ...engine.distributed import resolve_device

    device = resolve_device(args.device)
    model, mc = load_video_classifier(args.checkpoint)
    model.to(device)
    size = args.input_size or mc["input_size"]
    if args.data is None:
        from ...data.video import HARD_MOTION_CLASS_NAMES, MOTION_CLASS_NAMES, MotionClips

        known = {tuple(MOTION_CLASS_NAMES): "easy", tuple(HARD_MOTION_CLASS_NAMES): "hard"}
        if tuple(mc["classes"]) not in known:
            raise ValueError("this checkpoint was not trained on the motion clips; pass --data")
        tf = ClipEvalTransform(size, 1)
        ds = MotionClips(args.eval_split, args.clips_per_class, mc["num_frames"], size, transform=lambda c: tf(c),
                         difficulty=known[tuple(mc["classes"])])
        collate = collate_samples
    else:
        p = Path(args.data)
        classes, samples = (scan_video_folder(p, mc["classes"]) if p.is_dir()
                            else read_kinetics_csv(p, args.data_root, mc["classes"]))
        ds = VideoClipDataset(samples, classes, False, mc["num_frames"], args.sampling_rate, size,
                              test_clips=args.test_clips, test_crops=args.test_crops,
                              on_error="skip" if args.skip_unreadable else "raise")
        collate = collate_clips
    loader = DataLoader(ds, batch_size=args.batch_size, collate_fn=collate, num_workers=args.workers)
    m = evaluate_views(model, loader, device, lambda mod, x: mod.forward_views(x))
    print(json.dumps(m) if args.json else f"top-1 {m['top1']:.2f}% on {m['samples']} clips, loss {m['loss']:.4f}"
          + (f", single-view top-1 {m['view_top1']:.2f}%" if "view_top1" in m else ""))
    return 0


def clip_picture(frames, layout: str = "mosaic", scale: int = 1, grid: Optional[tuple] = None):
    """A PIL image of what the backbone sees for uint8 frames (T, H, W, 3) in ``layout`` (pixel values undone)."""
    import torch
    from PIL import Image

    from ...modalities.video import clip_to_image

    clip = torch.as_tensor(frames).permute(3, 0, 1, 2)  # C T H W
    img = clip_to_image(clip, layout, grid).permute(1, 2, 0).numpy()
    pic = Image.fromarray(img)
    return pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST) if scale > 1 else pic


def cmd_video_mosaic(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from .._pictures import label_picture, save_picture
    from ...checkpoint import check_destination

    check_destination(args.output, args.overwrite)  # before any work: the one write policy
    from ...data.video import eval_frame_indices, read_video

    if args.video:
        frames = read_video(args.video)
        idx = eval_frame_indices(len(frames), args.num_frames, args.sampling_rate, 0, 1)
        frames = frames[idx]
        title = Path(args.video).name
    else:
        from ...data.video import MotionClips

        clips = MotionClips("val", 1, args.num_frames, args.input_size)
        frames, _, label = clips.render(args.index)
        title = f"class: {clips.classes[label]}"
    pic = clip_picture(np.asarray(frames), args.layout, args.scale)
    size = f"{pic.width}x{pic.height}"
    rows = []
    if args.layout == "mosaic":  # whole frames, row-major: name each grid row by its frames (reshape mixes them)
        from ...modalities.video import mosaic_grid

        _, cols = mosaic_grid(len(frames), None)
        rows = [f"frames {r * cols + 1}-{min(len(frames), (r + 1) * cols)}" for r in range(-(-len(frames) // cols))]
    pic, _ = label_picture(pic, f"{title} ({args.layout})", rows)
    save_picture(pic, args.output, args.overwrite)
    print(f"{args.output}: {size} {args.layout} of {len(frames)} frames, labelled")
    return 0


def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    """Add ``video-train``, ``video-eval`` and ``video-mosaic`` to the main parser."""
    p = sub.add_parser("video-train", help="video classification: clips -> frame mosaic -> UniRepLKNet (default: "
                       "generated motion clips; a folder root/<class>/<video> or a Kinetics CSV/list)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="video folder (root/<class>/<file>) or Kinetics CSV / VideoMAE list")
    g.add_argument("--val-data", default=None, help="held-out folder or list (default: --val-split of --data)")
    g.add_argument("--data-root", default=None, help="where the files of a list live (default: next to the list)")
    g.add_argument("--val-split", type=SHARE, default=None, help="held-out share without --val-data (0.1)")
    g.add_argument("--num-frames", type=int, default=None, help="frames per clip, a square number (kinetics 16; demo 4)")
    g.add_argument("--sampling-rate", type=int, default=None, help="frame stride (4)")
    g.add_argument("--input-size", type=int, default=None, help="frame side (kinetics 224; demo 32)")
    g.add_argument("--layout", default=None, choices=("mosaic", "reshape"),
                   help="mosaic = the paper's frame grid (default); reshape = the official code's memory reshape")
    g.add_argument("--clips-per-class", type=int, default=None,
                   help="motion set: training clips per class (48; motion-hard 80); held out: a quarter of it")
    g.add_argument("--difficulty", default=None, choices=("easy", "hard"),
                   help="motion set: easy = one bright shape on a flat background; hard = textured moving "
                        "background, camera shake, distractors, unseen object shapes (easy; motion-hard: hard)")
    g.add_argument("--eval-split", default=None, choices=("val", "test"),
                   help="motion set: the held-out split scored (val; motion-hard: test). Choose settings on val")
    g.add_argument("--skip-unreadable", action="store_true", default=None, help="leave out videos that fail to decode")
    g = p.add_argument_group("model and recipe")
    g.add_argument("--recipe", "--preset", dest="recipe", default=None, choices=("demo", "motion-hard", "kinetics"),
                   help="defaults: demo = light settings of the motion set (default without --data); motion-hard = "
                        "the hard motion demo (hard clips, 80 per class, 32 epochs, lr 4e-3, test split); kinetics = "
                        "the official K400 recipe (default with --data)")
    g.add_argument("--smoothing", type=RATE, default=None, help="label smoothing (0.1)")
    g.add_argument("--mixup", type=NON_NEGATIVE, default=None, help="mixup alpha on the clip (demo 0; kinetics 0.8)")
    g.add_argument("--cutmix", type=NON_NEGATIVE, default=None, help="cutmix alpha on the clip, the same box in every frame (demo 0; kinetics 1.0)")
    g.add_argument("--aa", default=None, help="RandAugment string, the same ops on every frame ('' = off)")
    g.add_argument("--hflip", type=float, default=None, help="flip probability (0 for the motion set: it swaps labels)")
    g.add_argument("--reprob", type=PROBABILITY, default=None, help="random erasing probability (demo 0; kinetics 0.25)")
    g.add_argument("--test-clips", type=int, default=None, help="temporal test clips (kinetics: 5)")
    g.add_argument("--test-crops", type=int, default=None, help="spatial test crops (kinetics: 3)")
    add_engine_arguments(p, dict(
        model="official = the K400 network of the paper; demo: a small custom net", drop_path="demo 0; kinetics 0.4",
        epochs="demo 8; kinetics 90", batch_size="demo 16; kinetics 8", lr="demo 2e-3; kinetics 1e-3",
        warmup_epochs="demo 1; kinetics 5", layer_decay="kinetics 0.75", workers="demo 0; kinetics 4",
        output="runs/video"))
    p.set_defaults(func=cmd_video_train)

    p = sub.add_parser("video-eval", help="multi-clip, multi-crop top-1 of a video-train checkpoint")
    p.add_argument("checkpoint", help="last.pth of video-train")
    p.add_argument("--data", default=None, help="folder or Kinetics CSV/list (default: the motion set's held-out clips)")
    p.add_argument("--data-root", default=None, help="where the files of a list live (default: next to the list)")
    p.add_argument("--sampling-rate", type=int, default=4, help="frame stride (4)")
    p.add_argument("--input-size", type=int, default=None, help="default: the training frame size")
    p.add_argument("--test-clips", type=int, default=5, help="temporal test clips per video (5)")
    p.add_argument("--test-crops", type=int, default=3, help="spatial test crops per clip (3)")
    p.add_argument("--clips-per-class", type=int, default=12, help="motion set: held-out clips per class")
    p.add_argument("--eval-split", default="val", choices=("val", "test"), help="motion set: which held-out split (val)")
    add_eval_loader_arguments(p, batch_size=8)
    p.set_defaults(func=cmd_video_eval)

    p = sub.add_parser("video-mosaic", help="save the image the backbone sees for a clip (PNG)")
    p.add_argument("video", nargs="?", default=None, help="a video file (default: a generated motion clip)")
    p.add_argument("--output", "-o", default="mosaic.png", help="destination PNG (mosaic.png)")
    add_overwrite_argument(p, "the destination PNG")
    p.add_argument("--layout", default="mosaic", choices=("mosaic", "reshape"),
                   help="mosaic = the paper's frame grid; reshape = the official code's memory reshape (mosaic)")
    p.add_argument("--num-frames", type=int, default=16, help="frames in the picture, a square number (16)")
    p.add_argument("--sampling-rate", type=int, default=4, help="frame stride of a video file (4)")
    p.add_argument("--input-size", type=int, default=32, help="motion clip frame side")
    p.add_argument("--index", type=int, default=0, help="which motion clip")
    p.add_argument("--scale", type=int, default=1, help="enlarge the picture (nearest neighbour)")
    add_common_arguments(p)
    p.set_defaults(func=cmd_video_mosaic)

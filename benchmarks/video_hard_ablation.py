#!/usr/bin/env python3
"""Which part of the hard motion clips stops the small networks? (docs/video.md, "hard motion clips")

Trains the hard demo (``VideoTrainConfig.with_recipe("motion-hard")``: 80 clips per class, 32 epochs, lr 4e-3) on clips with one
part of the difficulty switched off, scored on the **validation** split (the test split stays untouched):

* ``still-camera``  — ``camera_scale=0``: no pan, no shake;
* ``plain``         — a still camera, a flat background (``texture_scale=0``) and no distractors: only the six
  motions of unseen object shapes remain;
* ``seen-shapes``, ``plain-seen-shapes`` — the full or the plain clips, with the training shapes in every split
  (validation clips are still new draws, but of the objects seen in training).

Run one ablation per process (``--threads 1`` each)::

    python benchmarks/video_hard_ablation.py still-camera --seed 0 --json benchmarks/results/video_hard_ablation_still-camera.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from unireplknet.data.video import HARD_MOTION_SHAPES

ABLATIONS = {"full": {}, "still-camera": dict(camera_scale=0.0),
             "plain": dict(camera_scale=0.0, texture_scale=0.0, distractors=False),
             "plain-seen-shapes": dict(camera_scale=0.0, texture_scale=0.0, distractors=False,
                                       shapes=list(HARD_MOTION_SHAPES["train"])),
             "seen-shapes": dict(shapes=list(HARD_MOTION_SHAPES["train"]))}


def main(argv) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ablation", choices=sorted(ABLATIONS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="a timm name for the peer (with --model-kwargs JSON)")
    p.add_argument("--model-kwargs", default=None)
    p.add_argument("--json", required=True, help="where the result goes")
    args = p.parse_args(argv)
    import torch

    from unireplknet.tasks.video.task import VideoTrainConfig, train_video

    torch.set_num_threads(1)
    extra = {}
    if args.model:
        extra = dict(model=args.model, model_kwargs=json.loads(args.model_kwargs or "{}"))
    cfg = VideoTrainConfig.with_recipe("motion-hard", eval_split="val", seed=args.seed, hard_options=ABLATIONS[args.ablation],
                                       output=None, export_onnx=False, progress=False, **extra)
    start = time.perf_counter()
    r = train_video(cfg)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = dict(ablation=args.ablation, hard_options=ABLATIONS[args.ablation], seed=args.seed, model=cfg.model,
               val_top1=r.train_structure["top1"], val_top1_per_epoch=[h["val_top1"] for h in r.history],
               train_loss_last=r.history[-1]["train_loss"], wall_s=round(time.perf_counter() - start, 1),
               cpu_s=round(usage.ru_utime + usage.ru_stime, 1), loadavg=open("/proc/loadavg").read().split()[0])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.json + ".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, args.json)
    print(f"{args.ablation}: val top-1 {out['val_top1']:.2f}% (last epoch), train loss {out['train_loss_last']:.3f}, "
          f"{out['cpu_s']:.0f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Make the ERF study of docs/erf.md: UniRepLKNet-A/T vs ConvNeXt-T vs ResNet-50, random and digits-trained.

    python scripts/make_erf_figures.py --out runs/erf_study            # the study (both figures + tables)
    python scripts/make_erf_figures.py --out runs/erf_study --reuse --contribution relu   # RepLKNet's formula
    python scripts/make_erf_figures.py --out runs/erf_study --memory    # peak RSS of T at 1024x1024, batch 1

Every model is built with one input channel and ten classes. "Random" is timm's initialisation (seed 0);
"trained" is that model after ``--epochs`` of the training engine (:func:`unireplknet.tasks.image.train`, the loop of
``unireplknet train``: AdamW, warmup + cosine, label smoothing) on the embedded digits at
``--train-size`` pixels. The ERF is then measured by the ``unireplknet erf`` command itself on ``--images``
held-out digits at ``--erf-size`` pixels, and the figures are copied to docs/img/erf_{random,trained}.png.
These weights are not the papers' ImageNet weights: see docs/erf.md for the command that redraws the papers'
figure from the official checkpoints.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("unireplknet_a", "unireplknet_t", "convnext_tiny", "resnet50")
LABELS = ("UniRepLKNet-A", "UniRepLKNet-T", "ConvNeXt-T", "ResNet-50")
REPO = Path(__file__).resolve().parents[1]


def train_models(out: Path, epochs: int, size: int, lr: float) -> list:
    """Train each model briefly on the digits with the training engine (``unireplknet train``'s loop); save the
    weights as safetensors; return (paths, accuracies)."""
    from safetensors.torch import save_file

    from unireplknet.engine import load_training_checkpoint
    from unireplknet.tasks.image import TrainConfig, train

    results = []
    for name in MODELS:
        # AdamW, warmup + cosine, label smoothing 0.1; no mixup or image augmentation (8x8 digits, one epoch).
        cfg = TrainConfig.for_data(
            model=name, model_kwargs={}, input_size=size, epochs=epochs, batch_size=32, lr=lr,
            warmup_epochs=min(0.5, epochs / 4), drop_path=0.0, mixup=0.0, cutmix=0.0, auto_augment="", reprob=0.0,
            hflip=0.0, color_jitter=0.0, smoothing=0.1, seed=0, device="cpu", workers=0,
            output=str(out / f"train_{name}"), overwrite=True, export_deploy=False, export_onnx=False,
            tensorboard=False)
        t0 = time.perf_counter()
        result = train(cfg)
        state = load_training_checkpoint(result.checkpoint)["model"]
        path = out / f"{name}_digits.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        top1 = float(result.history[-1]["val_top1"])
        results.append(dict(model=name, checkpoint=str(path), val_top1=top1, train_seconds=time.perf_counter() - t0))
        print(f"{name}: held-out top-1 {top1:.1f}% after {epochs} epoch(s), {time.perf_counter() - t0:.0f} s",
              flush=True)
    return results


def erf_command(out: Path, name: str, checkpoints, images: int, size: int, contribution: str) -> list:
    if contribution != "abs":
        name = f"{name}_{contribution}"
    cmd = [sys.executable, "-m", "unireplknet.analysis.erf_cli", "--model", ",".join(MODELS),
           "--labels", ",".join(LABELS), "--in-chans", "1", "--images", str(images), "--input-size", str(size),
           "--output", str(out / f"erf_{name}.png"), "--no-progress",
           "--contribution", contribution]
    if checkpoints:
        cmd += ["--checkpoint", ",".join(checkpoints)]
    print("$ " + " ".join(cmd[2:]).replace("unireplknet.analysis.erf_cli", "unireplknet erf"), flush=True)
    subprocess.run(cmd, check=True)
    return name


def memory(out: Path, size: int) -> None:
    """Peak resident memory of one ``unireplknet erf`` run of UniRepLKNet-T at ``size`` (batch 1), with and
    without activation checkpointing, each in a fresh process."""
    for extra in ([], ["--grad-checkpointing"]):
        cmd = [sys.executable, "-m", "unireplknet.analysis.erf_cli", "--model", "unireplknet_t", "--images", "1",
               "--input-size", str(size), "--output", str(out / "memory.json"), "--no-progress", *extra]
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the maximum over all children
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, cmd)
        print(f"unireplknet_t {size}x{size} batch 1 {' '.join(extra) or '(no checkpointing)'}: peak RSS "
              f"{usage.ru_maxrss / 2**20:.2f} GiB, {time.perf_counter() - t0:.0f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/erf_study", help="work folder (weights, tables, maps)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--erf-size", type=int, default=256)
    p.add_argument("--contribution", choices=("abs", "relu"), default="abs",
                   help="passed to unireplknet erf (figures of relu get a _relu suffix)")
    p.add_argument("--reuse", action="store_true", help="take the trained weights of an earlier run in --out")
    p.add_argument("--memory", action="store_true", help="only measure the peak RSS of T at --memory-size")
    p.add_argument("--memory-size", type=int, default=1024)
    p.add_argument("--docs", default=str(REPO / "docs" / "img"), help="where the figures are copied")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.memory:
        memory(out, args.memory_size)
        return
    names = [erf_command(out, "random", None, args.images, args.erf_size, args.contribution)]
    if args.reuse:
        trained = json.loads((out / "training.json").read_text())
    else:
        trained = train_models(out, args.epochs, args.train_size, args.lr)
        (out / "training.json").write_text(json.dumps(trained, indent=2))
    names.append(erf_command(out, "trained", [t["checkpoint"] for t in trained], args.images, args.erf_size,
                             args.contribution))
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(out / f"erf_{name}.png", docs / f"erf_{name}.png")
    print(f"figures copied to {docs}")


if __name__ == "__main__":
    main()

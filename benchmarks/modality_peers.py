"""UniRepLKNet against a peer backbone of the same size through the same modality demo pipelines.

Issue "honest evidence for one backbone for every modality": each modality page shows UniRepLKNet, a peer
backbone trained by the *same* task code (data, projection or layout, head, loss, recipe, epochs, seeds), and
the classical method of ``benchmarks/classical_baselines.py``. This script makes the first two rows.

* ours — the documented demo command unchanged (``unireplknet audio-train`` / ``points-train`` /
  ``video-train``), i.e. the demo's small UniRepLKNet (depths 1-1-2-1, dims 16-32-64-128, the demo's kernels).
* peer — the same command with ``--model convnext_atto --model-kwargs '{"depths":[1,1,2,1],"dims":[16,32,64,128]}'``:
  timm's ConvNeXt (Liu et al., CVPR 2022; the design UniRepLKNet's blocks start from, paper section 3) with the
  demo's depths and widths, so the two differ in the block (ConvNeXt's 7x7 depth-wise convolution and
  4x4 patchify stem against the Dilated Reparam Block with the demo's kernels and the two-conv stem).

Every run is its own process with ``--threads 1 --seed S --no-onnx`` (the ONNX check is not part of what is
compared), writes into ``--work-dir`` and is parsed from the command's own summary lines; parameters come from
the run's ``summary.json`` (training-time structure, head included).

Every task's ``--model`` takes a timm model name too (the engine's one model factory,
``unireplknet.engine.build_model``, passes ``--model-kwargs`` and ``drop_path_rate`` to ``timm.create_model``);
both heads only use timm's ``forward_features`` / ``forward_head`` / ``num_features`` interface. (The committed
results were made while the engine still lacked that case, by a child process that added exactly that
``timm.create_model`` call; the models built are the same.)

Run (measured 20-80 s per training with one thread on a shared 2-core machine, about 13 minutes for all
three demos x 2 models x 3 seeds; ``--epochs N`` overrides the demos' epochs for every run)::

    python benchmarks/modality_peers.py audio points video --seeds 0 1 2 \\
        --json benchmarks/results/modality_peers.json --markdown benchmarks/results/modality_peers.md
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

PEER_MODEL = "convnext_atto"
#: The demos' depths and widths (SHAPES_DEMO_KWARGS, MOTION_DEMO_KWARGS, TINY_AUDIO_MODEL_KWARGS).
PEER_KWARGS = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}

#: demo -> (command, its extra arguments if any, regex of the held-out top-1 line it prints, what that number is)
DEMOS: Dict[str, Dict[str, str]] = {
    "audio": dict(command="audio-train", pattern=r"^test acc: ([0-9.]+)%",
                  metric="test top-1, 20 clips of 2 held-out voices (best-validation epoch)"),
    "points": dict(command="points-train", pattern=r"^held-out OA over all \d+ test rotations \(official\): ([0-9.]+)%",
                   metric="held-out overall accuracy over 8 rotations x 64 shapes (last epoch)"),
    "video": dict(command="video-train", pattern=r"^held-out top-1 ([0-9.]+)%",
                  metric="held-out top-1 on the validation clips (last epoch)"),
    # The hard point-cloud demo: partial scans, 16 classes, test proportions disjoint from training
    # (docs/pointcloud.md); its settings were chosen on the validation split, the number is the test split's.
    "points_scans": dict(command="points-train", args="--recipe scans",
                         pattern=r"^held-out OA over all \d+ test rotations \(official\): ([0-9.]+)%",
                         metric="test overall accuracy over 8 rotations x 96 partial scans, 16 classes (last epoch)"),
}


# ----------------------------------------------------------------------------------------------- parent
def _spread(values: Sequence[float]) -> Dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return dict(mean=mean, std=std, min=min(values), max=max(values))


def run_one(demo: str, peer: bool, seed: int, work_dir: Path, extra: Sequence[str]) -> Dict[str, Any]:
    spec = DEMOS[demo]
    out = work_dir / f"{demo}-{'peer' if peer else 'ours'}-seed{seed}"
    args = [spec["command"], *spec.get("args", "").split(), "--threads", "1", "--seed", str(seed), "--no-onnx",
            "--no-progress", "--output", str(out), "--overwrite", *extra]
    if peer:
        args += ["--model", PEER_MODEL, "--model-kwargs", json.dumps(PEER_KWARGS)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # the installed command itself: the engine's model factory builds the timm peer (engine.build_model)
    proc = subprocess.run([sys.executable, "-m", "unireplknet.cli", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the child at one thread: a fair estimate of its wall time on an idle core
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{demo} ({'peer' if peer else 'ours'}, seed {seed}) failed with exit code "
                           f"{proc.returncode}; the last lines of its output:\n{proc.stderr[-3000:]}")
    match = re.search(spec["pattern"], proc.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{demo}: no line matching {spec['pattern']!r} in the command's output:\n{proc.stdout}")
    summary = json.loads((out / "summary.json").read_text())
    return dict(seed=seed, top1=float(match.group(1)), params=int(summary["params_train"]), wall_s=round(wall, 1),
                cpu_s=round(cpu, 1), loadavg=os.getloadavg()[0],
                command="unireplknet " + " ".join(args[:1] + [a if " " not in a and '"' not in a else f"'{a}'"
                                                              for a in args[1:]]))


def to_markdown(results: Dict[str, Any]) -> str:
    lines = ["| demo | backbone | params | held-out top-1 % (mean ± std, seeds) | per-seed | wall s per run |",
             "|---|---|---|---|---|---|"]
    for demo, rows in results["demos"].items():
        for name, row in rows.items():
            s = row["top1"]
            lines.append(f"| {demo} | {row['label']} | {row['params'] / 1e6:.3f} M | {s['mean']:.1f} ± {s['std']:.1f} "
                         f"(n={len(row['runs'])}) | {', '.join('%.1f' % r['top1'] for r in row['runs'])} | "
                         f"{sum(r['wall_s'] for r in row['runs']) / len(row['runs']):.0f} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="*", metavar="DEMO", help=f"of {', '.join(DEMOS)} (default: audio points)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work-dir", default="runs/modality_peers", help="where the runs write their checkpoints")
    parser.add_argument("--json", help="write the results (every run, and mean ± std) to this JSON file")
    parser.add_argument("--markdown", help="write the table to this markdown file")
    parser.add_argument("--epochs", type=int, help="override the demos' epochs (for a quick check only)")
    parser.add_argument("--rows", nargs="+", choices=("ours", "peer"), default=["ours", "peer"],
                        help="which backbones to run (both; two invocations with one row each can run side by side)")
    args = parser.parse_args(list(argv))
    unknown = sorted(set(args.demos) - set(DEMOS))
    if unknown:
        parser.error(f"unknown demo(s) {', '.join(unknown)}; choose from {', '.join(DEMOS)}")
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    results: Dict[str, Any] = dict(machine=os.uname().nodename, cpus=os.cpu_count(), seeds=args.seeds,
                                   peer=dict(model=PEER_MODEL, model_kwargs=PEER_KWARGS), demos={})
    for demo in args.demos or ["audio", "points"]:
        results["demos"][demo] = {}
        for peer in [row == "peer" for row in args.rows]:
            runs = []
            for seed in args.seeds:
                runs.append(run_one(demo, peer, seed, Path(args.work_dir), extra))
                print(f"{demo:6s} {'peer' if peer else 'ours'} seed {seed}: top-1 {runs[-1]['top1']:.2f}% "
                      f"({runs[-1]['params']} params, {runs[-1]['wall_s']:.0f} s)", flush=True)
            label = (f"{PEER_MODEL} (timm ConvNeXt, depths 1-1-2-1, dims 16-32-64-128)" if peer
                     else "UniRepLKNet (demo default)")
            results["demos"][demo]["peer" if peer else "ours"] = dict(
                label=label, metric=DEMOS[demo]["metric"], params=runs[0]["params"],
                top1=_spread([r["top1"] for r in runs]), runs=runs)
            # Written after every row, so an interrupted sweep keeps what it measured.
            if args.json:
                _write_atomic(Path(args.json), json.dumps(results, indent=1))
            if args.markdown:
                _write_atomic(Path(args.markdown), to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

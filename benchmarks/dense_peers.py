"""Three rows on the generated dense scenes: UniRepLKNet, a timm peer backbone through the same pipeline, and the
classical method of ``benchmarks/classical_baselines.py`` — over several seeds.

Issue "honest evidence for one backbone for every modality", dense part (docs/dense.md). The dense demos score
COCO box/mask AP and mIoU rather than one top-1, so they have their own runner beside ``modality_peers.py``:

* ``ours`` — ``unireplknet det-train`` / ``seg-train --data scenes`` (the demo's small UniRepLKNet: depths
  1-1-2-1, dims 16-32-64-128, kernels 7, 7, 5, 3) with the reduced schedule below;
* ``peer`` — the same command with
  ``--model convnext_atto --model-kwargs '{"depths":[1,1,2,1],"dims":[16,32,64,128]}'``:
  timm's ConvNeXt with the demo's depths and widths, built with ``features_only=True`` and feeding the same FPN /
  Mask R-CNN heads or UperNet head, same recipe, same scenes;
* ``classical`` — ``baselines.dense.detection_scenes_baseline`` / ``segmentation_scenes_baseline`` on the
  same scenes (``make_scene`` with the same seed, the same 100 held-out scenes), scored by the task's own COCO
  evaluator and confusion matrix.

``--seed S`` sets everything of a run: the generated training and held-out scenes, the initialisation and the
data order; so the seeds differ in data *and* initialisation, and the three rows of one seed see the same scenes.

The seeds table uses a **reduced schedule**, set by the CPU time a shared 2-core machine gave (about a tenth of
a core per process at load 15-17) before any of its results were seen, not tuned on the held-out scenes:
detection 640 scenes x 3 epochs, lr x 0.1 after epoch 2 (480 steps; the demo: 10 epochs, 1600 steps);
segmentation 1600 scenes x 2 epochs (800 steps, poly decay; the demo: 10 epochs, 4000 steps); only the last
epoch is evaluated (``--eval-every 100``), no ONNX export. ``--full`` runs the demo's own schedule.

Every run is its own process with ``--threads 1``; its CPU time (user + system of the child) is recorded beside
the wall time. Run (about 1-1.5 CPU-minutes per learned run, reduced schedule)::

    python benchmarks/dense_peers.py det --rows ours peer --json benchmarks/results/dense_det.json
    python benchmarks/dense_peers.py seg --rows ours peer --json benchmarks/results/dense_seg.json
    python benchmarks/dense_peers.py det --rows classical --json benchmarks/results/dense_det_classical.json
    python benchmarks/dense_peers.py seg --rows classical --json benchmarks/results/dense_seg_classical.json
    python benchmarks/dense_peers.py --markdown benchmarks/results/dense_peers.md --from-json \\
        benchmarks/results/dense_{det,seg}.json benchmarks/results/dense_{det,seg}_classical.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_cli, seed_spread, write_text_atomic  # noqa: E402

PEER_MODEL = "convnext_atto"
PEER_KWARGS = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}

#: task -> the command, its reduced schedule and the metrics kept (key metric first)
TASKS: Dict[str, Dict[str, Any]] = {
    "det": dict(command="det-train", reduced=["--epochs", "3", "--step-epochs", "2"],
                metrics=["box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50"]),
    "seg": dict(command="seg-train", reduced=["--epochs", "2"], metrics=["mIoU", "mAcc", "aAcc"]),
}
ROWS = ("ours", "peer", "classical")
LABELS = {"ours": "UniRepLKNet (the demo's: depths 1-1-2-1, dims 16-32-64-128)",
          "peer": f"{PEER_MODEL} (timm ConvNeXt, depths 1-1-2-1, dims 16-32-64-128), same pipeline",
          "classical": "classical (colour regions + shape descriptors, benchmarks/classical_baselines.py)"}



def _quote(args: Sequence[str]) -> str:
    return " ".join(a if " " not in a and '"' not in a else f"'{a}'" for a in args)


def run_learned(task: str, peer: bool, seed: int, work_dir: Path, full: bool, style: str = "flat") -> Dict[str, Any]:
    spec = TASKS[task]
    out = work_dir / f"{task}-{'peer' if peer else 'ours'}-seed{seed}{'' if style == 'flat' else '-' + style}"
    args = [spec["command"], "--data", "scenes", "--threads", "1", "--seed", str(seed), "--no-onnx",
            "--no-progress", "--eval-every", "100", "--output", str(out), "--overwrite"]
    if not full:
        args += spec["reduced"]
    if style != "flat":
        args += ["--scenes-style", style]
    if peer:
        args += ["--model", PEER_MODEL, "--model-kwargs", json.dumps(PEER_KWARGS, separators=(",", ":"))]
    run = run_cli(args, f"{task} ({'peer' if peer else 'ours'}, seed {seed})")
    summary = json.loads((out / "summary.json").read_text())
    last = summary["history"][-1]
    metrics = {m: float(last[f"val_{m}"]) for m in spec["metrics"]}
    return dict(seed=seed, metrics=metrics, params=int(summary["params_train"]), wall_s=run.wall_s,
                cpu_s=run.cpu_s, command="unireplknet " + _quote(args))


def run_classical(task: str, seed: int, style: str = "flat") -> Dict[str, Any]:
    from baselines import dense as cb

    start, cpu0 = time.perf_counter(), time.process_time()
    fn = cb.detection_scenes_baseline if task == "det" else cb.segmentation_scenes_baseline
    metrics = fn(seed=seed, style=style)
    return dict(seed=seed, metrics={m: float(metrics[m]) for m in TASKS[task]["metrics"]}, params=0,
                wall_s=round(time.perf_counter() - start, 1), cpu_s=round(time.process_time() - cpu0, 1),
                command=f"python benchmarks/dense_peers.py {task} --rows classical --seeds {seed}"
                        + ("" if style == "flat" else f" --style {style}"))


def to_markdown(results: Sequence[Dict[str, Any]]) -> str:
    lines = []
    for res in results:
        task = res["task"]
        metrics = TASKS[task]["metrics"]
        lines += [f"**{task}** ({res['schedule']}; held-out: the 100 generated validation scenes of each seed)", "",
                  "| row | params | " + " | ".join(f"{m} (mean ± std)" for m in metrics)
                  + f" | per-seed {metrics[0]} | CPU s per run |",
                  "|---|---|" + "---|" * len(metrics) + "---|---|"]
        for row in ROWS:
            if row not in res["rows"]:
                continue
            r = res["rows"][row]
            one = len(r["runs"]) == 1  # no spread from one seed
            cells = [f"{r['summary'][m]['mean']:.1f}" + (" (one seed)" if one else f" ± {r['summary'][m]['std']:.1f}")
                     for m in metrics]
            per_seed = ", ".join(f"{x['metrics'][metrics[0]]:.1f}" for x in r["runs"])
            cpu = sum(x["cpu_s"] for x in r["runs"]) / len(r["runs"])
            params = f"{r['params'] / 1e6:.3f} M" if r["params"] else "—"
            lines.append(f"| {LABELS[row]} | {params} | " + " | ".join(cells) + f" | {per_seed} (seeds "
                         f"{', '.join(str(x['seed']) for x in r['runs'])}) | {cpu:.0f} |")
        lines.append("")
    return "\n".join(lines)



def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", choices=sorted(TASKS), help="det or seg")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--full", action="store_true", help="the demo's full schedule instead of the reduced one")
    parser.add_argument("--style", default="flat", choices=("flat", "textured"), help="scene style (flat: the demo)")
    parser.add_argument("--work-dir", default="runs/dense_peers", help="where the runs write their checkpoints")
    parser.add_argument("--json", help="results file; rows and seeds already in it are kept unless run again")
    parser.add_argument("--markdown", help="write the tables to this markdown file")
    parser.add_argument("--from-json", nargs="+", default=[], help="only make --markdown from these result files")
    args = parser.parse_args(list(argv))
    if args.from_json:
        merged: Dict[str, Dict[str, Any]] = {}  # rows of one task may come from several files (run separately)
        for path in args.from_json:
            res = json.loads(Path(path).read_text())
            key = f"{res['task']}|{res['schedule']}"
            merged.setdefault(key, dict(res, rows={}))["rows"].update(res["rows"])
        text = to_markdown(list(merged.values()))
        if args.markdown:
            write_text_atomic(Path(args.markdown), text)
        print(text)
        return 0
    if args.task is None:
        parser.error("name a task (det or seg), or pass --from-json")
    schedule = "the demo's full schedule" if args.full else "reduced schedule: " + " ".join(TASKS[args.task]["reduced"])
    if args.style != "flat":
        schedule += f", --scenes-style {args.style}"
    res: Dict[str, Any] = dict(task=args.task, schedule=schedule, machine=os.uname().nodename, cpus=os.cpu_count(),
                               peer=dict(model=PEER_MODEL, model_kwargs=PEER_KWARGS), rows={})
    if args.json and Path(args.json).exists():
        old = json.loads(Path(args.json).read_text())
        if old.get("task") == args.task and old.get("schedule") == schedule:
            res["rows"] = old["rows"]
    # runs of other seeds already in the file are kept (a sweep can be extended seed by seed)
    runs: Dict[str, List[Dict[str, Any]]] = {
        row: [r for r in res["rows"].get(row, {}).get("runs", []) if r["seed"] not in args.seeds] for row in args.rows}
    for seed in args.seeds:  # seed-major: an interrupted sweep still has every row for the seeds it finished
        for row in args.rows:
            load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
            run = (run_classical(args.task, seed, args.style) if row == "classical"
                   else run_learned(args.task, row == "peer", seed, Path(args.work_dir), args.full, args.style))
            run["load_before"] = load
            runs[row].append(run)
            print(f"{args.task} {row:9s} seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in run["metrics"].items())
                  + f" ({run['cpu_s']:.0f} CPU s, {run['wall_s']:.0f} s wall, load {load})", flush=True)
            res["rows"][row] = dict(label=LABELS[row], params=runs[row][0]["params"], runs=runs[row],
                                    summary={m: seed_spread([r["metrics"][m] for r in runs[row]])
                                             for m in TASKS[args.task]["metrics"]})
            if args.json:  # after every run, so an interrupted sweep keeps what it measured
                write_text_atomic(Path(args.json), json.dumps(res, indent=1))
    text = to_markdown([res])
    if args.markdown:
        write_text_atomic(Path(args.markdown), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

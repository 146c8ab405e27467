"""Forecasting: UniRepLKNet against a peer encoder through the same ``forecast-train`` pipeline, over seeds.

The forecasting rows of the issue "honest evidence for one backbone for every modality" (docs/timeseries.md):

* ours — ``unireplknet forecast-train --data DATA`` unchanged: the linear-head forecaster with the demo's small
  UniRepLKNet (depths 1-1-2-1, dims 16-32-64-128, kernels 3/7/3-3/3) on the 48 × 48 embedded-series image;
* peer — the same command with ``--model convnext_atto --model-kwargs '{"depths":[1,1,2,1],"dims":[16,32,64,128]}'``:
  timm's ConvNeXt with the demo's depths and widths, built by the engine's one model factory, its
  ``forward_features`` map flattened into the same linear head (same embedding, normalisation, loss, recipe);
* the classical rows come from ``benchmarks/classical_baselines.py co2 grid advection`` (same splits).

Every run is its own process with ``--threads 1 --seed S --no-onnx --json``; the test MSE/MAE come from the
command's JSON line, the best validation loss and the parameters from the run's ``summary.json``, the CPU
seconds (user + sys of the child, a fair estimate of the wall time on an idle core at one thread) from getrusage.

Run (each training 8-56 CPU s at one thread; all 3 demos x 2 encoders x 3 seeds about 8 CPU minutes, measured
on a shared 2-core Intel Xeon VM on 2026-12-02, where the wall time under load 14-18 was 7-10 times that)::

    python benchmarks/forecast_peers.py co2 grid advection --seeds 0 1 2 \\
        --json benchmarks/results/forecast_peers.json --markdown benchmarks/results/forecast_peers.md

``--extra='--norm node --constant-lr'`` (with the =, as the value starts with --) passes options to every run;
that is how the recipes were compared on the validation split (``--tag`` names such a run in the output).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_cli, seed_spread, write_text_atomic  # noqa: E402

PEER_MODEL = "convnext_atto"
#: The forecaster's default encoder depths and widths (unireplknet.tasks.forecast.layers.TINY_FORECAST_MODEL_KWARGS).
PEER_KWARGS = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}
DEMOS = {"co2": "co2", "grid": "synthetic-grid", "advection": "synthetic-advection"}



def run_one(demo: str, peer: bool, seed: int, work_dir: Path, extra: Sequence[str]) -> Dict[str, Any]:
    """One ``forecast-train`` run in its own process; its test metrics, best validation loss, size and time."""
    out = work_dir / f"{demo}-{'peer' if peer else 'ours'}-seed{seed}"
    args = ["forecast-train", "--data", DEMOS[demo], "--threads", "1", "--seed", str(seed), "--no-onnx",
            "--no-progress", "--json", "--output", str(out), "--overwrite", *extra]
    if peer:
        args += ["--model", PEER_MODEL, "--model-kwargs", json.dumps(PEER_KWARGS, separators=(",", ":"))]
    run = run_cli(args, f"{demo} ({'peer' if peer else 'ours'}, seed {seed})")
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{demo}: no JSON line in the command's output:\n{run.stdout}")
    result = json.loads(lines[-1])
    summary = json.loads((out / "summary.json").read_text())
    return dict(seed=seed, test_mse=result["test"]["mse"], test_mae=result["test"]["mae"],
                val_loss=summary["best"]["val_loss"], best_epoch=result["best_epoch"],
                epochs_run=len(summary["history"]), params=int(summary["params_train"]), wall_s=run.wall_s,
                cpu_s=run.cpu_s, baselines=result["baselines"], command="unireplknet " + shlex.join(args))


#: The rows of ``benchmarks/classical_baselines.py --json`` shown under each demo (key prefix, label).
CLASSICAL_ROWS = (("ridge", "ridge per series (shared map, strength on validation)"),
                  ("least_squares", "least squares per series"),
                  ("joint_ridge", "ridge on all stations jointly"),
                  ("node_ridge", "ridge per node of 11 stations (shared by the nodes)"),
                  ("kernel_ridge", "that + RBF kernel ridge on its residuals"),
                  ("seasonal_naive", "seasonal naive"), ("naive", "last value (naive)"))


def to_markdown(results: Dict[str, Any], classical: Optional[Dict[str, Dict[str, float]]] = None) -> str:
    """One table: both encoders per demo (mean ± std over seeds, per seed) and, given the classical
    baselines' JSON, their single deterministic rows on the same test windows."""
    lines = ["| demo | method | params | test MSE (mean ± std) | test MAE (mean ± std) | per-seed MSE | "
             "best val loss (mean) | CPU s per run |", "|---|---|---|---|---|---|---|---|"]
    for demo, rows in results["demos"].items():
        for row in rows.values():
            mse, mae = row["test_mse"], row["test_mae"]
            lines.append(
                f"| {demo} | {row['label']}{' with ' + row['extra'] if row.get('extra') else ''} | {row['params'] / 1e6:.3f} M | {mse['mean']:.3f} ± {mse['std']:.3f} | "
                f"{mae['mean']:.3f} ± {mae['std']:.3f} | {', '.join('%.3f' % r['test_mse'] for r in row['runs'])} | "
                f"{row['val_loss']['mean']:.4f} | {sum(r['cpu_s'] for r in row['runs']) / len(row['runs']):.0f} |")
        for key, label in CLASSICAL_ROWS if classical and demo in classical else ():
            c = classical[demo]
            if f"{key}_test_mse" in c:
                lines.append(f"| {demo} | {label} | | {c[key + '_test_mse']:.3f} | {c[key + '_test_mae']:.3f} | "
                             "deterministic | | |")
    return "\n".join(lines) + "\n"


def merge(files: Sequence[str]) -> Dict[str, Any]:
    """Several runs of this script (e.g. seed 0 of a validation sweep and seeds 1, 2 run later with the same
    options) as one result; the runs of one demo and encoder must have been made with the same ``--extra``."""
    merged: Dict[str, Any] = {}
    for path in files:
        part = json.loads(Path(path).read_text())
        if not merged:
            merged = dict(part, demos={}, seeds=[], tag="merged", extra=None)
        for demo, rows in part["demos"].items():
            for encoder, row in rows.items():
                target = merged["demos"].setdefault(demo, {}).setdefault(encoder, dict(row, runs=[],
                                                                                       extra=part["extra"]))
                if target["extra"] != part["extra"]:
                    raise ValueError(f"{path}: {demo} {encoder} made with --extra {part['extra']!r}, the other runs "
                                     f"with {target['extra']!r}")
                target["runs"] += row["runs"]
    for rows in merged["demos"].values():
        for row in rows.values():
            row["runs"].sort(key=lambda r: r["seed"])
            for metric in ("test_mse", "test_mae", "val_loss"):
                row[metric] = seed_spread([r[metric] for r in row["runs"]])
    merged["seeds"] = sorted({r["seed"] for rows in merged["demos"].values() for row in rows.values()
                              for r in row["runs"]})
    return merged



def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="*", metavar="DEMO", help=f"of {', '.join(DEMOS)} (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoders", nargs="+", default=["ours", "peer"], choices=("ours", "peer"))
    parser.add_argument("--extra", default="", help="options added to every forecast-train run (quoted)")
    parser.add_argument("--tag", default="", help="a name for this recipe in the output")
    parser.add_argument("--work-dir", default="runs/forecast_peers", help="where the runs write their checkpoints")
    parser.add_argument("--json", help="write every run and the mean ± std to this JSON file")
    parser.add_argument("--markdown", help="write the table to this markdown file")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="combine earlier --json outputs instead of running")
    parser.add_argument("--classical", metavar="JSON",
                        help="add the rows of benchmarks/classical_baselines.py --json to the markdown table")
    args = parser.parse_args(list(argv))
    classical = json.loads(Path(args.classical).read_text()) if args.classical else None

    def save(results: Dict[str, Any]) -> None:
        if args.json:
            write_text_atomic(Path(args.json), json.dumps(results, indent=1))
        if args.markdown:
            write_text_atomic(Path(args.markdown), to_markdown(results, classical))

    if args.merge:
        results = merge(args.merge)
        save(results)
        print(to_markdown(results, classical))
        return 0
    unknown = sorted(set(args.demos) - set(DEMOS))
    if unknown:
        parser.error(f"unknown demo(s) {', '.join(unknown)}; choose from {', '.join(DEMOS)}")
    extra = shlex.split(args.extra)
    results: Dict[str, Any] = dict(machine=os.uname().nodename, cpus=os.cpu_count(), seeds=args.seeds,
                                   tag=args.tag, extra=args.extra,
                                   peer=dict(model=PEER_MODEL, model_kwargs=PEER_KWARGS), demos={})
    for demo in args.demos or list(DEMOS):
        results["demos"][demo] = {}
        for encoder in args.encoders:
            peer = encoder == "peer"
            runs: List[Dict[str, Any]] = []
            for seed in args.seeds:
                runs.append(run_one(demo, peer, seed, Path(args.work_dir) / (args.tag or "default"), extra))
                print(f"{demo:9s} {encoder} seed {seed}: test MSE {runs[-1]['test_mse']:.3f} MAE "
                      f"{runs[-1]['test_mae']:.3f}, val loss {runs[-1]['val_loss']:.4f} "
                      f"({runs[-1]['cpu_s']:.0f} CPU s)", flush=True)
            label = (f"{PEER_MODEL} (timm ConvNeXt, depths 1-1-2-1, dims 16-32-64-128)" if peer
                     else "UniRepLKNet (forecast-train's encoder)")
            results["demos"][demo][encoder] = dict(
                label=label, params=runs[0]["params"], extra=args.extra, runs=runs,
                **{m: seed_spread([r[m] for r in runs]) for m in ("test_mse", "test_mae", "val_loss")})
            save(results)  # after every row, so an interrupted sweep keeps what it measured
    print(to_markdown(results, classical))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

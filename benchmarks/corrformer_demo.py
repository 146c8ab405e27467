"""The Corrformer demo's results table: UniRepLKNet-Corrformer and a ConvNeXt peer against the baselines, per seed.

    python scripts/make_global_weather.py /tmp/global_weather
    python benchmarks/corrformer_demo.py /tmp/global_weather --seeds 0 1 2 \\
        --json benchmarks/results/corrformer_demo.json --markdown benchmarks/results/corrformer_demo.md

Every run is the documented demo command, ``unireplknet forecast-train --data DIR --preset demo --threads 1
--seed S --json`` (``--encoder convnext`` for the peer: timm's ConvNeXt with the demo encoder's depths 1-1-2-1
and widths 16-32-64-128, the rest of the pipeline, data, recipe and seed unchanged), in its own process. The
command itself scores the best-validation checkpoint on the test split next to last value, seasonal naive and the
ridge linear model of the same inputs; this script collects those numbers (physical units: the files are ×10, so
MSE / 100 and MAE / 10) and the CPU seconds of each run (user + sys of the child, which at one thread is the
time an idle core would take). The table is the test split; the recipe was chosen on the validation split
(docs/timeseries.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_cli, seed_spread, write_text_atomic  # noqa: E402

#: row name -> extra arguments of forecast-train
MODELS: Dict[str, List[str]] = {
    "UniRepLKNet-Corrformer (demo preset)": [],
    "ConvNeXt-Corrformer (peer encoder, same depths/widths)": ["--encoder", "convnext"],
}
BASELINES = {"last value (naive)": "last value", "seasonal naive (period 24)": "seasonal naive (24 h)",
             "linear (ridge, same inputs)": "ridge linear model of the same inputs"}



def run_one(data: str, extra: Sequence[str], seed: int, out: Path) -> Dict[str, Any]:
    args = ["forecast-train", "--data", data, "--preset", "demo", "--threads", "1", "--seed", str(seed),
            "--no-progress", "--json", "-o", str(out), "--overwrite", *extra]
    run = run_cli(args, "unireplknet " + " ".join(args))
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return dict(seed=seed, test=result["test"], baselines=result["baselines"], best_epoch=result["best_epoch"],
                cpu_s=run.cpu_s, wall_s=run.wall_s, load=os.getloadavg()[0],
                command="unireplknet " + " ".join(args))


def to_markdown(results: Dict[str, Any]) -> str:
    lines = ["| method | test MSE °C² (mean ± std) | test MAE °C | per seed MSE | CPU s per run |", "|---|---|---|---|---|"]
    for name, row in results["models"].items():
        mse, mae = row["mse"], row["mae"]
        lines.append(f"| {name} | {mse['mean']:.3f} ± {mse['std']:.3f} (n={len(row['runs'])}) | {mae['mean']:.3f} | "
                     f"{', '.join('%.3f' % (r['test']['mse'] / 100) for r in row['runs'])} | "
                     f"{sum(r['cpu_s'] for r in row['runs']) / len(row['runs']):.0f} |")
    for key, label in BASELINES.items():
        if key in results["baselines"]:
            b = results["baselines"][key]
            lines.append(f"| {label} | {b['mse'] / 100:.3f} | {b['mae'] / 10:.3f} | (deterministic) | |")
    return "\n".join(lines) + "\n"



def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a folder written by scripts/make_global_weather.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=("ours", "peer"), default=["ours", "peer"])
    parser.add_argument("--work-dir", default="runs/corrformer_demo")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args(list(argv))
    results: Dict[str, Any] = dict(machine=os.uname().nodename, cpus=os.cpu_count(), data=args.data, seeds=args.seeds,
                                   models={}, baselines={})
    chosen = [name for i, name in enumerate(MODELS) if ("ours", "peer")[i] in args.models]
    for name in chosen:
        runs = []
        for seed in args.seeds:
            out = Path(args.work_dir) / f"{'peer' if MODELS[name] else 'ours'}-seed{seed}"
            runs.append(run_one(args.data, MODELS[name], seed, out))
            results["baselines"] = runs[-1]["baselines"]  # the same windows every run
            print(f"{name} seed {seed}: test MSE {runs[-1]['test']['mse'] / 100:.3f} °C² "
                  f"({runs[-1]['cpu_s']:.0f} CPU s)", flush=True)
            results["models"][name] = dict(runs=runs, mse=seed_spread([r["test"]["mse"] / 100 for r in runs]),
                                           mae=seed_spread([r["test"]["mae"] / 10 for r in runs]))
            # written after every run, so an interrupted sweep keeps what it measured
            if args.json:
                write_text_atomic(Path(args.json), json.dumps(results, indent=1))
            if args.markdown:
                write_text_atomic(Path(args.markdown), to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

#: row name -> extra arguments of forecast-train
MODELS: Dict[str, List[str]] = {
    "UniRepLKNet-Corrformer (demo preset)": [],
    "ConvNeXt-Corrformer (peer encoder, same depths/widths)": ["--encoder", "convnext"],
}
BASELINES = {"last value (naive)": "last value", "seasonal naive (period 24)": "seasonal naive (24 h)",
             "linear (ridge, same inputs)": "ridge linear model of the same inputs"}


def _spread(values: Sequence[float]) -> Dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return dict(mean=mean, std=std, min=min(values), max=max(values))


def run_one(data: str, extra: Sequence[str], seed: int, out: Path) -> Dict[str, Any]:
    args = ["forecast-train", "--data", data, "--preset", "demo", "--threads", "1", "--seed", str(seed),
            "--no-progress", "--json", "-o", str(out), "--overwrite", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "unireplknet.cli", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"run {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(seed=seed, test=result["test"], baselines=result["baselines"], best_epoch=result["best_epoch"],
                cpu_s=round(cpu, 1), wall_s=round(wall, 1), load=os.getloadavg()[0],
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


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
            results["models"][name] = dict(runs=runs, mse=_spread([r["test"]["mse"] / 100 for r in runs]),
                                           mae=_spread([r["test"]["mae"] / 10 for r in runs]))
            # written after every run, so an interrupted sweep keeps what it measured
            if args.json:
                _write_atomic(Path(args.json), json.dumps(results, indent=1))
            if args.markdown:
                _write_atomic(Path(args.markdown), to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Time-series classification on the UCR/UEA problems shipped in the aeon wheel, beside the published tables.

Rows per problem: UniRepLKNet (the tsc task's default: ``rows`` images), the same pipeline with a timm peer
(``--peer``, a ResNet of the same size), MiniRocket and 1-NN DTW (aeon), and the published HC2, InceptionTime and WEASEL-2.0 resample-0
accuracies read from aeon's example results files (the archive's default split). CPU seconds per run.

Needs the ``tsc-bench`` extra (``pip install 'unireplknet[tsc-bench]'``: aeon with its dependencies).

    OMP_NUM_THREADS=1 python benchmarks/tsc_archive.py                     # the eight problems, seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/tsc_archive.py --problems GunPoint ItalyPowerDemand --seeds 0
    OMP_NUM_THREADS=1 python benchmarks/tsc_archive.py --validation-only --seeds 0 --tag _validation \
        --rows UniRepLKNet:mapping=rows,downsample_norm=batchnorm UniRepLKNet:mapping=gaf,downsample_norm=batchnorm

Writes benchmarks/results/tsc_archive.json and .md (``--tag`` adds a suffix), atomically.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, machine_description, markdown_table, write_text_atomic  # noqa: E402

PROBLEMS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "PickupGestureWiimoteZ",
            "BasicMotions", "JapaneseVowels")
PUBLISHED = ("HC2", "InceptionTime", "WEASEL-2.0")


def aeon_root() -> Path:
    try:
        import aeon
    except ImportError:
        raise SystemExit("this benchmark needs aeon: pip install 'unireplknet[tsc-bench]'") from None
    return Path(aeon.__file__).resolve().parent


def published_accuracies(root: Path) -> Dict[str, Dict[str, float]]:
    """``{estimator: {problem: resample-0 accuracy in %}}`` from aeon's example results files."""
    out: Dict[str, Dict[str, float]] = {}
    for name in PUBLISHED:
        path = root / "testing" / "example_results_files" / "classification" / "accuracy" / f"{name}_accuracy.csv"
        rows = list(csv.reader(path.read_text().splitlines()))
        out[name] = {row[0]: 100.0 * float(row[1]) for row in rows[1:] if len(row) > 1 and row[1]}
    return out


def fixed_length_arrays(problem: Any) -> Dict[str, np.ndarray]:
    """The baselines' input: every series filled, z-normalised and resampled (as the network's) to the longest
    TRAIN length, so unequal-length problems become one array ``(N, C, T)``."""
    from unireplknet.modalities.series_image import prepare_series

    length = max(problem.train.lengths)
    return {split: np.stack([prepare_series(s, length).astype(np.float64) for s in getattr(problem, split).series])
            for split in ("train", "test")}


def run_baseline(kind: str, problem: Any, seed: int) -> Dict[str, Any]:
    arrays = fixed_length_arrays(problem)
    y_train, y_test = problem.targets(problem.train), problem.targets(problem.test)
    if kind == "MiniRocket":
        from aeon.classification.convolution_based import MiniRocketClassifier

        clf = MiniRocketClassifier(random_state=seed, n_jobs=1)
    else:
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

        clf = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1)
    t0 = time.process_time()
    clf.fit(arrays["train"], y_train)
    acc = 100.0 * float((clf.predict(arrays["test"]) == y_test).mean())
    return dict(test_acc=acc, val_acc=None, val_loss=None, cpu_s=time.process_time() - t0)


def run_network(problem_dir: Path, seed: int, epochs: Optional[int], evaluate_test: bool = True,
                **options: Any) -> Dict[str, Any]:
    from unireplknet.tasks.tsc.task import TscConfig, train_tsc

    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as out:
        extra = {} if epochs is None else dict(epochs=epochs)
        cfg = TscConfig(data=str(problem_dir), seed=seed, output=out, tensorboard=False, export_onnx=False,
                        export_deploy=False, evaluate_test=evaluate_test, **extra, **options)
        r = train_tsc(cfg)
    test = r.extras["test"]
    return dict(test_acc=test["acc"] if test else None, val_acc=r.extras["val"]["acc"],
                val_loss=r.extras["val"]["loss"], best_epoch=r.best_epoch, cpu_s=time.process_time() - t0)


def variant_options(row: str) -> Dict[str, Any]:
    """``UniRepLKNet:mapping=gaf,downsample_norm=layernorm`` → the task options it changes (values as JSON where
    they parse, else strings)."""
    if ":" not in row:
        return {}
    options: Dict[str, Any] = {}
    for item in row.split(":", 1)[1].split(","):
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def write_results(runs: List[Dict[str, Any]], args: argparse.Namespace, published: Dict[str, Dict[str, float]],
                  machine: Optional[str] = None) -> str:
    """Write the JSON and markdown of the runs so far (problems without a run yet are left out); return the markdown."""
    problems = [p for p in args.problems if any(r["problem"] == p for r in runs)]
    labels = list(dict.fromkeys(r["row"] for r in runs))
    table: Dict[str, Dict[str, Any]] = {}
    for label in labels:
        for name in problems:
            mine = [r for r in runs if r["row"] == label and r["problem"] == name]
            if mine:
                vals = [r["val_acc"] for r in mine if r["val_acc"] is not None]
                table.setdefault(label, {})[name] = dict(
                    test_mean=statistics.mean(r["test_acc"] for r in mine) if mine[0]["test_acc"] is not None
                    else None,
                    test_std=statistics.pstdev([r["test_acc"] for r in mine])
                    if len(mine) > 1 and mine[0]["test_acc"] is not None else 0.0,
                    val_mean=statistics.mean(vals) if vals else None,
                    val_loss=statistics.mean(r["val_loss"] for r in mine) if vals else None,
                    cpu_s=statistics.mean(r["cpu_s"] for r in mine), seeds=[r["seed"] for r in mine])
    for est in PUBLISHED:
        table[f"{est} (published, resample 0)"] = {
            name: dict(test_mean=published[est][name]) for name in problems if name in published[est]}

    header = ["row"] + problems + ["mean"]
    md_rows = []
    for label, cells in table.items():
        if all(c.get("test_mean") is None for c in cells.values()):
            continue  # a validation-only row
        line = [label]
        for name in problems:
            c = cells.get(name)
            if c is None or c["test_mean"] is None:
                line.append("—")
            elif c.get("test_std"):
                line.append(f"{c['test_mean']:.1f} ± {c['test_std']:.1f}")
            else:
                line.append(f"{c['test_mean']:.1f}")
        complete = all(name in cells and cells[name]["test_mean"] is not None for name in problems)
        line.append(f"{statistics.mean(cells[n]['test_mean'] for n in problems):.1f}" if complete else "—")
        md_rows.append(line)
    cpu_rows = [[label] + [f"{cells[n]['cpu_s']:.0f}" if n in cells and "cpu_s" in cells[n] else "—"
                           for n in problems] for label, cells in table.items() if "published" not in label]
    val_rows = [[label] + [f"{cells[n]['val_mean']:.1f} ({cells[n]['val_loss']:.2f})"
                           if n in cells and cells[n].get("val_mean") is not None
                           else "—" for n in problems]
                for label, cells in table.items() if any(c.get("val_mean") is not None for c in cells.values())]
    machine = machine or machine_description()
    md = "\n\n".join([
        f"Test accuracy (%) on the archive's TRAIN/TEST split, mean ± std over seeds {args.seeds} "
        f"(published rows: resample 0; — where the file has no entry). Machine: {machine}.",
        markdown_table(header, md_rows),
        "Validation accuracy (%) on the split held out of TRAIN at the best epoch, and its cross-entropy in brackets "
        "(what the defaults are chosen on):",
        markdown_table(["row"] + problems, val_rows),
        "CPU seconds per run (training and scoring TEST):",
        markdown_table(["row"] + problems, cpu_rows)]) + "\n"
    out = REPO_ROOT / "benchmarks" / "results" / f"tsc_archive{args.tag}"
    write_text_atomic(out.with_suffix(".json"), json.dumps(dict(machine=machine, problems=problems,
                                                                seeds=args.seeds, runs=runs, table=table), indent=2))
    write_text_atomic(out.with_suffix(".md"), md)
    return md


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=["UniRepLKNet", "peer", "MiniRocket", "1-NN DTW"],
                        help="UniRepLKNet (the task's defaults), UniRepLKNet:key=value,… (a variant), UniRepLKNet-gaf, "
                             "peer, MiniRocket, 1-NN DTW")
    parser.add_argument("--peer", default="test_resnet",
                        help="timm model of the peer row [default: test_resnet, a ResNet of UniRepLKNet's size "
                             "(0.37 M parameters against 0.36 M), which keeps the benchmark under an hour of CPU]")
    parser.add_argument("--epochs", type=int, default=None, help="override the task's default epochs")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="no runs: write the tables of the runs in these result files (e.g. parts run in "
                             "parallel processes) under --tag")
    parser.add_argument("--validation-only", action="store_true",
                        help="network rows only, TEST not scored: the comparison that picks the task's defaults")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from unireplknet.data.timeseries.archive import load_problem

    threads = torch.get_num_threads()  # OMP_NUM_THREADS=1: one thread; aeon's thread-pool limits change it after
    root = aeon_root()
    published = published_accuracies(root)
    runs: List[Dict[str, Any]] = []
    if args.merge:
        machines = []
        for path in args.merge:
            part = json.loads(Path(path).read_text())
            runs.extend(part["runs"])
            machines.append(f"{Path(path).name}: {part['machine']}")
        order = {name: i for i, name in enumerate(PROBLEMS)}
        args.problems = sorted({r["problem"] for r in runs}, key=lambda n: order.get(n, len(order)))
        args.seeds = sorted({r["seed"] for r in runs})
        print(write_results(runs, args, published, machine="; ".join(machines)))
        return 0
    for name in args.problems:
        problem_dir = root / "datasets" / "data" / name
        problem = load_problem(problem_dir)
        for row in args.rows:
            for seed in args.seeds:
                torch.manual_seed(seed)
                torch.set_num_threads(threads)
                test = not args.validation_only
                if row.split(":")[0] == "UniRepLKNet":
                    result = run_network(problem_dir, seed, args.epochs, test, **variant_options(row))
                elif row == "UniRepLKNet-gaf":
                    result = run_network(problem_dir, seed, args.epochs, test, mapping="gaf")
                elif row == "peer":
                    result = run_network(problem_dir, seed, args.epochs, test, model=args.peer, model_kwargs={})
                elif args.validation_only:
                    continue
                elif row == "1-NN DTW" and seed != args.seeds[0]:
                    continue  # deterministic: one run
                else:
                    result = run_baseline(row, problem, seed)
                label = f"{args.peer} (peer)" if row == "peer" else row
                runs.append(dict(problem=name, row=label, seed=seed, **result))
                print(f"{name:24s} {label:18s} seed {seed}: test {result['test_acc']}% "
                      f"(val {result['val_acc'] if result['val_acc'] is not None else '-'}) "
                      f"{result['cpu_s']:.0f} CPU-s", file=sys.stderr, flush=True)

        write_results(runs, args, published)  # after every problem: a stopped run keeps what it measured
    print(write_results(runs, args, published))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fashion-MNIST against its published table (issue 26): the rows of docs/fashion_mnist.md.

Rows:

* UniRepLKNet and the timm peers (``--models``, e.g. ``resnet18``, ``convnext_atto``) trained by the same
  command, ``unireplknet train --data DIR --recipe R --model M --seed S``, for the quick recipe (seeds 0, 1, 2) and
  the long recipe (``--seeds-long``); the test top-1 of each run is its ``t10k`` score with the weights of
  ``best.pth`` (chosen on the validation split held out of train), read from the run's ``summary.json``;
* a classical model run here: multinomial logistic regression on the pixels (scaled to [0, 1]), its CPU time;
* the published rows, read from the benchmark table of the dataset's README
  (``/usr/share/doc/dataset-fashion-mnist/README.md.gz``, Debian package dataset-fashion-mnist) when installed,
  else quoted. The package's ``benchmark/baselines.json`` is the hyper-parameter grid of the project's
  scikit-learn benchmark, not its results; the best scikit-learn result (SVC, 89.7 %) is quoted from that
  benchmark's web page, which the package does not ship.

Then, for one trained checkpoint (``--agreement-run``; default: the first UniRepLKNet run of the long recipe,
else of the quick one), deployment agreement on all test images: the eager model vs the deploy file written by
``unireplknet reparam`` vs ONNX (the library's exporter, run by onnxruntime) vs OpenVINO (reading that ONNX file,
when installed): disagreeing top-1 predictions and the largest logit difference; and the eager model's
per-class accuracy and confusion matrix (figure ``--figure``).

Results: ``benchmarks/results/fashion_mnist.{json,md}`` (``--results``), and the same tables in the "Results"
section of docs/fashion_mnist.md (``--doc``). ``--skip-training`` trains nothing: it
reads the runs already in ``--runs-dir`` (a missing run is reported as missing), so the rows can be assembled
from runs made elsewhere. Training runs are resumed (``--resume``) when a run folder holds a ``last.pth`` but
no finished ``summary.json``.

Run: ``python benchmarks/fashion_mnist.py --recipes quick`` (3 x the quick recipe per model, then the rest);
``python benchmarks/fashion_mnist.py --skip-training --recipes quick long`` to assemble.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (REPO_ROOT, machine_description, markdown_table, replace_doc_section, run_cli,  # noqa: E402
                     seed_spread, write_text_atomic)

DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
DATASET_README = Path("/usr/share/doc/dataset-fashion-mnist/README.md.gz")
RESULTS_HEADING = "## Results"
RECIPE_NAMES = {"quick": "fashion-mnist-quick", "long": "fashion-mnist"}

#: The published rows (test accuracy, %), as the dataset's README table and its scikit-learn benchmark page give
#: them; the README rows are re-read from the installed file when it is there (``source`` says which).
PUBLISHED = [
    # (row, README "Classifier" cell, accuracy %, note)
    ("WRN-28-10 + random erasing", "WRN-28-10 + Random Erasing", 96.3, "crops, flips, random erasing"),
    ("WRN-28-10", "WRN-28-10", 95.9, "crops, flips"),
    ("DenseNet-BC (768K params)", "DenseNet-BC 768K params", 95.4, "crops, flips"),
    ("MobileNet", "MobileNet", 95.0, "flips"),
    ("ResNet-18", "ResNet18", 94.9, "flips, translation, rotation"),
    ("SVC (best scikit-learn)", None, 89.7, "scikit-learn benchmark page (not in the package)"),
    ("Human", "Human Performance", 83.5, "crowd-sourced, 1,000 test images"),
]


# ----------------------------------------------------------------------------------------------- published rows
def published_rows(readme: Path = DATASET_README) -> List[Dict[str, Any]]:
    """The published rows, each accuracy read from the README's benchmark table when the file is installed."""
    table: Dict[str, float] = {}
    if readme.is_file():
        for line in gzip.open(readme, "rt", encoding="utf-8", errors="replace"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and re.fullmatch(r"0?\.\d+", cells[2]):
                table.setdefault(cells[0], 100.0 * float(cells[2]))
    rows = []
    for name, cell, quoted, note in PUBLISHED:
        found = table.get(cell) if cell else None
        rows.append(dict(method=name, top1=round(found if found is not None else quoted, 2), note=note,
                         source=str(readme) if found is not None else "quoted (issue 26)"))
    return rows


# ----------------------------------------------------------------------------------------------- training rows
def run_dir(runs_dir: Path, recipe: str, model: str, seed: int) -> Path:
    return runs_dir / f"{recipe}-{model}-seed{seed}"


def read_run(path: Path) -> Optional[Dict[str, Any]]:
    """The record of a finished run (its ``summary.json`` with a test score, and ``bench.json`` if written)."""
    summary = path / "summary.json"
    if not summary.is_file():
        return None
    s = json.loads(summary.read_text())
    test = (s.get("extras") or {}).get("test")
    if not test:
        return None
    bench = json.loads((path / "bench.json").read_text()) if (path / "bench.json").is_file() else {}
    ema = (s.get("extras") or {}).get("test_ema")
    return dict(run=str(path), test_top1=test["top1"], test_ema_top1=ema["top1"] if ema else None,
                val_top1=((s.get("extras") or {}).get("val") or {}).get("top1"), best_epoch=s["extras"].get("best_epoch"),
                epochs=s.get("epochs"), wall_s=bench.get("wall_s", s.get("wall_s")), cpu_s=bench.get("cpu_s"),
                params=s.get("params_train"))


def train_run(data: Path, path: Path, recipe: str, model: str, seed: int, threads: int,
              extra: Sequence[str]) -> None:
    args = ["train", "--data", str(data), "--recipe", RECIPE_NAMES[recipe], "--model", model, "--seed", str(seed),
            "--output", str(path), "--threads", str(threads), "--no-progress", "--json", *extra]
    if (path / "last.pth").is_file():
        args.append("--resume")  # a stopped run continues exactly where it was
    elif path.exists():
        args.append("--overwrite")
    done = run_cli(args, f"training {path.name}")
    write_text_atomic(path / "bench.json", json.dumps(dict(wall_s=done.wall_s, cpu_s=done.cpu_s, threads=threads,
                                                           command=["unireplknet", *args]), indent=2))


def training_rows(args: argparse.Namespace) -> List[Dict[str, Any]]:
    rows = []
    for recipe in args.recipes:
        seeds = args.seeds_quick if recipe == "quick" else args.seeds_long
        for model in args.models:
            runs = []
            for seed in seeds:
                path = run_dir(args.runs_dir, recipe, model, seed)
                if not args.skip_training and read_run(path) is None:
                    print(f"training {path.name} …", file=sys.stderr)
                    train_run(args.data, path, recipe, model, seed, args.threads, args.train_args)
                record = read_run(path)
                if record is None:
                    print(f"{path}: no finished run (skipped)", file=sys.stderr)
                    continue
                runs.append(dict(record, seed=seed))
            if runs:
                spread = seed_spread([r["test_top1"] for r in runs])
                rows.append(dict(method=model, recipe=recipe, seeds=[r["seed"] for r in runs],
                                 test_top1=spread, runs=runs))
    return rows


# ----------------------------------------------------------------------------------------------- classical
def classical_row(data: Path, subsample: int, seed: int = 0) -> Dict[str, Any]:
    """Multinomial logistic regression on the pixels in [0, 1] (L2, C=1, lbfgs); ``subsample`` > 0: that many
    training images (a stratified draw) instead of all."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from unireplknet.data.idx import load_idx_split

    train, test = load_idx_split(data, "train"), load_idx_split(data, "t10k")
    x = train.images.reshape(len(train), -1).astype(np.float32) / 255.0
    y = train.labels
    if 0 < subsample < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=subsample, stratify=y, random_state=seed)
    start = time.process_time()
    model = LogisticRegression(C=1.0, max_iter=200).fit(x, y)
    cpu = time.process_time() - start
    pred = model.predict(test.images.reshape(len(test), -1).astype(np.float32) / 255.0)
    return dict(method="logistic regression (pixels)", train_images=int(len(y)),
                top1=round(100.0 * float((pred == test.labels).mean()), 2), cpu_s=round(cpu, 1))


# ----------------------------------------------------------------------------------------------- deployment
def agreement(run: Path, data: Path, work: Path, use_ema: bool = False, batch: int = 500) -> Dict[str, Any]:
    """Top-1 agreement and largest logit difference of the eager checkpoint, its deploy file (``unireplknet
    reparam``), ONNX (onnxruntime) and OpenVINO on every test image; the eager model's confusion matrix."""
    import torch

    from unireplknet.cli import main as unireplknet
    from unireplknet.data.build import eval_transform
    from unireplknet.data.idx import IdxDataset, load_idx_split
    from unireplknet.engine import read_run_metadata
    from unireplknet.export import export_onnx
    from unireplknet.loading import load_model
    from unireplknet.tasks.image.cli import load_checkpoint_model

    checkpoint = run / "best.pth"
    work.mkdir(parents=True, exist_ok=True)
    meta = read_run_metadata(checkpoint)
    dc, names = meta["data_config"], list(meta["class_names"])
    test = load_idx_split(data, "t10k")
    dataset = IdxDataset(test, eval_transform(dc), None, names)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.from_numpy(test.labels.astype(np.int64))

    eager = load_checkpoint_model(str(checkpoint), use_ema=use_ema)
    deploy_file = work / "deploy.safetensors"
    reparam = ["reparam", str(checkpoint), "--output", str(deploy_file), "--overwrite"] + (["--ema"] if use_ema else [])
    if unireplknet(reparam) != 0:
        raise RuntimeError(f"unireplknet {' '.join(reparam)} failed")
    deployed = load_model(deploy_file)
    onnx_file = work / "model.onnx"
    export_onnx(deployed, onnx_file, tuple(int(v) for v in dc["input_size"]), exporter="torchscript")

    def batched(fn) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([torch.as_tensor(np.asarray(fn(images[i:i + batch]))).float()
                              for i in range(0, len(images), batch)])

    logits = {"eager (training structure)": batched(eager), "deploy file (reparam)": batched(deployed)}
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits["ONNX (onnxruntime)"] = batched(lambda x: session.run(None, {name: x.numpy()})[0])
    openvino = None
    try:
        import openvino as ov
    except ImportError:
        openvino = "not installed (pip install 'unireplknet[openvino]')"
    if openvino is None:
        compiled = ov.Core().compile_model(ov.Core().read_model(str(onnx_file)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
        logits["OpenVINO (reads the ONNX file)"] = batched(lambda x: compiled([x.numpy()])[compiled.outputs[0]])

    reference = logits["eager (training structure)"]
    top1 = reference.argmax(1)
    rows = []
    for what, out in logits.items():
        rows.append(dict(runtime=what, top1=round(100.0 * float((out.argmax(1) == labels).double().mean()), 2),
                         disagreements=int((out.argmax(1) != top1).sum()),
                         max_logit_diff=float((out - reference).abs().max())))
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels.numpy(), top1.numpy()), 1)
    per_class = [dict(cls=names[i], images=int(confusion[i].sum()),
                      top1=round(100.0 * confusion[i, i] / max(confusion[i].sum(), 1), 2)) for i in range(k)]
    return dict(checkpoint=str(checkpoint), ema=use_ema, images=int(len(labels)), runtimes=rows,
                openvino=openvino or "installed", class_names=names, per_class=per_class,
                confusion=confusion.tolist())


def confusion_figure(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, confusion = result["class_names"], np.asarray(result["confusion"])
    share = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Fashion-MNIST test set ({confusion.sum():,} images): {Path(result['checkpoint']).parent.name}")
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- report
def _seconds(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 60:.1f} min"


def markdown(result: Dict[str, Any]) -> str:
    out = [f"Test accuracy on the t10k split of {result['data']} — made by `python benchmarks/fashion_mnist.py`; "
           f"{result['machine']}.", ""]
    rows = []
    for r in result["training"]:
        t, runs = r["test_top1"], r["runs"]
        cpu = [x["cpu_s"] for x in runs if x.get("cpu_s") is not None]
        rows.append([r["method"], r["recipe"], ",".join(map(str, r["seeds"])),
                     f"{t['mean']:.2f} ± {t['std']:.2f}" if len(runs) > 1 else f"{t['mean']:.2f}",
                     " / ".join(f"{x['test_top1']:.2f}" for x in runs),
                     _seconds(float(np.mean([x["wall_s"] for x in runs])) if runs[0].get("wall_s") else None),
                     _seconds(float(np.mean(cpu)) if cpu else None), f"{runs[0]['params']:,}" if runs[0]["params"] else "-"])
    c = result.get("classical")
    if c:
        rows.append([c["method"], f"{c['train_images']:,} train images", "-", f"{c['top1']:.2f}", "-", "-",
                     _seconds(c["cpu_s"]), "-"])
    out += [markdown_table(["method", "recipe", "seeds", "test top-1 %", "per seed", "wall / run", "CPU / run",
                            "params"], rows), ""]
    out += ["Published rows (the dataset's benchmark table):", "",
            markdown_table(["method", "test top-1 %", "preprocessing", "source"],
                           [[p["method"], f"{p['top1']:.1f}", p["note"], p["source"]] for p in result["published"]]), ""]
    a = result.get("agreement")
    if a:
        out += [f"Deployment agreement on all {a['images']:,} test images ({a['checkpoint']}"
                f"{', EMA weights' if a['ema'] else ''}; OpenVINO {a['openvino']}):", "",
                markdown_table(["runtime", "test top-1 %", "top-1 disagreements with eager", "largest abs. logit difference"],
                               [[r["runtime"], f"{r['top1']:.2f}", r["disagreements"], f"{r['max_logit_diff']:.2e}"]
                                for r in a["runtimes"]]), "",
                "Per-class accuracy of the eager model:", "",
                markdown_table(["class", "test images", "top-1 %"],
                               [[p["cls"], p["images"], f"{p['top1']:.2f}"] for p in a["per_class"]]), ""]
        if result.get("figure"):
            out.append(f"Confusion matrix: `{result['figure']}`.")
    return "\n".join(out).rstrip() + "\n"


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"the IDX folder [{DEFAULT_DATA}]")
    p.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs" / "fashion-mnist-bench",
                   help="where the training runs are (written unless --skip-training)")
    p.add_argument("--recipes", nargs="+", default=["quick"], choices=tuple(RECIPE_NAMES))
    p.add_argument("--models", type=lambda t: [m for m in t.split(",") if m], default=["unireplknet_a", "resnet18"],
                   help="comma list: UniRepLKNet variants and timm peers [unireplknet_a,resnet18]")
    p.add_argument("--seeds-quick", type=_ints, default=[0, 1, 2])
    p.add_argument("--seeds-long", type=_ints, default=[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads of each training run [2]")
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                   help="further `unireplknet train` flags for every run (last on the line)")
    p.add_argument("--skip-training", action="store_true", help="read existing runs only")
    p.add_argument("--skip-classical", action="store_true")
    p.add_argument("--classical-subsample", type=int, default=0,
                   help="train the logistic regression on this many images (0: all 60,000)")
    p.add_argument("--agreement-run", type=Path, default=None,
                   help="run folder whose best.pth the deployment check uses [the first UniRepLKNet run found]")
    p.add_argument("--agreement-ema", action="store_true", help="check the EMA weights of that checkpoint")
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "fashion_mnist",
                   help="results stem: writes STEM.json and STEM.md")
    p.add_argument("--figure", type=Path, default=REPO_ROOT / "docs" / "img" / "fashion_mnist_confusion.png")
    p.add_argument("--doc", default=str(REPO_ROOT / "docs" / "fashion_mnist.md"),
                   help="the page whose '## Results' section gets the tables ('' = none) [docs/fashion_mnist.md]")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if not (args.data / "train-images-idx3-ubyte.gz").is_file() and not (args.data / "train-images-idx3-ubyte").is_file():
        raise SystemExit(f"{args.data} holds no IDX files; apt-get install dataset-fashion-mnist, or pass --data DIR")
    # The description's thread count is this process's; the training runs are subprocesses with --threads.
    machine = f"{machine_description()}; training runs at {args.threads} torch thread(s)"
    result: Dict[str, Any] = dict(machine=machine, data=str(args.data), training=training_rows(args),
                                  published=published_rows(), classical=None, agreement=None, figure=None)
    if not args.skip_classical:
        print("logistic regression …", file=sys.stderr)
        result["classical"] = classical_row(args.data, args.classical_subsample)
    if not args.skip_agreement:
        run = args.agreement_run
        if run is None:
            candidates = [x["run"] for recipe in ("long", "quick") for r in result["training"]
                          if r["recipe"] == recipe and r["method"].startswith(("unireplknet", "custom"))
                          for x in r["runs"]]
            run = Path(candidates[0]) if candidates else None
        if run is not None:
            print(f"deployment agreement of {run} …", file=sys.stderr)
            result["agreement"] = agreement(run, args.data, run / "agreement", use_ema=args.agreement_ema)
            confusion_figure(result["agreement"], args.figure)
            result["figure"] = str(args.figure.relative_to(REPO_ROOT) if args.figure.is_relative_to(REPO_ROOT)
                                   else args.figure)
    write_text_atomic(args.results.with_suffix(".json"), json.dumps(result, indent=2))
    write_text_atomic(args.results.with_suffix(".md"), markdown(result))
    if args.doc:
        body = markdown(result)
        if result["figure"]:
            import os

            body += (f"\n![Confusion matrix of {Path(result['agreement']['checkpoint']).parent.name} on the test set]"
                     f"({os.path.relpath(args.figure, Path(args.doc).resolve().parent)})\n")
        replace_doc_section(Path(args.doc), RESULTS_HEADING, body)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()

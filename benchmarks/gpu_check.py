"""The GPU half of the project in one call: everything a CUDA machine should check, in one markdown report.

On a CUDA machine (``python benchmarks/gpu_check.py --output gpu_report.md``, about 8 minutes) it runs, each
section on its own (a failing section is reported with its error and the next one runs):

1. ``environment``: GPU, driver, torch, Triton;
2. ``triton-tests``: ``pytest tests/test_ops_triton.py`` (the Triton depthwise kernels against ``F.conv2d``);
3. ``dwconv-table``: ``benchmarks/bench_dwconv.py --device cuda --write-table`` (the measured Triton-vs-cuDNN
   dispatch table, written next to the report as ``gpu_table.json``: copy it over
   ``src/unireplknet/ops/gpu_table.json`` after review);
4. ``fused-vs-plain``: the CUDA cases of ``tests/test_fast.py::test_fused_model_equals_plain_model_where_it_runs``;
5. ``throughput``: UniRepLKNet-A/T/S img/s at batch 1, 64, 128 in fp32, bf16 and fp16 (autocast, channels_last)
   beside timm's ConvNeXt of each size and Swin-T, with the paper's A100 anchors;
6. ``training-step``: img/s of a UniRepLKNet-T training step (bf16 autocast) beside ConvNeXt-T;
7. ``tasks``: one tiny epoch of every task's training command on the GPU.

A time budget (``--budget-seconds``, 480) guards the whole: a section that would start with less time left than
it needs is reported as skipped, subprocesses are killed at the budget, and the throughput loops stop early.

``--quick`` is the same script on the CPU in seconds (tiny inputs, one batch each, the pytest sections only
collected, the task commands parsed and the image task run): ``tests/test_gpu_check.py`` runs it in the default
test suite, so the script cannot rot before a GPU is available.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]

#: The paper's A100 throughput table (img/s, batch 128, fp16? see the paper's Table 5; 224²), the anchors
#: the measured numbers are read against.
PAPER_A100 = {"unireplknet_t": 1804, "unireplknet_s": 1265, "convnext_small": 1182}

SIZES = {
    "a": dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    "t": dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640)),
    "s": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
}
PEERS = {"a": ["convnext_atto"], "t": ["convnext_tiny", "swin_tiny_patch4_window7_224"], "s": ["convnext_small"]}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: A tiny UniRepLKNet for the task epochs (the test suites' own).
TINY = json.dumps(dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], kernel_sizes=[[3], [7], [3], [3]]))
COMMON = ["--epochs", "1", "--batch-size", "4", "--no-progress"]
#: One tiny epoch of every task: the command line and its options (``--output`` and ``--device`` are added).
TASKS: Dict[str, List[str]] = {
    "image": ["train", "--data", "{digits}", "--model", "custom", "--model-kwargs", TINY, "--input-size", "32", "--in-chans", "1",
              "--workers", "0", "--warmup-epochs", "0", "--no-onnx", "--no-tensorboard", *COMMON],
    "audio": ["audio-train", "--model-kwargs", TINY, "--no-onnx", "--no-tensorboard", *COMMON],
    "forecast": ["forecast-train", "--no-onnx", "--no-tensorboard", *COMMON],
    "video": ["video-train", "--num-frames", "4", "--input-size", "16", "--clips-per-class", "1",
              "--model-kwargs", TINY, *COMMON],
    "points": ["points-train", "--num-points", "64", "--image-size", "32", "--num-views", "2",
               "--shapes-per-class", "1", "--test-rotations", "2", "--model-kwargs", TINY, *COMMON],
    "detection": ["det-train", "--model-kwargs", TINY, "--scenes-train", "2", "--scenes-val", "2", "--no-onnx",
                  *COMMON],
    "segmentation": ["seg-train", "--model-kwargs", TINY, "--scenes-train", "2", "--scenes-val", "2", "--no-onnx",
                     *COMMON],
}


class Section:
    """One section's outcome (a plain class: the tests load this script by path, where dataclasses fail)."""

    def __init__(self, name: str):
        self.name = name
        self.status = "not run"  # ok / failed / skipped
        self.seconds = 0.0
        self.lines: List[str] = []
        self.error = ""


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


# ------------------------------------------------------------------------------------------ helpers
def run_subprocess(argv: List[str], budget: Budget, section: Section) -> None:
    """Run ``argv`` from the repository root (with this checkout's ``src`` first on the path), killed at the
    budget; its last lines go into the report; a non-zero exit fails the section."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=max(1.0, budget.left()))
    except subprocess.TimeoutExpired as err:
        raise TimeoutError(f"{' '.join(argv[1:])} ran past the time budget") from err
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    section.lines += ["```", f"$ {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv))}",
                      *tail, "```"]
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def images_per_second(step: Callable[[], None], batch: int, device: str, budget: Budget, warmup: int,
                      min_seconds: float) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        if time.perf_counter() - start >= min_seconds or budget.left() < 5:
            sync(device)
            if time.perf_counter() - start >= min_seconds or budget.left() < 5:
                break
    return batch * calls / (time.perf_counter() - start)


def build(name: str, size: Optional[str]) -> torch.nn.Module:
    if size is not None:
        from unireplknet import UniRepLKNet

        return UniRepLKNet(**SIZES[size], num_classes=1000)
    import timm

    return timm.create_model(name, pretrained=False)


# ------------------------------------------------------------------------------------------ sections
def section_environment(args, budget: Budget, section: Section) -> None:
    section.lines.append(f"- torch {torch.__version__}, Python {platform.python_version()}, device `{args.device}`")
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        section.lines.append(f"- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                             f"compute capability {props.major}.{props.minor}, CUDA {torch.version.cuda}")
    try:
        import triton

        section.lines.append(f"- Triton {triton.__version__}")
    except ImportError:
        section.lines.append("- Triton not installed")


def section_triton_tests(args, budget: Budget, section: Section) -> None:
    extra = ["--collect-only"] if args.quick else []
    run_subprocess([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ops_triton.py",
                    *extra], budget, section)


def section_dwconv_table(args, budget: Budget, section: Section) -> None:
    argv = [sys.executable, "benchmarks/bench_dwconv.py", "--device", args.device]
    if args.quick:
        argv += ["--variants", "A", "--batches", "1", "--reps", "1", "--threads", "1"]
    else:
        argv += ["--write-table", str(args.output.with_name("gpu_table.json"))]
    run_subprocess(argv, budget, section)


def section_fused_vs_plain(args, budget: Budget, section: Section) -> None:
    # the test is parametrized over the devices present: its CUDA cases on a GPU, its CPU ones collected in --quick
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/test_fast.py::test_fused_model_equals_plain_model_where_it_runs", "-k", args.device]
    run_subprocess(argv + (["--collect-only"] if args.quick else []), budget, section)


def section_throughput(args, budget: Budget, section: Section) -> None:
    device = args.device
    precisions = ["fp32", "bf16"] if args.quick else list(PRECISIONS)
    section.lines += [f"Input {args.image_size}², channels_last, eval mode, `torch.inference_mode`, autocast for "
                      "bf16/fp16 (fp32: TF32 off, PyTorch's default). Paper anchors (A100, img/s): "
                      + ", ".join(f"{k} {v}" for k, v in PAPER_A100.items()) + ".", "",
                      "| model | batch | " + " | ".join(f"{p} img/s" for p in precisions) + " |",
                      "|---|---:|" + "---:|" * len(precisions)]
    for size in args.sizes:
        for name, own in [(f"unireplknet_{size}", size)] + [(p, None) for p in PEERS[size]]:
            if args.quick and own is None and name != PEERS[size][0]:
                continue
            model = build(name, own).eval().to(device, memory_format=torch.channels_last)
            if own is not None:
                from unireplknet.model import reparameterize

                reparameterize(model)
            for batch in args.throughput_batches:
                if budget.left() < 20:
                    section.lines.append(f"| {name} | {batch} | stopped: time budget |")
                    continue
                x = torch.randn(batch, 3, args.image_size, args.image_size, device=device
                                ).contiguous(memory_format=torch.channels_last)
                cells = []
                for precision in precisions:
                    dtype = PRECISIONS[precision]

                    def step() -> None:
                        with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32,
                                                                    enabled=dtype is not None):
                            model(x)

                    try:
                        cells.append(f"{images_per_second(step, batch, device, budget, args.warmup, args.min_seconds):.0f}")
                    except Exception as err:  # one precision failing (e.g. fp16 on a CPU) leaves the others
                        cells.append(f"failed: {type(err).__name__}")
                section.lines.append(f"| {name} | {batch} | " + " | ".join(cells) + " |")
            del model
            if device == "cuda":
                torch.cuda.empty_cache()


def section_training_step(args, budget: Budget, section: Section) -> None:
    device = args.device
    size = "a" if args.quick else "t"
    batch = args.train_batch
    section.lines += [f"Training step (forward, backward, AdamW step) at batch {batch}, {args.image_size}², "
                      "channels_last, bf16 autocast:", "", "| model | img/s |", "|---|---:|"]
    for name, own in ((f"unireplknet_{size}", size), (PEERS[size][0], None)):
        model = build(name, own).train().to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(batch, 3, args.image_size, args.image_size, device=device
                        ).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (batch,), device=device)

        def step() -> None:
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        rate = images_per_second(step, batch, device, budget, args.warmup, args.min_seconds)
        section.lines.append(f"| {name} | {rate:.1f} |")
        del model, optimizer


def section_tasks(args, budget: Budget, section: Section) -> None:
    from unireplknet.cli import build_parser, main

    parser = build_parser()
    failed = []
    section.lines += ["| task | command | result | seconds |", "|---|---|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        from unireplknet.data import write_digits_image_folder

        digits = write_digits_image_folder(Path(tmp) / "digits", "all", limit_per_class=4)  # 40 images
        for task, argv in TASKS.items():
            argv = [a.replace("{digits}", str(digits)) for a in argv]
            full = [*argv, "--output", str(Path(tmp) / task), "--device", args.device]
            run_it = not args.quick or task == "image"
            if budget.left() < 30:
                section.lines.append(f"| {task} | `{argv[0]}` | skipped: time budget | |")
                continue
            start = time.perf_counter()
            held = io.StringIO()
            try:
                if run_it:
                    with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
                        code = main(full)
                    result = "ok" if code == 0 else f"exit {code}: {held.getvalue().strip().splitlines()[-1:]}"
                else:
                    parser.parse_args(full)  # --quick: the options still exist
                    result = "options parsed (--quick)"
            except SystemExit as err:
                result = f"bad options (exit {err.code}): {held.getvalue().strip().splitlines()[-1:]}"
            except Exception as err:
                result = f"{type(err).__name__}: {err}"
            if not (result == "ok" or result.startswith("options parsed")):
                failed.append(task)
            section.lines.append(f"| {task} | `{argv[0]}` | {result} | {time.perf_counter() - start:.1f} |")
    if failed:
        raise RuntimeError(f"tasks failed: {', '.join(failed)}")


#: name → (function, seconds it needs at least to start)
SECTIONS: Dict[str, tuple] = {
    "environment": (section_environment, 0),
    "triton-tests": (section_triton_tests, 20),
    "dwconv-table": (section_dwconv_table, 60),
    "fused-vs-plain": (section_fused_vs_plain, 15),
    "throughput": (section_throughput, 60),
    "training-step": (section_training_step, 20),
    "tasks": (section_tasks, 30),
}


# ------------------------------------------------------------------------------------------ main
def render(args, sections: List[Section], started: str, wall: float) -> str:
    out = [f"# GPU check ({'quick CPU mode' if args.quick else args.device})", "",
           f"{started}; {wall:.0f} s of a {args.budget_seconds:.0f} s budget; command "
           f"`benchmarks/gpu_check.py {' '.join(args.argv)}`.", "",
           "| section | status | seconds |", "|---|---|---:|"]
    out += [f"| {s.name} | {s.status} | {s.seconds:.1f} |" for s in sections]
    for s in sections:
        out += ["", f"## {s.name}: {s.status}", ""] + s.lines
        if s.error:
            out += ["", "```", s.error.strip(), "```"]
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU, tiny sizes, one batch each: seconds")
    parser.add_argument("--output", "-o", type=Path, default=Path("gpu_check.md"), help="the markdown report")
    parser.add_argument("--budget-seconds", type=float, default=None, help="the whole run's time limit (480)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of the sections")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    unknown = [s for s in args.sections.split(",") if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if args.quick:
        args.device, args.sizes, args.throughput_batches = "cpu", ["a"], [1]
        args.image_size, args.train_batch, args.warmup, args.min_seconds = 32, 2, 0, 0.0
        args.budget_seconds = args.budget_seconds or 120.0
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device here: run on a GPU machine, or use --quick for the CPU check of the script")
        args.device, args.sizes, args.throughput_batches = "cuda", ["a", "t", "s"], [1, 64, 128]
        args.image_size, args.train_batch, args.warmup, args.min_seconds = 224, 64, 3, 1.0
        args.budget_seconds = args.budget_seconds or 480.0
    budget = Budget(args.budget_seconds)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    sections: List[Section] = []
    for name in args.sections.split(","):
        function, needs = SECTIONS[name]
        section = Section(name)
        sections.append(section)
        if budget.left() < (0 if args.quick else needs):
            section.status = f"skipped: {budget.left():.0f} s left of the budget, needs {needs} s"
            continue
        t0 = time.perf_counter()
        try:
            function(args, budget, section)
            section.status = "ok"
        except Exception:
            section.status = "failed"
            section.error = traceback.format_exc(limit=4)
        section.seconds = time.perf_counter() - t0
        print(f"{name}: {section.status} ({section.seconds:.1f} s)", flush=True)
    report = render(args, sections, started, time.perf_counter() - start)
    args.output.write_text(report)
    print(f"wrote {args.output}")
    return 0 if all(s.status == "ok" for s in sections) else 1


if __name__ == "__main__":
    sys.exit(main())

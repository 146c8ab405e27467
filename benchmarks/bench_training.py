"""Whole-model CPU speed: training step of UniRepLKNet-T and deploy inference of A, T, S, vs the official-style path.

``official-style NCHW eager`` is what the official code does on a CPU: NCHW tensors, every depthwise conv a
plain ``F.conv2d`` with PyTorch's backward (``impl='torch'``), the module-by-module block forward
(``unireplknet.fast`` off). ``unireplknet default`` is this library as a user gets it: automatic depthwise
dispatch (:mod:`unireplknet.ops`), the fused deploy block forward, NCHW input. ``unireplknet channels_last``
is the same with model and input converted to channels_last (``model.to(memory_format=torch.channels_last)``).
timm's ConvNeXt of similar MACs runs as an outside reference (ConvNeXt-T for T's training step;
ConvNeXt-Atto / -T / -S for inference of A / T / S), NCHW eager, as timm builds it.

Training step = forward, cross-entropy, backward (no optimizer update), train-structure model in train mode.
Inference = the re-parameterized (deploy) model in eval mode under ``torch.inference_mode``.

    python benchmarks/bench_training.py                       # ≈ 8-10 min on 2 cores
    python benchmarks/bench_training.py --update-docs         # also write the tables into docs/performance.md
    python benchmarks/bench_training.py --skip-inference --train-batch 4   # quick look
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO_ROOT,
    VARIANTS,
    interleaved_medians,
    machine_description,
    markdown_table,
    set_clock,
)

import unireplknet.ops as ops  # noqa: E402
from unireplknet import UniRepLKNet, fast, reparameterize  # noqa: E402

CL = torch.channels_last
BASELINE = "official-style NCHW eager"
OURS = "unireplknet default"
OURS_CL = "unireplknet channels_last"
CONVNEXT_FOR = {"A": "convnext_atto", "T": "convnext_tiny", "S": "convnext_small"}
#: Label of the timm ConvNeXt reference column (which ConvNeXt is named in the table's "reference" column).
CONVNEXT = "timm ConvNeXt (NCHW)"


@contextlib.contextmanager
def path_settings(official_style: bool) -> Iterator[None]:
    """Switch the library between the official-style path and its defaults for the duration of a call."""
    previous_fused = fast.fused_enabled()
    ops.set_default_impl("torch" if official_style else None)
    fast.set_fused(not official_style)
    try:
        yield
    finally:
        ops.set_default_impl(None)
        fast.set_fused(previous_fused)


def _build(variant: str, deploy: bool) -> torch.nn.Module:
    depths, dims = VARIANTS[variant]
    torch.manual_seed(0)
    model = UniRepLKNet(depths=depths, dims=dims, num_classes=1000)
    if deploy:
        model.eval()
        reparameterize(model)
    return model


def _convnext(name: str) -> Optional[torch.nn.Module]:
    try:
        import timm

        return timm.create_model(name, pretrained=False)
    except Exception:  # timm missing or model unknown: the reference row is simply left out
        return None


def training_runners(batch: int, image: int, convnext: bool) -> Dict[str, Callable[[], None]]:
    model = _build("T", deploy=False).train()
    model_cl = _build("T", deploy=False).train().to(memory_format=CL)
    x = torch.randn(batch, 3, image, image)
    x_cl = x.contiguous(memory_format=CL)
    target = torch.randint(0, 1000, (batch,))

    def step(m: torch.nn.Module, inp: torch.Tensor, official_style: bool) -> None:
        with path_settings(official_style):
            m.zero_grad(set_to_none=True)
            F.cross_entropy(m(inp), target).backward()

    runners = {
        BASELINE: lambda: step(model, x, True),
        OURS: lambda: step(model, x, False),
        OURS_CL: lambda: step(model_cl, x_cl, False),
    }
    ref = _convnext("convnext_tiny") if convnext else None
    if ref is not None:
        ref.train()
        runners[CONVNEXT] = lambda: step(ref, x, True)
    return runners


def inference_runners(variant: str, batch: int, image: int, convnext: bool) -> Dict[str, Callable[[], None]]:
    model = _build(variant, deploy=True)
    model_cl = _build(variant, deploy=True).to(memory_format=CL)
    x = torch.randn(batch, 3, image, image)
    x_cl = x.contiguous(memory_format=CL)

    def run(m: torch.nn.Module, inp: torch.Tensor, official_style: bool) -> None:
        with path_settings(official_style), torch.inference_mode():
            m(inp)

    runners = {
        BASELINE: lambda: run(model, x, True),
        OURS: lambda: run(model, x, False),
        OURS_CL: lambda: run(model_cl, x_cl, False),
    }
    name = CONVNEXT_FOR.get(variant)
    ref = _convnext(name) if (convnext and name) else None
    if ref is not None:
        ref.eval()
        runners[CONVNEXT] = lambda: run(ref, x, True)
    return runners


def _rows(results: List[Dict[str, object]], kind: str) -> str:
    labels: List[str] = []
    for r in results:
        for lab in r["ms"]:  # type: ignore[union-attr]
            if lab not in labels:
                labels.append(lab)
    rows = []
    for r in results:
        ms: Dict[str, float] = r["ms"]  # type: ignore[assignment]
        base = ms[BASELINE]
        row = [r["variant"], r["batch"], r.get("reference", "–")]
        row += [f"{ms[lab]:.0f} ({base / ms[lab]:.2f}×)" if lab in ms else "–" for lab in labels]
        row += [f"{r['batch'] * 1000 / min(ms[OURS], ms[OURS_CL]):.1f}"]
        rows.append(row)
    header = ["variant", "batch", "ConvNeXt of similar MACs"] + [f"{lab} ms (speedup)" for lab in labels] + [f"best ours {kind}/s"]
    return markdown_table(header, rows)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-reps", type=int, default=3)
    parser.add_argument("--infer-variants", default="A,T,S")
    parser.add_argument("--infer-batches", default="1,16")
    parser.add_argument("--infer-reps", type=int, default=5)
    parser.add_argument("--no-convnext", action="store_true", help="leave out the timm ConvNeXt reference rows")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--update-docs", action="store_true", help="write the tables into docs/performance.md")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--timer", default="wall", choices=["wall", "cpu"],
                        help="wall clock, or this process's CPU time (robust on a shared machine; use with --threads 1)")
    parser.add_argument("--json", metavar="FILE", help="write the measurements as JSON")
    parser.add_argument("--from-json", metavar="FILE", help="re-render a previous run's JSON instead of measuring")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_clock(args.timer)
    convnext = not args.no_convnext
    train_results: List[Dict[str, object]] = []
    infer_results: List[Dict[str, object]] = []
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        machine, train_results, infer_results = saved["machine"], saved["training"], saved["inference"]
        for r in train_results + infer_results:  # older files: timm column named after the model
            for key in [k for k in r["ms"] if k.startswith("timm ") and k != CONVNEXT]:
                r["reference"] = key.split()[1]
                r["ms"][CONVNEXT] = r["ms"].pop(key)
        args.skip_training = args.skip_inference = True
    else:
        machine = machine_description()
    print(f"# {machine}", flush=True)

    if not args.skip_training:
        runners = training_runners(args.train_batch, args.image, convnext)
        ms = interleaved_medians(runners, args.train_reps)
        train_results.append(dict(variant="T", batch=args.train_batch, ms=ms, reference="convnext_tiny"))
        print(json.dumps(train_results[-1]), flush=True)

    if not args.skip_inference:
        for variant in [v.strip().upper() for v in args.infer_variants.split(",") if v.strip()]:
            for batch in [int(b) for b in args.infer_batches.split(",")]:
                runners = inference_runners(variant, batch, args.image, convnext)
                reps = args.infer_reps if batch == 1 else max(2, args.infer_reps // 2)
                ms = interleaved_medians(runners, reps)
                infer_results.append(dict(variant=variant, batch=batch, ms=ms, reference=CONVNEXT_FOR.get(variant, "–")))
                print(json.dumps(infer_results[-1]), flush=True)

    parts = [
        f"Command: `python benchmarks/bench_training.py --train-batch {args.train_batch} --image {args.image} "
        f"--threads {args.threads} --timer {args.timer}`\n",
        f"Machine: {machine}. Medians of interleaved repetitions, ms per call ({'wall clock' if args.timer == 'wall' else 'process CPU time'}); speedup over `{BASELINE}` in brackets.\n",
    ]
    if train_results:
        parts.append(f"Training step (forward + cross-entropy + backward) of UniRepLKNet-T, {args.image}²:\n")
        parts.append(_rows(train_results, "img") + "\n")
    if infer_results:
        parts.append(f"Deploy-structure inference, {args.image}², `torch.inference_mode`:\n")
        parts.append(_rows(infer_results, "img") + "\n")
    body = "\n".join(parts)
    print("\n" + body)
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps(dict(machine=machine, training=train_results, inference=infer_results), indent=1))
    if args.update_docs:
        from bench_dwconv import _write_marked_block

        _write_marked_block(REPO_ROOT / "docs" / "performance.md", "bench_training cpu", body)


if __name__ == "__main__":
    main()

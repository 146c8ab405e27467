"""Whole-model CPU inference: UniRepLKNet-A/T/S against ConvNeXt (V1, V2), Swin-T and ResNet-50.

Every model runs in eval mode, with random weights, channels_last, 224×224, under torch.inference_mode,
at batch 1 and 16. For each UniRepLKNet size the run compares, side by side:

* ``official``  — the official code's forward in channels_last: the module-by-module deploy block, the
  stem/down-sampling LayerNorms written as element-wise ops and every depthwise conv a plain ``F.conv2d``
  (``unireplknet.ops`` forced to ``torch``) — what AILab-CVC/UniRepLKNet runs;
* ``plain``     — this package's module-by-module forward (``UNIREPLKNET_FUSED=0``; fused LayerNorm);
* ``fused``     — this package's default eager forward (:mod:`unireplknet.fast`);
* ``compile``   — :func:`unireplknet.deploy.deploy_model` with ``backend="compile"`` (``--compile``);
* ``onnxruntime`` / ``openvino`` — ``deploy_model`` with those backends, when installed;

and the timm models of similar multiply-accumulates. Timing is interleaved: each round times every
variant of a group once, so a change in machine load hits all of them alike; the table reports medians.
Throughput is also given as achieved GFLOP/s (2 × conv/linear MACs per image × img/s, MACs counted by
torch.utils.flop_counter) against the machine's measured fp32 matmul rate (the "roof").

Usage::

    python benchmarks/bench_cpu_inference.py                 # the full run (≈ 10 min on 2 cores)
    python benchmarks/bench_cpu_inference.py --sizes a --batches 1 --rounds 2   # a quick look
    python benchmarks/bench_cpu_inference.py --markdown out.md --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

import timm
from torch.utils.flop_counter import FlopCounterMode

from unireplknet import UniRepLKNet, fast, ops
from unireplknet.deploy import available_backends, deploy_model
from unireplknet.model import LayerNorm

SIZES = {
    "a": dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    "t": dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640)),
    "s": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
}
#: timm models of similar MACs (ConvNeXt V2 has no ~9 GMAC "small").
PEERS = {
    "a": ["convnext_atto", "convnextv2_atto"],
    "t": ["convnext_tiny", "convnextv2_tiny", "swin_tiny_patch4_window7_224", "resnet50"],
    "s": ["convnext_small"],
}
#: The ConvNeXt each size's target is stated against.
TARGET_PEER = {"a": "convnext_atto", "t": "convnext_tiny", "s": "convnext_small"}


# ------------------------------------------------------------------------------------------ machine
def machine_description() -> Dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


ROOF = "matmul roof"
ROOF_SIZE = 2048


def matmul_roof(size: int = ROOF_SIZE, repeats: int = 7) -> float:
    """The machine's fp32 matmul rate in GFLOP/s: the median of ``repeats`` (size × size) @ (size × size)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def gmacs(model: torch.nn.Module, in_chans: int = 3) -> float:
    """Multiply-accumulates per 224×224 image (conv, linear and matmul ops), in G."""
    previous = fast.set_fused(False)  # the counter knows aten ops, not oneDNN's fused inner product
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, in_chans, 224, 224))
    finally:
        fast.set_fused(previous)
    return counter.get_total_flops() / 2e9


# ------------------------------------------------------------------------------------------ variants
def _official_layer_norm(self: LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """The official code's LayerNorm: channels_first written as five element-wise ops, whatever the layout."""
    if self.data_format == "channels_last":
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + self.eps)
    return self.weight[:, None, None] * x + self.bias[:, None, None]


@contextlib.contextmanager
def official_style():
    """The official code's forward: no fused block, its LayerNorm, every depthwise conv a plain F.conv2d."""
    previous = fast.set_fused(False)
    ops.set_default_impl("torch")
    original = LayerNorm.forward
    LayerNorm.forward = _official_layer_norm
    try:
        yield
    finally:
        LayerNorm.forward = original
        ops.set_default_impl(None)  # this script never sets one itself
        fast.set_fused(previous)


def eager_runner(model: torch.nn.Module, fused: bool, official: bool = False) -> Callable:
    def run(x: torch.Tensor) -> torch.Tensor:
        context = official_style() if official else contextlib.nullcontext()
        with context, torch.inference_mode():
            previous = fast.set_fused(fused and not official)
            try:
                return model(x)
            finally:
                fast.set_fused(previous)

    return run


def timm_runner(name: str) -> Tuple[Callable, torch.nn.Module]:
    model = timm.create_model(name, pretrained=False).eval().to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return run, model


# ------------------------------------------------------------------------------------------ timing
def time_group(
    runners: Dict[str, Callable], x: torch.Tensor, rounds: int, min_seconds: float
) -> Dict[str, float]:
    """Median seconds per call of every runner, timed round-robin (one sample per runner per round)."""
    calls: Dict[str, int] = {}
    for name, run in runners.items():  # warm up; pick calls per sample so a sample lasts ≥ min_seconds
        run(x)
        start = time.perf_counter()
        run(x)
        calls[name] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-6) + 0.999))
    samples: Dict[str, List[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                run(x)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


# ------------------------------------------------------------------------------------------ main
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="a,t,s", help="UniRepLKNet sizes, comma-separated (a,t,s)")
    parser.add_argument("--batches", default="1,16", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per group (median taken)")
    parser.add_argument("--min-seconds", type=float, default=0.3, help="least duration of one sample")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    parser.add_argument("--no-peers", action="store_true", help="skip the timm models")
    parser.add_argument("--markdown", help="write the result tables (markdown) to this file")
    parser.add_argument("--json", help="write the raw results to this file")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {sorted(SIZES)}")
    backends = [b for b in available_backends() if b in ("onnxruntime", "openvino")]
    if args.compile:
        backends.insert(0, "compile")

    machine = machine_description()
    started = time.perf_counter()
    roof = matmul_roof()
    print(f"machine: {machine}", flush=True)
    print(f"fp32 matmul roof (alone, at start): {roof:.1f} GFLOP/s", flush=True)
    roofs: Dict[Tuple[str, int], float] = {}

    results = []
    for size in sizes:
        model = UniRepLKNet(**SIZES[size], deploy=True).eval().to(memory_format=torch.channels_last)
        with torch.no_grad():  # non-trivial GRN gamma (zero at init would make GRN a no-op)
            for block in model.modules():
                if hasattr(block, "gamma") and block.__class__.__name__ == "GRNwithNHWC":
                    block.gamma.normal_(0.0, 0.1)
        macs = {f"unireplknet_{size}": gmacs(model)}
        runners: Dict[str, Callable] = {
            "official": eager_runner(model, fused=False, official=True),
            "plain": eager_runner(model, fused=False),
            "fused": eager_runner(model, fused=True),
        }
        example = torch.randn(1, 3, 224, 224)
        for backend in backends:
            build = time.perf_counter()
            deployed = deploy_model(model, backend, example_input=example)
            runners[backend] = deployed
            print(f"  built {size}/{backend} in {time.perf_counter() - build:.1f}s "
                  f"(max rel err {deployed.max_rel_error:.1e})", flush=True)
        peers = [] if args.no_peers else PEERS[size]
        for name in peers:
            runners[name], peer_model = timm_runner(name)
            macs[name] = gmacs(peer_model)
        roof_a, roof_b, roof_out = (torch.randn(ROOF_SIZE, ROOF_SIZE) for _ in range(3))
        runners[ROOF] = lambda x: torch.mm(roof_a, roof_b, out=roof_out)
        for batch in batches:
            x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            seconds = time_group(runners, x, args.rounds, args.min_seconds)
            # the roof timed in the same rounds as the models, so it saw the same machine load
            roof = 2 * ROOF_SIZE**3 / seconds.pop(ROOF) / 1e9
            roofs[(size, batch)] = roof
            for name, sec in seconds.items():
                model_name = name if name in macs else f"unireplknet_{size}"
                img_s = batch / sec
                gflops = 2 * macs[model_name] * img_s
                results.append(dict(size=size, batch=batch, variant=name, model=model_name, ms=sec * 1e3,
                                    img_s=img_s, gmacs=macs[model_name], gflops=gflops, roof=gflops / roof,
                                    roof_gflops=roof))
            print(format_group(results, size, batch), flush=True)
            print(f"  [{time.perf_counter() - started:.0f}s elapsed]", flush=True)

    machine["load_average_at_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    machine["wall_seconds"] = f"{time.perf_counter() - started:.0f}"
    report = render_markdown(machine, roof, results, sizes, batches, " ".join(sys.argv))
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(machine=machine, roof_gflops_at_start=roof, results=results), fh, indent=1)
    return 0


def format_group(results: List[dict], size: str, batch: int) -> str:
    rows = [r for r in results if r["size"] == size and r["batch"] == batch]
    by = {r["variant"]: r for r in rows}
    lines = [f"UniRepLKNet-{size.upper()} batch {batch} (roof {rows[0]['roof_gflops']:.0f} GFLOP/s):"]
    for r in rows:
        lines.append(f"  {r['variant']:<32} {r['ms']:9.1f} ms {r['img_s']:8.1f} img/s "
                     f"{r['gflops']:7.1f} GFLOP/s ({100 * r['roof']:4.0f}% roof)"
                     f"  x{by['official']['ms'] / r['ms']:.2f} vs official")
    return "\n".join(lines)


def render_markdown(machine: Dict[str, str], roof: float, results: List[dict], sizes: List[str],
                    batches: List[int], command: str) -> str:
    out = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), timm {machine['timm']}, Python {machine['python']}; "
        f"{machine['date']}; load average {machine['load_average_at_start']} at start, "
        f"{machine['load_average_at_end']} at end (the machine was shared); {machine['wall_seconds']} s wall.",
        f"Command: `{command}`.",
        f"fp32 matmul roof ({ROOF_SIZE}² × {ROOF_SIZE}² `torch.mm`): {roof:.0f} GFLOP/s measured alone at the "
        "start; each table's roof is re-measured in the same interleaved rounds as its models (below), and "
        "'% roof' is against that.",
        "",
    ]
    for size in sizes:
        for batch in batches:
            rows = [r for r in results if r["size"] == size and r["batch"] == batch]
            if not rows:
                continue
            by = {r["variant"]: r for r in rows}
            peer = by.get(TARGET_PEER[size])
            out.append(f"**UniRepLKNet-{size.upper()}, batch {batch}** "
                       f"({rows[0]['gmacs']:.2f} GMACs/img; matmul roof in these rounds "
                       f"{rows[0]['roof_gflops']:.0f} GFLOP/s)")
            out.append("")
            head = "| variant | GMACs | ms/batch | img/s | GFLOP/s | % roof | × official |"
            sep = "|---|---:|---:|---:|---:|---:|---:|"
            if peer:
                head += f" × {TARGET_PEER[size]} |"
                sep += "---:|"
            out += [head, sep]
            for r in rows:
                line = (f"| {r['variant']} | {r['gmacs']:.2f} | {r['ms']:.1f} | {r['img_s']:.2f} | "
                        f"{r['gflops']:.1f} | {100 * r['roof']:.0f}% | {by['official']['ms'] / r['ms']:.2f} |")
                if peer:
                    line += f" {peer['ms'] / r['ms']:.2f} |"
                out.append(line)
            out.append("")
    out += render_targets(results, sizes, batches)
    return "\n".join(out)


PACKAGE_PATHS = ("fused", "compile", "onnxruntime", "openvino")


def render_targets(results: List[dict], sizes: List[str], batches: List[int]) -> List[str]:
    """The issue's targets, met or missed, from the rows of one run."""
    out = ["**Targets** (issue 8; ratios from the same interleaved rounds):", "",
           "| target | measured | met? |", "|---|---:|---|"]
    for size in sizes:
        for batch in batches:
            by = {r["variant"]: r for r in results if r["size"] == size and r["batch"] == batch}
            if not by:
                continue
            tag = f"{size.upper()}, batch {batch}"
            ratio = by["official"]["ms"] / by["fused"]["ms"]
            out.append(f"| {tag}: eager (fused) ≥ 1.25× official | {ratio:.2f}× | {'met' if ratio >= 1.25 else 'missed'} |")
            paths = [by[p] for p in PACKAGE_PATHS if p in by]
            best = min(paths, key=lambda r: r["ms"])
            peer = by.get(TARGET_PEER[size])
            if peer is not None:
                ratio = peer["ms"] / best["ms"]
                out.append(f"| {tag}: fastest path ({best['variant']}) ≥ 1.0× {peer['variant']} | {ratio:.2f}× | "
                           f"{'met' if ratio >= 1.0 else 'missed'} |")
            out.append(f"| {tag}: fastest path ({best['variant']}) ≥ 80% of matmul roof | {100 * best['roof']:.0f}% | "
                       f"{'met' if best['roof'] >= 0.8 else 'missed'} |")
    out.append("")
    return out


if __name__ == "__main__":
    sys.exit(main())

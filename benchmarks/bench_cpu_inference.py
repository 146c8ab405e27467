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

and the timm models of similar multiply-accumulates. With ``--bf16`` each size adds, for ours and its ConvNeXt,
``bf16-autocast`` (the fp32 model under ``torch.autocast("cpu", torch.bfloat16)``) and ``bf16-weights`` (a bf16
copy, channels_last, bf16 input) — timed whatever the CPU, the header says whether bf16 is native there
(AVX512-BF16/AMX) or emulated; with ``--int8`` it adds the int8 model of each ``--int8-backends`` runtime
(:func:`unireplknet.export.quantize_int8`, calibrated on random images: speed does not depend on the ranges;
accuracy is measured with ``unireplknet export --int8 --agreement-data``), again for ours and its ConvNeXt.

Timing is interleaved: each round times every variant of a group once, in the order ours, peer, ours, peer …
and every second round in reverse (so a drift in machine load hits ours and the peer alike); the tables
report medians. ``--threads 1,2`` repeats every group at each thread count (rows per thread count); the
"× peer" column compares each row with its size's ConvNeXt in the same precision, timed in the same rounds.
Throughput is also given as achieved GFLOP/s (2 × conv/linear MACs per image × img/s, MACs counted by
torch.utils.flop_counter) against the machine's measured fp32 matmul rate (the "roof").

Usage::

    python benchmarks/bench_cpu_inference.py                 # the full run (≈ 10 min on 2 cores)
    python benchmarks/bench_cpu_inference.py --sizes a --batches 1 --rounds 2   # a quick look
    python benchmarks/bench_cpu_inference.py --markdown out.md --json out.json
    python benchmarks/bench_cpu_inference.py --threads 1,2 --bf16 --int8 --rounds 5   # issue 31's table
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

from unireplknet import UniRepLKNet, _runtime, fast, ops
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
def cpu_flag_summary() -> str:
    """The CPU flags that decide the low-precision paths (``_runtime.CPU_FLAGS_OF_INTEREST``), present or not."""
    flags = _runtime.cpu_flags()
    if flags is None:
        return "flags unknown (no /proc/cpuinfo)"
    return " ".join(f"{'+' if f in flags else '-'}{f}" for f in _runtime.CPU_FLAGS_OF_INTEREST)


def machine_description() -> Dict[str, str]:
    native, why = _runtime.native_bf16_cpu()
    return {
        "cpu": _runtime.cpu_model_name(),
        "cpu_flags": cpu_flag_summary(),
        "bf16": ("native: " if native else "emulated (slower than fp32 expected): ") + why,
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


def gmacs(model: torch.nn.Module, in_chans: int = 3, image_size: int = 224) -> float:
    """Multiply-accumulates per image (conv, linear and matmul ops), in G."""
    previous = fast.set_fused(False)  # the counter knows aten ops, not oneDNN's fused inner product
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, in_chans, image_size, image_size))
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


def autocast_runner(run: Callable) -> Callable:
    """``run`` under CPU bf16 autocast (the fp32 model; autocast casts per op)."""
    def autocast_run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run(x)

    return autocast_run


def bf16_weights_runner(model: torch.nn.Module) -> Callable:
    """A bf16 copy of ``model`` in channels_last, fed bf16 input: timed as it is, native or emulated (the
    library's ``deploy_model(dtype=torch.bfloat16)`` would fall back to fp32 where bf16 is emulated)."""
    import copy

    module = copy.deepcopy(model).to(torch.bfloat16, memory_format=torch.channels_last).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x.to(torch.bfloat16))

    return run


def int8_runner(model: torch.nn.Module, backend: str, image_size: int, threads: int) -> Callable:
    from unireplknet.export import quantize_int8

    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(8, 3, image_size, image_size, generator=generator)]
    return quantize_int8(model, calibration, backend=backend, samples=8, threads=threads)


def interleave(ours: Dict[str, Tuple[str, str, Callable]],
               peers: Dict[str, Tuple[str, str, Callable]]) -> Dict[str, Tuple[str, str, Callable]]:
    """One timing order: precision by precision (fp32, bf16 …, int8 …), and within each ours, peer, ours,
    peer … (whichever side is longer continues alone), so each row sits next to the peer it is compared with."""
    precisions = list(dict.fromkeys(entry[1] for entry in (*ours.values(), *peers.values())))
    order: Dict[str, Tuple[str, str, Callable]] = {}
    for precision in precisions:
        left = [(k, v) for k, v in ours.items() if v[1] == precision]
        right = [(k, v) for k, v in peers.items() if v[1] == precision]
        for i in range(max(len(left), len(right))):
            for side in (left, right):
                if i < len(side):
                    order[side[i][0]] = side[i][1]
    return order


# ------------------------------------------------------------------------------------------ timing
def time_group(
    runners: Dict[str, Callable], x: torch.Tensor, rounds: int, min_seconds: float
) -> Dict[str, float]:
    """Median seconds per call of every runner, timed round-robin (one sample per runner per round; every
    second round in reverse order, so a steady drift in machine load hits the first and last runner alike)."""
    calls: Dict[str, int] = {}
    for name, run in runners.items():  # warm up; pick calls per sample so a sample lasts ≥ min_seconds
        run(x)
        start = time.perf_counter()
        run(x)
        calls[name] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-6) + 0.999))
    samples: Dict[str, List[float]] = {name: [] for name in runners}
    for round_index in range(rounds):
        order = list(runners.items())
        for name, run in (order if round_index % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            for _ in range(calls[name]):
                run(x)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


# ------------------------------------------------------------------------------------------ main
FP32 = "fp32"
BF16_AUTOCAST = "bf16-autocast"
BF16_WEIGHTS = "bf16-weights"


def _int_list(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="a,t,s", help="UniRepLKNet sizes, comma-separated (a,t,s)")
    parser.add_argument("--batches", default="1,16", help="batch sizes, comma-separated")
    parser.add_argument("--threads", default=None,
                        help="torch / runtime thread counts, comma-separated, e.g. 1,2 (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per group (median taken)")
    parser.add_argument("--min-seconds", type=float, default=0.3, help="least duration of one sample")
    parser.add_argument("--image-size", type=int, default=224, help="input side (224; smaller for a quick look)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    parser.add_argument("--bf16", action="store_true",
                        help="add bf16 rows (autocast, bf16 weights) for ours and the size's ConvNeXt")
    parser.add_argument("--int8", action="store_true",
                        help="add int8 rows (quantize_int8 per --int8-backends) for ours and the size's ConvNeXt")
    parser.add_argument("--int8-backends", default=None,
                        help="int8 runtimes, comma-separated: openvino (needs nncf), onnxruntime "
                             "(default: those installed)")
    parser.add_argument("--no-runtimes", action="store_true", help="skip the fp32 ONNX Runtime / OpenVINO rows")
    parser.add_argument("--no-peers", action="store_true", help="skip the timm models")
    parser.add_argument("--markdown", help="write the result tables (markdown) to this file")
    parser.add_argument("--json", help="write the raw results to this file")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    batches = _int_list(args.batches)
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {sorted(SIZES)}")
    initial_threads = torch.get_num_threads()
    thread_counts = _int_list(args.threads) if args.threads else [initial_threads]
    if not thread_counts or min(thread_counts) < 1:
        parser.error(f"--threads takes positive whole numbers such as 1,2; got {args.threads!r}")
    backends = [] if args.no_runtimes else [b for b in available_backends() if b in ("onnxruntime", "openvino")]
    if args.compile:
        backends.insert(0, "compile")
    int8_backends: List[str] = []
    if args.int8:
        from unireplknet.export import INT8_BACKENDS, _require_int8

        wanted = ([b.strip() for b in args.int8_backends.split(",") if b.strip()] if args.int8_backends
                  else list(INT8_BACKENDS))
        for backend in wanted:
            if backend not in INT8_BACKENDS:
                parser.error(f"unknown int8 backend {backend!r}; choose from {', '.join(INT8_BACKENDS)}")
            try:
                _require_int8(backend)
                int8_backends.append(backend)
            except ImportError as err:
                if args.int8_backends:
                    parser.error(str(err))
                print(f"int8 {backend} skipped: {err}", flush=True)
    size_px = args.image_size

    machine = machine_description()
    started = time.perf_counter()
    roof = matmul_roof()
    print(f"machine: {machine}", flush=True)
    print(f"fp32 matmul roof (alone, at start): {roof:.1f} GFLOP/s", flush=True)

    results = []
    for size in sizes:
        model = UniRepLKNet(**SIZES[size], deploy=True).eval().to(memory_format=torch.channels_last)
        with torch.no_grad():  # non-trivial GRN gamma (zero at init would make GRN a no-op)
            for block in model.modules():
                if hasattr(block, "gamma") and block.__class__.__name__ == "GRNwithNHWC":
                    block.gamma.normal_(0.0, 0.1)
        ours_name = f"unireplknet_{size}"
        macs = {ours_name: gmacs(model, image_size=size_px)}
        peer_models: Dict[str, torch.nn.Module] = {}
        peer_runs: Dict[str, Callable] = {}
        for name in ([] if args.no_peers else PEERS[size]):
            peer_runs[name], peer_models[name] = timm_runner(name)
            macs[name] = gmacs(peer_models[name], image_size=size_px)
        target = TARGET_PEER[size] if TARGET_PEER[size] in peer_models else None
        example = torch.randn(1, 3, size_px, size_px)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            # variant name → (model name, precision, runner)
            ours: Dict[str, Tuple[str, str, Callable]] = {
                "official": (ours_name, FP32, eager_runner(model, fused=False, official=True)),
                "plain": (ours_name, FP32, eager_runner(model, fused=False)),
                "fused": (ours_name, FP32, eager_runner(model, fused=True)),
            }
            peers: Dict[str, Tuple[str, str, Callable]] = {name: (name, FP32, run) for name, run in peer_runs.items()}
            for backend in backends:
                build = time.perf_counter()
                deployed = deploy_model(model, backend, example_input=example, threads=threads)
                ours[backend] = (ours_name, FP32, deployed)
                print(f"  built {size}/{backend} ({threads} threads) in {time.perf_counter() - build:.1f}s "
                      f"(max rel err {deployed.max_rel_error:.1e})", flush=True)
            if args.bf16:
                ours[f"fused {BF16_AUTOCAST}"] = (ours_name, BF16_AUTOCAST, autocast_runner(ours["fused"][2]))
                ours[BF16_WEIGHTS] = (ours_name, BF16_WEIGHTS, bf16_weights_runner(model))
                if target:
                    peers[f"{target} {BF16_AUTOCAST}"] = (target, BF16_AUTOCAST, autocast_runner(peer_runs[target]))
                    peers[f"{target} {BF16_WEIGHTS}"] = (target, BF16_WEIGHTS, bf16_weights_runner(peer_models[target]))
            for backend in int8_backends:
                precision = f"int8-{backend}"
                build = time.perf_counter()
                ours[precision] = (ours_name, precision, int8_runner(model, backend, size_px, threads))
                if target:
                    peers[f"{target} {precision}"] = (target, precision,
                                                      int8_runner(peer_models[target], backend, size_px, threads))
                print(f"  built {size}/{precision} ({threads} threads) in {time.perf_counter() - build:.1f}s",
                      flush=True)
            variants = interleave(ours, peers)
            runners = {name: entry[2] for name, entry in variants.items()}
            roof_a, roof_b, roof_out = (torch.randn(ROOF_SIZE, ROOF_SIZE) for _ in range(3))
            runners[ROOF] = lambda x: torch.mm(roof_a, roof_b, out=roof_out)
            for batch in batches:
                x = torch.randn(batch, 3, size_px, size_px).contiguous(memory_format=torch.channels_last)
                seconds = time_group(runners, x, args.rounds, args.min_seconds)
                # the roof timed in the same rounds as the models, so it saw the same machine load
                group_roof = 2 * ROOF_SIZE**3 / seconds.pop(ROOF) / 1e9
                for name, sec in seconds.items():
                    model_name, precision, _ = variants[name]
                    img_s = batch / sec
                    gflops = 2 * macs[model_name] * img_s
                    results.append(dict(size=size, batch=batch, threads=threads, variant=name, model=model_name,
                                        precision=precision, ours=model_name == ours_name, ms=sec * 1e3,
                                        img_s=img_s, gmacs=macs[model_name], gflops=gflops,
                                        roof=gflops / group_roof, roof_gflops=group_roof))
                add_peer_ratios(results, size, batch, threads)
                print(format_group(results, size, batch, threads), flush=True)
                print(f"  [{time.perf_counter() - started:.0f}s elapsed]", flush=True)

    torch.set_num_threads(initial_threads)
    machine["load_average_at_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    machine["wall_seconds"] = f"{time.perf_counter() - started:.0f}"
    command = " ".join(sys.argv) if argv is None else "bench_cpu_inference.py " + " ".join(argv)
    report = render_markdown(machine, roof, results, sizes, batches, thread_counts, command)
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(machine=machine, roof_gflops_at_start=roof, results=results), fh, indent=1)
    return 0


def _group(results: List[dict], size: str, batch: int, threads: int) -> List[dict]:
    return [r for r in results if r["size"] == size and r["batch"] == batch and r["threads"] == threads]


def add_peer_ratios(results: List[dict], size: str, batch: int, threads: int) -> None:
    """Each row's speed against its size's ConvNeXt in the same precision (``peer_ratio``; None without it)."""
    rows = _group(results, size, batch, threads)
    peers = {r["precision"]: r for r in rows if r["model"] == TARGET_PEER[size]}
    for r in rows:
        peer = peers.get(r["precision"])
        r["peer"] = peer["variant"] if peer else None
        r["peer_ratio"] = peer["ms"] / r["ms"] if peer else None


def format_group(results: List[dict], size: str, batch: int, threads: int) -> str:
    rows = _group(results, size, batch, threads)
    by = {r["variant"]: r for r in rows}
    lines = [f"UniRepLKNet-{size.upper()} batch {batch}, {threads} threads (roof {rows[0]['roof_gflops']:.0f} GFLOP/s):"]
    for r in rows:
        peer = f"  x{r['peer_ratio']:.2f} vs {r['peer']}" if r.get("peer_ratio") and r["ours"] else ""
        lines.append(f"  {r['variant']:<40} {r['ms']:9.1f} ms {r['img_s']:8.1f} img/s "
                     f"{r['gflops']:7.1f} GFLOP/s ({100 * r['roof']:4.0f}% roof)"
                     f"  x{by['official']['ms'] / r['ms']:.2f} vs official{peer}")
    return "\n".join(lines)


def render_markdown(machine: Dict[str, str], roof: float, results: List[dict], sizes: List[str],
                    batches: List[int], thread_counts: List[int], command: str) -> str:
    out = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, timm {machine['timm']}, "
        f"Python {machine['python']}; {machine['date']}; load average {machine['load_average_at_start']} at start, "
        f"{machine['load_average_at_end']} at end; {machine['wall_seconds']} s wall.",
        f"CPU flags: {machine['cpu_flags']}; bf16 {machine['bf16']}.",
        f"Command: `{command}`.",
        f"fp32 matmul roof ({ROOF_SIZE}² × {ROOF_SIZE}² `torch.mm`): {roof:.0f} GFLOP/s measured alone at the "
        "start; each table's roof is re-measured in the same interleaved rounds as its models (below), and "
        "'% roof' is against that. '× peer': against the size's ConvNeXt in the same precision, same rounds.",
        "",
    ]
    for size in sizes:
        for threads in thread_counts:
            for batch in batches:
                rows = _group(results, size, batch, threads)
                if not rows:
                    continue
                by = {r["variant"]: r for r in rows}
                out.append(f"**UniRepLKNet-{size.upper()}, batch {batch}, {threads} thread{'s' * (threads > 1)}** "
                           f"({rows[0]['gmacs']:.2f} GMACs/img; matmul roof in these rounds "
                           f"{rows[0]['roof_gflops']:.0f} GFLOP/s)")
                out.append("")
                out += ["| variant | precision | GMACs | ms/batch | img/s | GFLOP/s | % roof | × official | × peer |",
                        "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
                for r in rows:
                    ratio = f"{r['peer_ratio']:.2f}" if r.get("peer_ratio") is not None else "–"
                    out.append(f"| {r['variant']} | {r['precision']} | {r['gmacs']:.2f} | {r['ms']:.1f} | "
                               f"{r['img_s']:.2f} | {r['gflops']:.1f} | {100 * r['roof']:.0f}% | "
                               f"{by['official']['ms'] / r['ms']:.2f} | {ratio} |")
                out.append("")
    out += render_targets(results, sizes, batches, thread_counts)
    return "\n".join(out)


PACKAGE_PATHS = ("fused", "compile", "onnxruntime", "openvino")


def render_targets(results: List[dict], sizes: List[str], batches: List[int], thread_counts: List[int]) -> List[str]:
    """The issues' targets, met or missed, from the rows of one run."""
    out = ["**Targets** (issues 8 and 31; ratios from the same interleaved rounds):", "",
           "| target | measured | met? |", "|---|---:|---|"]
    for size in sizes:
        for threads in thread_counts:
            for batch in batches:
                rows = _group(results, size, batch, threads)
                by = {r["variant"]: r for r in rows}
                if not by:
                    continue
                tag = f"{size.upper()}, batch {batch}, {threads} thr"
                ratio = by["official"]["ms"] / by["fused"]["ms"]
                out.append(f"| {tag}: eager (fused) ≥ 1.25× official | {ratio:.2f}× | "
                           f"{'met' if ratio >= 1.25 else 'missed'} |")
                paths = [by[p] for p in PACKAGE_PATHS if p in by]
                best = min(paths, key=lambda r: r["ms"])
                peer = by.get(TARGET_PEER[size])
                if peer is not None:
                    for label, row in (("eager (fused)", by["fused"]), (f"fastest path ({best['variant']})", best)):
                        ratio = peer["ms"] / row["ms"]
                        out.append(f"| {tag}: {label} ≥ 1.0× {peer['variant']} | {ratio:.2f}× | "
                                   f"{'met' if ratio >= 1.0 else 'missed'} |")
                out.append(f"| {tag}: fastest path ({best['variant']}) ≥ 80% of matmul roof | "
                           f"{100 * best['roof']:.0f}% | {'met' if best['roof'] >= 0.8 else 'missed'} |")
                low = [r for r in rows if r["ours"] and r["precision"] != FP32]
                for r in low:
                    goal = 1.6 if r["precision"].startswith("bf16") else 2.0
                    ratio = by["fused"]["ms"] / r["ms"]
                    out.append(f"| {tag}: {r['variant']} ≥ {goal}× our fp32 (fused) | {ratio:.2f}× | "
                               f"{'met' if ratio >= goal else 'missed'} |")
    out.append("")
    return out


if __name__ == "__main__":
    sys.exit(main())

"""The CPU measurements behind the fused forward's design choices (docs/performance.md, "Design measurements").

Four side-by-side comparisons and a profile, each on this machine in one process:

1. GRN's statistic at every FFN shape of UniRepLKNet-A and -T (batch 16 and 1): ``torch.linalg.vector_norm``
   over H·W against :func:`unireplknet.fast.spatial_sum_of_squares` (interleaved medians, wall clock).
2. Page faults (first touches of fresh memory, ``ru_minflt``) and time of one batch-16 forward of
   UniRepLKNet-T (fused) with and without sample groups, and of timm's ConvNeXt-T; and of one 13×13
   depthwise conv call at A's stage-2 shape.
3. GRN's per-sample scale before the last Linear at batch 16: folded into per-sample weights (batched
   matmul, ``FOLD_GRN_INTO_WEIGHT=True``) against scaling the activation in place then oneDNN's fused
   Linear + bias + residual (the default).
4. OpenVINO: the same converted model compiled for a static batch of 16 against the dynamic-batch model
   (needs ``unireplknet[openvino]``; skipped otherwise).
5. Where UniRepLKNet-A's fused batch-16 forward spends its time: torch.profiler's ops grouped by input
   shape, with the GFLOP/s of each Linear.

Usage::

    python benchmarks/bench_cpu_details.py [--markdown out.md]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import VARIANTS, interleaved_medians, machine_description, markdown_table  # noqa: E402

from unireplknet import UniRepLKNet, fast  # noqa: E402


def grn_statistic_rows(reps: int) -> List[List[object]]:
    rows = []
    for variant in ("A", "T"):
        dims = VARIANTS[variant][1]
        for batch in (16, 1):
            for stage, dim in enumerate(dims):
                hw = (56 // 2**stage) ** 2
                hid = torch.randn(batch, hw, 4 * dim)
                with torch.inference_mode():
                    ms = interleaved_medians({
                        "vector_norm": lambda: torch.linalg.vector_norm(hid, ord=2, dim=1, keepdim=True),
                        "sum of squares": lambda: fast.spatial_sum_of_squares(hid).sqrt_(),
                    }, reps, warmup=2)
                rows.append([variant, batch, f"{hw}×{4 * dim}", f"{ms['vector_norm']:.2f}",
                             f"{ms['sum of squares']:.2f}", f"{ms['vector_norm'] / ms['sum of squares']:.1f}×"])
    return rows


def grn_fold_rows(reps: int) -> List[List[object]]:
    linear_add = torch.ops.mkldnn._linear_pointwise.binary
    rows = []
    for variant in ("A", "T"):
        for stage, dim in enumerate(VARIANTS[variant][1]):
            n, hw, ffn = 16, (56 // 2**stage) ** 2, 4 * dim
            hid, residual = torch.randn(n, hw, ffn), torch.randn(n * hw, dim)
            w2, b2, scale = torch.randn(dim, ffn), torch.randn(dim), torch.rand(n, 1, ffn) + 0.5

            def folded():
                out = torch.add(residual.view(n, hw, dim), b2)
                return out.baddbmm_(hid, scale.transpose(1, 2) * w2.t())

            def in_place():
                return linear_add(hid.mul_(scale).view(n * hw, ffn), residual, w2, b2, "add")

            with torch.inference_mode():
                ms = interleaved_medians({"folded": folded, "in place": in_place}, reps, warmup=2)
            rows.append([variant, f"{hw}×{ffn}→{dim}", f"{ms['folded']:.2f}", f"{ms['in place']:.2f}",
                         f"{ms['folded'] / ms['in place']:.2f}×"])
    return rows


def faults_and_ms(fn: Callable[[], object], reps: int) -> Dict[str, float]:
    """Median page faults and wall ms per call of ``fn`` (after two warm-up calls)."""
    fn()
    fn()
    faults, times = [], []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"faults": statistics.median(faults), "ms": statistics.median(times)}


def page_fault_rows(reps: int) -> List[List[object]]:
    import timm

    x = torch.randn(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    depths, dims = VARIANTS["T"]
    ours = UniRepLKNet(depths=depths, dims=dims, deploy=True).eval().to(memory_format=torch.channels_last)
    convnext = timm.create_model("convnext_tiny").eval().to(memory_format=torch.channels_last)
    rows = []
    previous = fast.GROUP_BYTES
    try:
        with torch.inference_mode():
            for label, group_bytes in (("UniRepLKNet-T fused, sample groups (default)", previous),
                                       ("UniRepLKNet-T fused, no sample groups", 1 << 62)):
                fast.GROUP_BYTES = group_bytes
                r = faults_and_ms(lambda: ours(x), reps)
                rows.append([label, "16×3×224²", f"{r['faults']:.0f}", f"{r['ms']:.0f}"])
            fast.GROUP_BYTES = previous
            r = faults_and_ms(lambda: convnext(x), reps)
            rows.append(["timm convnext_tiny", "16×3×224²", f"{r['faults']:.0f}", f"{r['ms']:.0f}"])
            xd = torch.randn(16, 80, 28, 28)
            weight, bias = torch.randn(80, 1, 13, 13), torch.randn(80)
            r = faults_and_ms(lambda: F.conv2d(xd, weight, bias, 1, 6, 1, 80), reps * 4)
            rows.append(["13×13 depthwise conv (F.conv2d, NCHW)", "16×80×28²", f"{r['faults']:.0f}",
                         f"{r['ms']:.2f}"])
    finally:
        fast.GROUP_BYTES = previous
    return rows


def openvino_rows(reps: int) -> List[List[object]]:
    try:
        import openvino as ov
    except ImportError:
        return []
    rows = []
    for variant in ("A", "T"):
        depths, dims = VARIANTS[variant]
        model = UniRepLKNet(depths=depths, dims=dims, deploy=True).eval()
        with torch.no_grad():
            dynamic = ov.convert_model(model, example_input=torch.randn(1, 3, 224, 224),
                                       input=[ov.PartialShape([-1, 3, 224, 224])])
        static = dynamic.clone()
        static.reshape({static.inputs[0]: ov.PartialShape([16, 3, 224, 224])})
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        core = ov.Core()
        requests = {name: core.compile_model(m, "CPU", config).create_infer_request()
                    for name, m in (("dynamic", dynamic), ("static", static))}
        x = torch.randn(16, 3, 224, 224).numpy()
        ms = interleaved_medians({name: (lambda r=r: r.infer([x])) for name, r in requests.items()}, reps, warmup=2)
        rows.append([variant, 16, f"{ms['dynamic']:.0f}", f"{ms['static']:.0f}", f"{ms['dynamic'] / ms['static']:.2f}×"])
    return rows


def profile_rows(top: int) -> List[List[object]]:
    from torch.profiler import ProfilerActivity, profile

    depths, dims = VARIANTS["A"]
    model = UniRepLKNet(depths=depths, dims=dims, deploy=True).eval().to(memory_format=torch.channels_last)
    x = torch.randn(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    calls = 3
    with torch.inference_mode():
        model(x)
        model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(calls):
                model(x)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = []
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        ms = e.self_cpu_time_total / 1e3 / calls
        gflops = ""
        matrices = [shape for shape in e.input_shapes if len(shape) == 2]
        if e.key == "mkldnn::_linear_pointwise" and len(matrices) >= 2:
            (m, k), n = matrices[0], matrices[-1][0]  # input (M, K), weight (N, K) (the last 2-D input)
            gflops = f"{2 * m * k * n * (e.count / calls) / (ms / 1e3) / 1e9:.0f}"
        shapes = ", ".join(str(list(s)) for s in e.input_shapes if s)
        rows.append([e.key, shapes, e.count // calls, f"{ms:.1f}", f"{100 * e.self_cpu_time_total / total:.1f}%",
                     gflops])
    return rows


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per candidate")
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    parts = [f"Command: `python benchmarks/bench_cpu_details.py`\n\nMachine: {machine_description()}.\n"]
    parts.append("GRN statistic, ms per call (interleaved medians):\n\n" + markdown_table(
        ["variant", "batch", "H·W × 4C", "vector_norm ms", "sum of squares ms", "speed-up"],
        grn_statistic_rows(args.reps)))
    parts.append("Page faults (first touches of fresh 4 KiB pages) and wall time per call (medians):\n\n" + markdown_table(
        ["what", "input", "page faults", "ms"], page_fault_rows(args.reps)))
    parts.append("GRN scale at batch 16, ms per call (interleaved medians):\n\n" + markdown_table(
        ["variant", "H·W × 4C → C", "folded into weights ms", "in place + fused Linear ms", "in place speed-up"],
        grn_fold_rows(args.reps)))
    parts.append("UniRepLKNet-A, fused, batch 16: the 16 costliest ops by input shape (torch.profiler, per forward; "
                 "profiling adds overhead, so read the shares):\n\n" + markdown_table(
                     ["op", "input shapes", "calls", "ms", "share", "GFLOP/s"], profile_rows(16)))
    ov_rows = openvino_rows(args.reps)
    parts.append("OpenVINO, static batch vs dynamic-batch model, ms per batch of 16 (interleaved medians):\n\n"
                 + (markdown_table(["variant", "batch", "dynamic ms", "static ms", "static speed-up"], ov_rows)
                    if ov_rows else "(openvino not installed)"))
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

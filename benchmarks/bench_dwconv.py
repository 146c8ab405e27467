"""Depthwise conv forward and forward+backward at every UniRepLKNet shape: each implementation vs PyTorch.

Shapes: for each chosen variant at 224×224 input, every depthwise conv of the training structure (the K×K
LarK conv, its dilated branches, the 3×3 SmaK conv) at its stage's width and map size (56/28/14/7).

CPU (default)::

    python benchmarks/bench_dwconv.py                     # variants A,T,S, batch 1 and 16 (≈ 5-8 min on 2 cores)
    python benchmarks/bench_dwconv.py --update-docs       # also write the table into docs/performance.md

Columns: ``torch NCHW`` is the official-style path (NCHW input, F.conv2d, PyTorch's backward);
``torch CL`` the same with channels_last input; ``ours`` is :func:`unireplknet.ops.depthwise_conv2d`
with the automatic choice, fed NCHW or channels_last input. Ratios are speedups over ``torch NCHW``
(>1 = ours faster). GFLOP/s count 2·N·C·H·W·K² per convolution pass (forward+backward = 3 passes) and
are compared with the best square-matmul GFLOP/s measured in the same run.

GPU::

    python benchmarks/bench_dwconv.py --device cuda --dtype float16 --write-table gpu_table.json

times cuDNN (``torch``) against the Triton kernels in both layouts and writes, per shape and batch, the
winner of forward+backward; load it with ``UNIREPLKNET_DWCONV_TABLE=gpu_table.json`` (see
:mod:`unireplknet.ops.gpu_table`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    set_clock,
    REPO_ROOT,
    VARIANTS,
    interleaved_medians,
    machine_description,
    markdown_table,
    matmul_peak_gflops,
    replace_doc_section,
)

from unireplknet.model import DILATED_BRANCHES, default_kernel_sizes  # noqa: E402
from unireplknet.ops import depthwise_conv2d  # noqa: E402

CL = torch.channels_last
Shape = Tuple[int, int, int, int, str]  # channels, map size, kernel, dilation, role


def variant_shapes(variants: List[str], image: int = 224) -> List[Tuple[Shape, List[str]]]:
    """Distinct depthwise-conv shapes of the training structure, with the variants they occur in."""
    found: Dict[Shape, List[str]] = {}
    for name in variants:
        depths, dims = VARIANTS[name]
        for stage, (width, kernels) in enumerate(zip(dims, default_kernel_sizes(depths))):
            size = image // 4 >> stage
            for k in sorted(set(kernels), reverse=True):
                convs = [(k, 1, "LarK" if k >= 7 else "SmaK")]
                if k in DILATED_BRANCHES:
                    convs += [(kb, r, "branch") for kb, r in zip(*DILATED_BRANCHES[k])]
                for kb, r, role in convs:
                    found.setdefault((width, size, kb, r, role), [])
                    if name not in found[(width, size, kb, r, role)]:
                        found[(width, size, kb, r, role)].append(name)
    return sorted(found.items(), key=lambda item: (item[0][1] * -1, item[0][0], -item[0][2], item[0][3]))


def _make_runners(
    batch: int, shape: Shape, device: str, dtype: torch.dtype, impls: Dict[str, Tuple[Optional[str], bool]]
):
    channels, size, k, d, _ = shape
    pad = (k - 1) * d // 2
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, channels, size, size, generator=gen).to(device=device, dtype=dtype)
    w0 = (torch.randn(channels, 1, k, k, generator=gen) / k).to(device=device, dtype=dtype)
    g0 = torch.randn(batch, channels, size, size, generator=gen).to(device=device, dtype=dtype)
    forward, train = {}, {}
    for label, (impl, channels_last) in impls.items():
        fmt = CL if channels_last else torch.contiguous_format
        x = x0.contiguous(memory_format=fmt)
        g = g0.contiguous(memory_format=fmt)
        xg = x.clone().requires_grad_()
        wg = w0.clone().requires_grad_()

        def fwd(x=x, impl=impl):
            with torch.no_grad():
                return depthwise_conv2d(x, w0, None, pad, d, impl=impl)

        def fwd_bwd(xg=xg, wg=wg, g=g, impl=impl):
            xg.grad = wg.grad = None
            depthwise_conv2d(xg, wg, None, pad, d, impl=impl).backward(g)

        forward[label], train[label] = fwd, fwd_bwd
    return forward, train


def _check_same_results(batch: int, shape: Shape, device: str, dtype: torch.dtype, impls) -> float:
    """Largest relative difference of forward output and weight gradient between the implementations."""
    channels, size, k, d, _ = shape
    pad = (k - 1) * d // 2
    x = torch.randn(min(batch, 2), channels, size, size, device=device, dtype=dtype)
    w = torch.randn(channels, 1, k, k, device=device, dtype=dtype) / k
    ref_y = ref_gw = None
    worst = 0.0
    for impl, channels_last in impls.values():
        xi = x.contiguous(memory_format=CL if channels_last else torch.contiguous_format)
        wi = w.clone().requires_grad_()
        y = depthwise_conv2d(xi, wi, None, pad, d, impl=impl)
        y.backward(torch.ones_like(y))
        if ref_y is None:
            ref_y, ref_gw = y.detach().float(), wi.grad.float()
            continue
        worst = max(
            worst,
            float((y.detach().float() - ref_y).abs().max() / ref_y.abs().max()),
            float((wi.grad.float() - ref_gw).abs().max() / ref_gw.abs().max()),
        )
    return worst


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--variants", default="A,T,S", help="comma-separated variant letters (default A,T,S)")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--reps", type=int, default=0, help="timed repetitions (default: 7 at batch 1, 3 above)")
    parser.add_argument("--update-docs", action="store_true", help="write the table into docs/performance.md")
    parser.add_argument("--write-table", metavar="FILE", help="(cuda) write the measured winners as a dispatch table")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--timer", default="wall", choices=["wall", "cpu"],
                        help="wall clock, or this process's CPU time (robust on a shared machine; use with --threads 1)")
    parser.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_clock(args.timer)

    device, dtype = args.device, getattr(torch, args.dtype)
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU")
    if device == "cpu":
        impls = {
            "torch NCHW": ("torch", False),
            "torch CL": ("torch", True),
            "ours NCHW": ("auto", False),
            "ours CL": ("auto", True),
        }
    else:
        impls = {
            "torch NCHW": ("torch", False),
            "triton NCHW": ("triton", False),
            "torch CL": ("torch", True),
            "triton CL": ("triton", True),
        }
    variants = [v.strip().upper() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    batches = [int(b) for b in args.batches.split(",")]
    machine = machine_description(device)
    peak = matmul_peak_gflops(device, dtype if device == "cuda" else torch.float32)
    print(f"# {machine}\n# matmul peak {peak:.0f} GFLOP/s ({args.dtype})", flush=True)

    records = []
    for batch in batches:
        for shape, used_in in variant_shapes(variants):
            channels, size, k, d, role = shape
            reps = args.reps or (7 if batch == 1 else 3)
            diff = _check_same_results(batch, shape, device, dtype, impls)
            forward, train = _make_runners(batch, shape, device, dtype, impls)
            fwd = interleaved_medians(forward, reps, device=device)
            bwd = interleaved_medians(train, reps, device=device)
            flops = 2 * batch * channels * size * size * k * k
            rec = dict(batch=batch, channels=channels, size=size, kernel=k, dilation=d, role=role,
                       variants=used_in, forward_ms=fwd, train_ms=bwd, flops=flops, max_rel_diff=diff)
            records.append(rec)
            print(json.dumps(rec), flush=True)

    labels = list(impls)
    base = labels[0]
    rows = []
    for r in records:
        f, t = r["forward_ms"], r["train_ms"]
        row = [r["batch"], f"{r['channels']}×{r['size']}²", f"{r['kernel']}" + (f" d{r['dilation']}" if r["dilation"] > 1 else ""),
               r["role"], ",".join(r["variants"])]
        row += [f"{f[lab]:.2f}" for lab in labels]
        row += [f"{t[lab]:.2f}" for lab in labels]
        if device == "cpu":
            ours_f, ours_t = min(f["ours NCHW"], f["ours CL"]), min(t["ours NCHW"], t["ours CL"])
            row += [f"{f[base] / f['ours NCHW']:.2f}", f"{t[base] / t['ours NCHW']:.2f}",
                    f"{min(t[base], t['torch CL']) / ours_t:.2f}",
                    f"{3 * r['flops'] / ours_t / 1e6:.0f} ({300 * r['flops'] / ours_t / 1e6 / peak:.0f}%)"]
        else:
            row += [f"{t['torch NCHW'] / t['triton NCHW']:.2f}", f"{t['torch CL'] / t['triton CL']:.2f}"]
        rows.append(row)
    header = ["N", "C×H²", "K", "role", "in"] + [f"fwd {lab} ms" for lab in labels] + [f"fwd+bwd {lab} ms" for lab in labels]
    if device == "cpu":
        header += ["fwd × (ours NCHW / torch NCHW)", "fwd+bwd × (ours NCHW / torch NCHW)",
                   "fwd+bwd × (best ours / best torch)", "ours fwd+bwd GFLOP/s (% matmul peak)"]
    else:
        header += ["fwd+bwd × triton/cuDNN NCHW", "fwd+bwd × triton/cuDNN CL"]
    table = markdown_table(header, rows)

    summary = []
    for b in batches:
        tot = {lab: sum(r["train_ms"][lab] for r in records if r["batch"] == b) for lab in labels}
        totf = {lab: sum(r["forward_ms"][lab] for r in records if r["batch"] == b) for lab in labels}
        summary.append(f"- batch {b}: sum over all shapes, forward " + ", ".join(f"{lab} {v:.1f} ms" for lab, v in totf.items())
                       + "; forward+backward " + ", ".join(f"{lab} {v:.1f} ms" for lab, v in tot.items()))
    worst_diff = max(r["max_rel_diff"] for r in records)
    body = (
        f"Command: `python benchmarks/bench_dwconv.py --device {device} --dtype {args.dtype} --variants {','.join(variants)} "
        f"--batches {args.batches} --threads {args.threads} --timer {args.timer}`\n\nMachine: {machine}. Square-matmul peak measured in the same run: {peak:.0f} GFLOP/s.\n"
        f"Medians of interleaved repetitions (ms, {'wall clock' if args.timer == 'wall' else 'process CPU time'}); largest relative difference between implementations "
        f"(forward and weight gradient): {worst_diff:.1e}.\n\n" + "\n".join(summary) + "\n\n" + table + "\n"
    )
    print("\n" + body)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(machine=machine, peak_gflops=peak, records=records), indent=1))
    if args.write_table:
        if device != "cuda":
            parser.error("--write-table is for --device cuda measurements")
        entries = []
        gpu = torch.cuda.get_device_name()
        for r in records:
            for layout, cl in (("NCHW", False), ("CL", True)):
                t_torch, t_triton = r["train_ms"][f"torch {layout}"], r["train_ms"][f"triton {layout}"]
                entries.append(dict(device=gpu, dtype=args.dtype, channels_last=cl, batch=r["batch"],
                                    channels=r["channels"], height=r["size"], width=r["size"],
                                    kernel_size=r["kernel"], dilation=r["dilation"],
                                    winner="triton" if t_triton < t_torch else "torch",
                                    speedup=round(t_torch / t_triton, 3)))
        Path(args.write_table).write_text(json.dumps({"machine": machine, "entries": entries}, indent=1))
        print(f"wrote {len(entries)} entries to {args.write_table}")
    if args.update_docs:
        marker = f"bench_dwconv {device} {args.dtype}"
        _write_marked_block(REPO_ROOT / "docs" / "performance.md", marker, body)


def _write_marked_block(path: Path, marker: str, body: str) -> None:
    """Put ``body`` between <!-- marker:start/end --> inside the depthwise-kernels section of ``path``."""
    heading = "## Depthwise convolution kernels"
    start, end = f"<!-- {marker}: start -->", f"<!-- {marker}: end -->"
    text = path.read_text(encoding="utf-8")
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        path.write_text(before + block + after, encoding="utf-8")
        return
    # First time: append the block at the end of the section, keeping what is already there.
    lines = text.splitlines(keepends=True)
    idx = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if idx is None:
        replace_doc_section(path, heading, block)
        return
    stop = next((j for j in range(idx + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    section = "".join(lines[idx + 1 : stop]).rstrip("\n")
    new_section = (section + "\n\n" if section.strip() else "\n") + block + "\n\n"
    path.write_text("".join(lines[: idx + 1]) + new_section + "".join(lines[stop:]), encoding="utf-8")


if __name__ == "__main__":
    main()

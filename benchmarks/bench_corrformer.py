"""One training step of the paper's Corrformer + UniRepLKNet-S forecaster on CPU, and an epoch estimate on a GPU.

    python benchmarks/bench_corrformer.py                 # the full step: 350 node images of 192 × 192
    python benchmarks/bench_corrformer.py --nodes 7       # a 7-node slice, scaled ×50 to the full step

A step is the paper's: batch 1 window (48 h of 3,850 stations = 350 node images), MSE, backward, Adam, with
the paper preset (UniRepLKNet-S encoder with gradient checkpointing, drop path 0.4, one Corrformer decoder
layer). ``--nodes N`` builds the same model with ``node_list=(N,)`` and 11·N stations; every per-node cost
(the encoder images, the embeddings, the decoder's correlations and its TCN along the node axis) is linear in
N, so the full step is estimated as ×350/N. Peak memory is the process's maximum resident set (parameters,
Adam state and activations).

The floating-point work of the full step is counted exactly (``torch.utils.flop_counter`` on meta tensors:
nothing is computed) for the forward pass; a training step with gradient checkpointing is about
forward × 4 (forward, the recomputed forward, and a backward of twice the forward). The GPU epoch estimate
divides that by an assumed sustained throughput (``--gpu-tflops``, default 20 TFLOP/s: TF32 on an A100/H100
class GPU at a depthwise-convolution-heavy utilisation) — an estimate, not a measurement. The official README
reports about 18 h for the whole run on one 24 GB GPU, which is the number to check the estimate against.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_description  # noqa: E402

from unireplknet.tasks.forecast.corrformer import PRESETS, build_model, forecast_loss  # noqa: E402

PAPER_NODES = 350


def step_inputs(nodes: int, cfg, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v = nodes * cfg.enc_in
    x = torch.randn(1, cfg.seq_len, v, generator=g) * 50 + 150  # ×10 °C, like the released files
    y = torch.randn(1, cfg.label_len + cfg.pred_len, v, generator=g) * 50 + 150
    xm = torch.rand(1, cfg.seq_len, 4, generator=g) - 0.5
    ym = torch.rand(1, cfg.label_len + cfg.pred_len, 4, generator=g) - 0.5
    return x, xm, y, ym


def forward_flops_full_step() -> int:
    """FLOPs of the full paper forward pass (batch 1, 350 nodes), counted on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = PRESETS["paper"]
    with torch.device("meta"):
        model = build_model("paper", coords=np.zeros((cfg.num_variables, 3))).to("meta")  # the geo buffer too
        x, xm, _, ym = (t.to("meta") for t in step_inputs(PAPER_NODES, cfg))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, xm, ym)
    return counter.get_total_flops()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=PAPER_NODES, help="node images in the measured step (paper: 350)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--train-hours", type=int, default=12263,
                   help="hours in the training file (default: 70%% of the ≈17,519 hourly steps of 2019-2021)")
    p.add_argument("--gpu-tflops", type=float, default=20.0, help="assumed sustained GPU throughput, TFLOP/s")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = PRESETS["paper"]
    node_list = cfg.node_list if args.nodes == PAPER_NODES else (args.nodes,)
    stations = args.nodes * cfg.enc_in
    coords = np.random.default_rng(0).normal(size=(stations, 3))

    model = build_model("paper", coords=coords, node_list=node_list)
    params = sum(q.numel() for q in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, xm, y, ym = step_inputs(args.nodes, cfg)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    t0 = time.perf_counter()
    loss = forecast_loss(model(x, xm, ym), y)
    t_fwd = time.perf_counter() - t0
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    step_s = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # ru_maxrss is KiB on Linux

    fwd_flops = forward_flops_full_step()
    step_flops = 4 * fwd_flops
    windows = args.train_hours - cfg.seq_len - cfg.pred_len + 1
    gpu_epoch_h = windows * step_flops / (args.gpu_tflops * 1e12) / 3600
    scale = PAPER_NODES / args.nodes
    cpu_epoch_h = windows * step_s * scale / 3600
    result = dict(
        machine=machine_description("cpu"), nodes_measured=args.nodes, stations=stations,
        parameters_m=round(params / 1e6, 3), forward_s=round(t_fwd, 2), step_s=round(step_s, 2),
        full_step_s_estimate=round(step_s * scale, 1), peak_rss_gib=round(peak_gib, 2),
        rss_before_step_gib=round(rss_before, 2), full_step_forward_tflop=round(fwd_flops / 1e12, 3),
        full_step_train_tflop_estimate=round(step_flops / 1e12, 3), windows_per_epoch=windows,
        cpu_epoch_h_estimate=round(cpu_epoch_h, 1), gpu_tflops_assumed=args.gpu_tflops,
        gpu_epoch_h_estimate=round(gpu_epoch_h, 2))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

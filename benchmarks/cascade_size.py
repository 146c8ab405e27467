"""Parameters and FLOPs of the Cascade Mask R-CNN detector per variant, against the official README.

The official numbers (89M … 443M, 749G … 1952G at 1280x800) come from MMDetection's ``get_flops.py``: mmcv's
counter on ``forward_dummy`` — backbone, FPN and RPN head on one 1280x800 image, the three box heads on 1000
random RoIs, the three mask heads on the first 100 — counting one multiply-add as one "FLOP". This script counts
the same pieces with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no data; it
counts 2 per multiply-add, halved here), for the training structure and the re-parameterized (deploy) one::

    python benchmarks/cascade_size.py            # a Markdown table (docs/dense.md)
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from unireplknet import reparameterize
from unireplknet.tasks.dense import cascade


def _gmacs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9


def count(variant: str, height: int = 800, width: int = 1280, deploy: bool = False) -> dict:
    with torch.device("meta"):
        model = cascade.cascade_mask_rcnn(variant, 80).eval()
        if deploy:
            reparameterize(model)
        image = torch.empty(1, 3, height, width)
        rois_box = torch.empty(1000, 256, 7, 7)  # forward_dummy: 1000 RoIs for every box stage
        rois_mask = torch.empty(100, 256, 14, 14)  # and the first 100 for every mask head
        heads = model.roi_heads
        with torch.no_grad():
            backbone = _gmacs(lambda: model.backbone.body.forward_intermediates(
                image, indices=[0, 1, 2, 3], stop_early=True, intermediates_only=True))
            feats = model.backbone(image)
            fpn = _gmacs(lambda: model.backbone(image)) - backbone
            rpn = _gmacs(lambda: model.rpn.head(list(feats.values())))
            box = _gmacs(lambda: [s(rois_box) for s in heads.stages])
            mask = _gmacs(lambda: [b(rois_mask) for b in heads.mask_branches])
    params = sum(p.numel() for p in model.parameters())
    return dict(params_m=params / 1e6, backbone=backbone, fpn=fpn, rpn=rpn, box=box, mask=mask,
                total=backbone + fpn + rpn + box + mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    print("| variant | params (M) | README | GMACs train structure (backbone / FPN / RPN / box / mask) | "
          "GMACs deploy | README \"FLOPs\" |")
    print("|---|---|---|---|---|---|")
    for variant, official in cascade.OFFICIAL_GFLOPS.items():
        tr = count(variant, args.height, args.width)
        dp = count(variant, args.height, args.width, deploy=True)
        print(f"| {variant} | {tr['params_m']:.2f} | {cascade.OFFICIAL_PARAMS_M[variant]} | {tr['total']:.0f} "
              f"({tr['backbone']:.0f} / {tr['fpn']:.0f} / {tr['rpn']:.0f} / {tr['box']:.0f} / {tr['mask']:.0f}) | "
              f"{dp['total']:.0f} | {official} |")


if __name__ == "__main__":
    main()

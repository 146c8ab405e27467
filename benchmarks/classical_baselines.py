"""The strongest simple methods we know for each generated modality demo, on the demos' own splits.

Every modality page compares UniRepLKNet with these rows, so a reader sees what a classical method reaches
on the same data (issue: "honest evidence for one backbone for every modality"). None of these methods is
tuned on the held-out split: every choice below was fixed before looking at held-out results, and each row
names its features.

* ``audio``  — 1-nearest-neighbour with dynamic time warping (DTW) on the same normalised log-mel images the
  network sees (frames = columns of the image, Euclidean distance between frames, the zero padding removed).
* ``noisy-audio`` — the harder audio demo (``scripts/make_noisy_digits.py``, speakers disjoint across splits):
  DTW 1-NN on the network's 64-band log-mels, DTW 1-NN on per-clip normalised MFCCs, and a logistic regression
  on MFCC statistics of the clip and of the thirds of its loud region; the validation split picks the row.
* ``video``  — 1-nearest-neighbour on the moving shape's centroid track: per frame, the intensity-weighted
  centre of the brightest pixels, with the clip's mean position subtracted (so only the motion remains).
* ``points`` — rotation-invariant shape descriptors (histograms of distances to the centroid and of pairwise
  distances — the D2 shape distribution of Osada et al., 2002 — plus the sorted principal variances), then
  1-nearest-neighbour and a multinomial logistic regression on the standardised descriptors.
* ``points_scans`` — the hard partial-scan demo (``points-train --recipe scans``), seeds 0, 1, 2: the same
  classifiers on richer rotation-invariant descriptors (D2, A3, centroid distances, principal variances, PCA
  statistics of 16-point neighbourhoods — linearity, planarity, surface variation, normal-pair angles — and
  optionally histograms in the principal-axes frame); the descriptor and the L2 strength are chosen on the
  validation split, the test split is read once.
* ``co2`` / ``grid`` / ``advection`` — ridge regression from the 48 input steps to the 24 forecast steps, one
  linear map shared by all variables, each window taken relative to its last value; ridge strength chosen on the
  validation split, and plain least squares beside it. With several stations also one joint linear map from all
  stations' inputs to all stations' futures, one per node of stations (shared by the nodes), and the better of
  the two plus an RBF kernel ridge on its residuals.
* ``det-scenes`` / ``seg-scenes`` — the dense demos' generated scenes: a per-pixel logistic foreground model,
  colour-connected regions, and a logistic regression on each region's shape descriptor (occupancy grid, row
  profile, aspect, area, contacts, outline) that names its class; boxes are the regions' extents.

The methods live in ``benchmarks/baselines/`` (one module per modality: ``audio``, ``video``, ``points``,
``forecast``, ``dense``; shared pieces in ``_common``); this script runs them.

Run: ``python benchmarks/classical_baselines.py [audio video points noisy-audio co2 ...] [--json FILE]``. Seconds on
one core each, except ``noisy-audio`` (minutes, for 2 x 360 x 480 DTW alignments) and ``points_scans`` (generating
and describing 3 x 576 scans: about 3 CPU minutes); co2 grid advection together take 24 CPU s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: the baselines package

from baselines import audio, dense, forecast, points, video  # noqa: E402

BASELINES: Dict[str, Callable[[], Dict[str, float]]] = {
    "audio": audio.audio_baseline, "video": video.video_baseline, "points": points.points_baseline,
    "co2": lambda: forecast.forecast_baseline("co2"), "grid": lambda: forecast.forecast_baseline("synthetic-grid"),
    "noisy-audio": audio.noisy_audio_baseline, "video-hard": video.video_hard_baseline,
    "points_scans": points.points_scans_baseline, "points_scans_groups": points.points_scans_descriptor_groups,
    # dense scenes, seed 0 (benchmarks/dense_peers.py runs every seed)
    "det-scenes": dense.detection_scenes_baseline, "seg-scenes": dense.segmentation_scenes_baseline,
    "advection": lambda: forecast.forecast_baseline("synthetic-advection")}


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="*", metavar="DEMO",
                        help=f"which demos to run, of {', '.join(BASELINES)} (default: all)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(list(argv))
    unknown = sorted(set(args.demos) - set(BASELINES))
    if unknown:
        parser.error(f"unknown demo(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    args.demos = args.demos or list(BASELINES)
    torch.set_num_threads(1)
    results = {}
    for name in args.demos:
        start = time.perf_counter()
        results[name] = BASELINES[name]()
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        for key, value in results[name].items():
            shown = f"{value:8.3f}" if isinstance(value, (int, float)) else json.dumps(value)  # per-seed rows
            print(f"{name:7s} {key:32s} {shown}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Where the ridge baseline's error on the generated weather comes from, part by part.

    python benchmarks/corrformer_ridge_errors.py [--days 120 --seed 0]

The generated temperature is a sum of parts (:mod:`unireplknet.data.timeseries.global_weather`: climate + season, weather,
diurnal cycle, noise). The ridge linear model of the Corrformer demo's inputs
(:class:`unireplknet.tasks.forecast.corrformer.LinearWindowBaseline`: per node of 11 stations, the standardised 48-h
window, the decoder span's calendar features and the node's coordinates, one weight matrix for all nodes) is
linear in its target, so its forecast splits exactly into one forecast per part (the same design matrix, the
part's future as the target); this prints each part's MSE on the validation and test windows in °C². Their sum
differs from the total by the cross terms. Data and windows are those of ``unireplknet forecast-make-weather OUT`` with
the same arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from unireplknet.data.timeseries import Series, WindowDataset, global_weather
from unireplknet.tasks.forecast import corrformer as cf

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=308)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    times, temp, _, stations, parts = global_weather.simulate(args.stations, args.days, args.seed, parts=True)
    cfg = cf.PRESETS["demo"]
    bounds = global_weather.split_bounds(len(times))

    def windows(values: np.ndarray, split: str) -> WindowDataset:
        a, b = bounds[split]
        series = Series(values=values[a:b].astype(np.float32), timestamps=times[a:b].astype("datetime64[s]"),
                        freq="h", coords=stations.astype(np.float32), description=split)
        return WindowDataset(series, cfg.seq_len, cfg.label_len, cfg.pred_len)

    ridge = cf.LinearWindowBaseline(cfg, stations)
    series = {"total": temp, **parts}
    # one solve per target with the design of the temperature windows (what the baseline sees)
    gram, cross = None, {k: None for k in series}
    loaders = {k: DataLoader(windows(v, "train"), batch_size=64) for k, v in series.items()}
    for batches in zip(*loaders.values()):
        x, _, _, ym = batches[0]
        design, _, std = ridge.design(x, ym)
        gram = design.T @ design if gram is None else gram + design.T @ design
        for (k, (xp, _, yp, _)) in zip(series, batches):
            target = cf.to_nodes((yp[:, -cfg.pred_len:] - xp.mean(1, keepdim=True)) / std, cfg.node_num)
            part = design.T @ target.flatten(1).double()
            cross[k] = part if cross[k] is None else cross[k] + part
    weights = {k: cf.ridge_solution(gram, c, ridge.ridge) for k, c in cross.items()}
    print(f"{'part':<10}{'variance °C²':>14}{'val MSE °C²':>14}{'test MSE °C²':>14}")
    for k, values in series.items():
        row = []
        for split in ("val", "test"):
            err, count = 0.0, 0
            for (x, _, _, ym), (xp, _, yp, _) in zip(DataLoader(windows(temp, split), batch_size=64),
                                                    DataLoader(windows(values, split), batch_size=64)):
                design, _, std = ridge.design(x, ym)
                out = (design @ weights[k]).float().reshape(-1, cfg.pred_len, cfg.enc_in)
                pred = cf.from_nodes(out, cfg.node_num) * std + xp.mean(1, keepdim=True)
                err += float((pred - yp[:, -cfg.pred_len:]).double().pow(2).sum())
                count += pred.numel()
            row.append(err / count)
        print(f"{k:<10}{float(np.var(values)):>14.3f}{row[0]:>14.3f}{row[1]:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Corrformer + UniRepLKNet forecaster, part by part against independent computations, and end to end."""
from __future__ import annotations

import argparse
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from unireplknet.data.timeseries import SeriesError, load_global_station_folder
from unireplknet.tasks.forecast import corrformer as cf
from unireplknet.tasks.forecast import SeriesNormalizer
from unireplknet.data.timeseries import global_weather


@pytest.fixture(scope="module")
def weather_dir(tmp_path_factory):
    """Ten days of the generated world: 308 stations = 28 nodes (4 × 7) of 11."""
    out = tmp_path_factory.mktemp("weather")
    global_weather.write(out, num_stations=308, days=10, seed=1)
    return out


# ----------------------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("kernel", [5, 25])
def test_moving_average_matches_the_direct_window_mean(kernel):
    x = torch.randn(3, 48, 4, dtype=torch.float64)
    half = kernel // 2
    xn = x.numpy()
    expected = np.empty_like(xn)
    for t in range(48):
        idx = np.clip(np.arange(t - half, t + half + 1), 0, 47)  # ends repeat the first/last value
        expected[:, t] = xn[:, idx].mean(1)
    np.testing.assert_allclose(cf.moving_average(x, kernel).numpy(), expected, rtol=1e-12, atol=1e-12)
    seasonal, trend = cf.SeriesDecomposition(kernel)(x)
    torch.testing.assert_close(seasonal + trend, x)
    with pytest.raises(ValueError, match="odd"):
        cf.moving_average(x, 4)


def test_fft_correlation_equals_the_direct_sum():
    q, k = torch.randn(2, 3, 48, dtype=torch.float64), torch.randn(2, 3, 48, dtype=torch.float64)
    direct = torch.zeros_like(q)
    for tau in range(48):
        direct[..., tau] = (torch.roll(q, -tau, dims=-1) * k).sum(-1)  # Σ_t q[t+τ]·k[t]
    torch.testing.assert_close(cf.circular_correlation(q, k), direct)


def test_delay_gather_is_a_per_row_roll():
    v = torch.arange(2 * 3 * 5 * 8, dtype=torch.float32).reshape(2, 3, 5, 8)
    delays = torch.tensor([[0, 1, 7], [3, -2, 8]])
    out = cf.delay_gather(v, delays)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], torch.roll(v[i, j], -int(delays[i, j]), dims=-1))


def test_auto_correlation_matches_a_hand_written_time_delay_aggregation():
    # Queries from x, keys and values from a different memory: the correlation of a signal with itself is
    # symmetric in the lag (corr(τ) = corr(L − τ)), so two lags would tie exactly and the result would hang
    # on how numpy's argsort and torch.topk (which differ between CPU kernels) break the tie.
    torch.manual_seed(0)
    d, heads, length = 8, 2, 24
    layer = cf.AutoCorrelation(d, heads, factor=1).double()
    with torch.no_grad():  # identity projections: the mechanism alone
        for lin in (layer.query, layer.key, layer.value, layer.out):
            lin.weight.copy_(torch.eye(d))
            lin.bias.zero_()
    x = torch.randn(3, length, d, dtype=torch.float64)
    memory = torch.randn(3, length, d, dtype=torch.float64)
    out = layer(x, memory)
    e = d // heads
    top = int(math.log(length))
    expected = np.zeros((3, length, d))
    xn, mn = x.numpy(), memory.numpy()
    for n in range(3):
        for h in range(heads):
            q, k = xn[n, :, h * e:(h + 1) * e], mn[n, :, h * e:(h + 1) * e]  # (L, E)
            # R[τ] = Σ_t q[t + τ] · k[t], averaged over the head's channels
            corr = np.array([(np.roll(q, -tau, 0) * k).sum() / e for tau in range(length)])
            ranked = np.sort(corr)[::-1]
            # the chosen lags are set apart from the rest: no tie for any kernel to break
            assert ranked[top - 1] - ranked[top] > 1e-3, (n, h, ranked[: top + 1])
            lags = np.argsort(-corr)[:top]
            w = np.exp(corr[lags] - corr[lags].max())
            w /= w.sum()
            expected[n, :, h * e:(h + 1) * e] = sum(wi * np.roll(k, -lag, 0) for wi, lag in zip(w, lags))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-9, atol=1e-9)


def test_tcn_is_causal_along_its_axis():
    torch.manual_seed(0)
    tcn = cf.CausalTCN(6, layers=2, kernel_size=3).eval()
    x = torch.randn(2, 6, 20)
    y = tcn(x)
    later = x.clone()
    later[..., 12:] += torch.randn(2, 6, 8)
    y2 = tcn(later)
    torch.testing.assert_close(y2[..., :12], y[..., :12])  # steps before the change do not move
    assert (y2[..., 12:] - y[..., 12:]).abs().max() > 1e-4  # and the change is seen from there on
    earlier = x.clone()
    earlier[..., 3] += 1.0
    assert (tcn(earlier)[..., 3:] - y[..., 3:]).abs().max() > 1e-4
    torch.testing.assert_close(tcn(earlier)[..., :3], y[..., :3])


def test_cross_correlation_keeps_groups_apart_and_pads_short_memory():
    torch.manual_seed(0)
    layer = cf.CrossCorrelation(8, 2, length=12).eval()
    x, mem = torch.randn(2 * 5, 12, 8), torch.randn(2 * 5, 4, 8)  # 2 groups of 5 nodes, 4 memory tokens
    y = layer(x, mem, nodes=5)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[5:] += torch.randn(5, 12, 8)  # change the second group only
    torch.testing.assert_close(layer(x2, mem, nodes=5)[:5], y[:5])


def test_normalization_round_trip_and_statistics():
    torch.manual_seed(0)
    norm = SeriesNormalizer(11)
    x = torch.randn(2, 48, 33) * 7 + 3
    xn, stats = norm.normalize(x)
    torch.testing.assert_close(xn.mean(1), torch.zeros(2, 33), atol=1e-5, rtol=0)
    torch.testing.assert_close(xn.var(1, unbiased=False), torch.ones(2, 33), atol=1e-4, rtol=0)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    xn, stats = norm.normalize(x)
    torch.testing.assert_close(norm.denormalize(xn, stats), x, atol=1e-4, rtol=1e-5)


def test_geo_standardization_and_its_node_layout():
    rng = np.random.default_rng(0)
    coords = np.stack([rng.uniform(-80, 80, 22), rng.uniform(-180, 180, 22), np.full(22, 0.3)], 1)
    z = cf.standardize_coordinates(coords)
    for j in range(2):
        col = coords[:, j]
        np.testing.assert_allclose(z[:, j], (col - col.mean()) / np.sqrt(((col - col.mean()) ** 2).mean()), rtol=1e-5)
    assert np.all(z[:, 2] == 0)  # a constant column carries no information
    model = cf.build_model("demo", coords=coords, node_list=(2,), d_model=32, n_heads=2, d_ff=16)
    # node j gets the standardised coordinates of its stations j·11 … j·11+10, station by station
    np.testing.assert_allclose(model.geo[1].numpy(), z[11:22].reshape(-1), rtol=1e-6)


def test_node_and_image_reshapes_round_trip():
    x = torch.arange(2 * 48 * 22, dtype=torch.float32).reshape(2, 48, 22)
    nodes = cf.to_nodes(x, 2)
    assert nodes.shape == (4, 48, 11)
    torch.testing.assert_close(nodes[1], x[0, :, 11:22])  # batch 0, node 1 = stations 11..21
    torch.testing.assert_close(nodes[2], x[1, :, :11])
    torch.testing.assert_close(cf.from_nodes(nodes, 2), x)
    tokens = torch.randn(3, 48, 768)
    image = cf.tokens_to_image(tokens, (192, 192))  # paper eq. (2): 48 · 768 = 192²
    assert image.shape == (3, 1, 192, 192)
    torch.testing.assert_close(image[0, 0, :4].reshape(-1), tokens[0, 0])  # one time step = 4 image rows of 192
    torch.testing.assert_close(cf.image_to_tokens(image, 48), tokens)


def test_paper_preset_parameter_count_matches_the_architecture():
    d, dff, heads, length, c, k = 768, 2048, 16, 48, 11, 3
    linear = d * d + d
    tcn = 2 * ((d // heads * length) ** 2 * 3 + 2 * (d // heads * length))  # two weight-normed convs (v, g, bias)
    multi = 8 * linear + tcn  # auto + cross projections and the TCN
    decoder = 2 * multi + 2 * d * dff + d * c * 3
    embedding = c * d * 3 + 4 * d + (c * 3 * d + d)
    head = 2 * d + (d * c + c)  # seasonal LayerNorm, projection
    with torch.device("meta"):
        model = cf.build_model("paper", coords=np.zeros((3850, 3)))
        encoder_only = cf._build_encoder(cf.PRESETS["paper"])
    enc = sum(p.numel() for p in encoder_only.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert total == enc + decoder + 2 * embedding + head + 2 * c
    assert abs(total / 1e6 - cf.PAPER_PARAMS_M) < 0.5  # the paper's 132 M
    assert model.encoder.kernel_sizes[3] == (11, 11, 11)
    assert model.encoder.kernel_sizes[2] == (13, 3, 3) * 9


def test_learning_rate_schedule_and_recipe():
    assert [cf.paper_learning_rate(e) for e in (1, 2, 3)] == [1e-4, 5e-5, 2.5e-5]
    assert cf.PAPER_RECIPE["epochs"] == 10 and cf.PAPER_RECIPE["patience"] == 3
    with pytest.raises(ValueError):
        cf.paper_learning_rate(0)


def test_evaluate_reports_groups_on_both_scales(weather_dir):
    cfg = cf.PRESETS["demo"]
    ds, _ = cf.global_station_windows(weather_dir, "temp", "test", cfg)

    class Zero(torch.nn.Module):
        def forward(self, x, xm, ym):
            return torch.zeros(x.shape[0], cfg.pred_len, x.shape[2])

    groups = {"north": range(0, 77), "rest": range(77, 308)}
    out = cf.evaluate(Zero(), ds, groups=groups, batch_size=32)
    y = torch.stack([ds[i][2][-cfg.pred_len:] for i in range(len(ds))])
    assert out["north"]["mse"] == pytest.approx(float(y[..., :77].double().pow(2).mean()), rel=1e-9)
    assert out["rest"]["mae"] == pytest.approx(float(y[..., 77:].double().abs().mean()), rel=1e-9)
    assert out["rest"]["mse_physical"] == pytest.approx(out["rest"]["mse"] / 100)  # the files are ×10
    assert out["rest"]["mae_physical"] == pytest.approx(out["rest"]["mae"] / 10)


# ----------------------------------------------------------------------------------------------- data
def test_generated_world_has_the_official_layout_and_neighbour_correlation(weather_dir):
    names = sorted(p.name for p in weather_dir.iterdir())
    for split in ("train", "val", "test"):
        assert f"temp_global_hourly_{split}.npy" in names and f"data_time_{split}.npy" in names
        assert f"wind_global_hourly_{split}.npy" in names
    assert "stations_sorted.npy" in names
    raw = np.load(weather_dir / "temp_global_hourly_train.npy")
    assert raw.ndim == 3 and raw.shape[1:] == (308, 1)
    series = load_global_station_folder(weather_dir, "temp", "train", feature=None)
    v = series.values / 10.0
    lat = series.coords[:, 0]
    assert v[:, lat > 50].mean() < v[:, np.abs(lat) < 15].mean()  # colder towards the pole
    anomalies = v - v.mean(0)
    c = np.corrcoef(anomalies.T)
    same_node = np.mean([c[i, i + 1] for i in range(0, 308, 11)])
    far = np.mean([c[i, (i + 154) % 308] for i in range(0, 308, 11)])
    assert same_node > far + 0.2


def test_global_station_windows_checks_the_station_count(weather_dir):
    with pytest.raises(SeriesError, match="node_list"):
        cf.global_station_windows(weather_dir, "temp", "val", cf.PRESETS["paper"])


class _WritesAFile:
    """Unpickling this object creates a file: the marker of code run by a data file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_an_object_array_is_never_unpickled(tmp_path, weather_dir):
    for f in weather_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _WritesAFile(marker)
    with open(tmp_path / "data_time_val.npy", "wb") as fh:
        np.save(fh, payload, allow_pickle=True)
    with pytest.raises(SeriesError, match="object array") as err:
        load_global_station_folder(tmp_path, "temp", "val")
    assert "datetime64" in str(err.value)  # the advice says how to re-save
    assert not marker.exists()
    pickle.loads(pickle.dumps(payload[0]))  # the payload is live: unpickling it does create the file
    assert marker.exists()


@pytest.mark.parametrize("kind", ["str", "datetime64"])
def test_timestamps_as_strings_or_datetime64_load(tmp_path, kind):
    times = np.datetime64("2020-02-28T20", "s") + np.arange(30).astype("timedelta64[h]")
    np.save(tmp_path / "temp_global_hourly_test.npy", np.ones((30, 2, 1), np.float32))
    np.save(tmp_path / "data_time_test.npy", times.astype(str) if kind == "str" else times)
    series = load_global_station_folder(tmp_path, "temp", "test")
    np.testing.assert_array_equal(series.timestamps, times)


# ----------------------------------------------------------------------------------------------- end to end
def test_tiny_end_to_end_run_learns(weather_dir):
    torch.manual_seed(0)
    cfg = cf.PRESETS["demo"]
    ds, coords = cf.global_station_windows(weather_dir, "temp", "train", cfg, stride=12)
    # the first 4 nodes (44 stations) keep the run to seconds; node_list (2, 2) keeps both tree levels
    x, xm, y, ym = [torch.stack(t) for t in zip(*[ds[i] for i in range(4)])]
    x, y = x[..., :44], y[..., :44]
    model = cf.build_model("demo", coords=coords[:44], node_list=(2, 2), d_model=32, d_ff=32, dropout=0.0,
                           tcn_dropout=0.0)
    assert model(x, xm, ym).shape == (4, 24, 44)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = cf.forecast_loss(model(x, xm, ym), y).item()
    for _ in range(12):
        loss = cf.forecast_loss(model(x, xm, ym), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = cf.forecast_loss(model(x, xm, ym), y).item()
    assert last < 0.5 * first, (first, last)
    assert all(p.grad is not None for p in model.parameters())  # every part takes part in the forecast


def test_raw_memory_layout_is_one_flag_away(weather_dir):
    coords = np.zeros((308, 3))
    model = cf.build_model("demo", coords=coords, memory_layout="raw", encoder_size="tiny", d_model=64,
                           n_heads=4).eval()
    x = torch.randn(1, 48, 308)
    mem = model.memory(cf.to_nodes(x, 28), None)
    assert mem.shape[-1] == 64
    with pytest.raises(ValueError, match="memory_layout"):
        cf.build_model("demo", coords=coords, memory_layout="flat")


def test_convnext_peer_encoder_has_the_demo_shape_and_one_memory_token():
    """--encoder convnext: timm's ConvNeXt with the tiny encoder's depths and widths; its 4×4 stem (48 → 12) and
    three 2×2 stride-2 downsamplings (12 → 6 → 3 → 1, floored) leave one memory token per node, where
    UniRepLKNet's stride-2 3×3 convolutions (… 3 → 2) leave 2 × 2."""
    from timm.models.convnext import ConvNeXt

    coords = np.zeros((308, 3))
    peer = cf.build_model("demo", coords=coords, encoder="convnext").eval()
    ours = cf.build_model("demo", coords=coords).eval()
    assert isinstance(peer.encoder, ConvNeXt)
    assert [len(s.blocks) for s in peer.encoder.stages] == [1, 1, 2, 1]
    assert [s.blocks[0].conv_dw.in_channels for s in peer.encoder.stages] == [16, 32, 64, 128]
    x = torch.randn(1, 48, 308)
    assert peer.memory(cf.to_nodes(x, 28), None).shape == (28, 1, 48)
    assert ours.memory(cf.to_nodes(x, 28), None).shape == (28, 4, 48)
    assert peer(x, torch.zeros(1, 48, 4), torch.zeros(1, 48, 4)).shape == (1, 24, 308)
    with pytest.raises(ValueError, match="unknown encoder"):
        cf.build_model("demo", coords=coords, encoder="resnet")
    with pytest.raises(ValueError, match="memory_layout='tokens'"):
        cf.build_model("demo", coords=coords, encoder="convnext", memory_layout="raw")


def test_array_series_files_with_object_arrays_are_refused(tmp_path):
    from unireplknet.data.timeseries import load_array_series

    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _WritesAFile(marker)
    np.savez(tmp_path / "s.npz", values=np.ones((60, 2), np.float32), timestamps=payload)
    np.save(tmp_path / "s.npy", payload, allow_pickle=True)
    for name in ("s.npz", "s.npy"):
        with pytest.raises(SeriesError, match="object array"):
            load_array_series(tmp_path / name)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------- engine task / CLI
@pytest.fixture(scope="module")
def small_station_dir(tmp_path_factory):
    """44 stations (4 nodes of 11, node tree 2,2), 32 days of hourly values in the official layout."""
    from unireplknet.data.timeseries import (chronological_split, make_synthetic_station_grid,
                                                   write_global_station_folder)

    out = tmp_path_factory.mktemp("stations44")
    write_global_station_folder(out, chronological_split(make_synthetic_station_grid(44, 32, 3), 0), "temp")
    return out


def _cli(argv):
    from unireplknet.tasks.forecast import cli as forecasting_cli

    parser = argparse.ArgumentParser()
    forecasting_cli.add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_builds_the_paper_model_with_a_small_encoder(small_station_dir, monkeypatch, capsys):
    from unireplknet.model import UniRepLKNet
    from unireplknet.tasks.forecast import cli as forecasting_cli
    from unireplknet.zoo import VARIANTS

    built = []
    announce = forecasting_cli._announce
    monkeypatch.setattr(forecasting_cli, "_announce", lambda m: (built.append(m), announce(m)))
    assert _cli(["forecast-train", "--data", str(small_station_dir), "--preset", "paper", "--encoder-size", "a",
                 "--node-list", "2,2", "--dry-run"]) == 0
    (model,) = built
    assert isinstance(model, cf.CorrformerUniRepLKNet) and isinstance(model.encoder, UniRepLKNet)
    assert model.encoder.dims == VARIANTS["a"].dims and model.encoder.kernel_sizes[3] == (11,) * VARIANTS["a"].depths[3]
    assert model.cfg.d_model == 768 and model.image_hw == (192, 192) and model.cfg.with_cp  # paper eq. (2): 48·768
    err = capsys.readouterr().err
    assert f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters" in err and "132 M" in err
    # the memory is the encoder's stage-4 map (6 × 6 = 36 tokens of the last stage), not logits
    model.eval()
    x = torch.randn(4, 48, 11)
    with torch.no_grad():
        memory = model.memory(x, None)
        fmap = model.encoder.forward_features(cf.tokens_to_image(model.enc_embedding(x, None, model._geo(4)),
                                                                 (192, 192)))
    assert fmap.shape == (4, VARIANTS["a"].dims[3], 6, 6)
    torch.testing.assert_close(memory, model.memory_projection(fmap.flatten(2).transpose(1, 2)))


def test_paper_preset_takes_the_papers_recipe():
    from unireplknet.tasks.forecast import ForecastTrainConfig

    cfg = ForecastTrainConfig.with_recipe(data="x", preset="paper")
    assert (cfg.lr, cfg.epochs, cfg.patience, cfg.batch_size) == (1e-4, 10, 3, 1)
    assert (cfg.opt, cfg.sched, cfg.decay_start, cfg.decay_rate, cfg.weight_decay) == ("adam", "step", 1, 0.5, 0.0)
    assert cfg.d_model == 768 and cfg.drop_path == 0.4 and cfg.data_scale == 10.0
    assert ForecastTrainConfig.with_recipe(data="x", preset="paper", lr=3e-4).lr == 3e-4  # a flag still wins
    with pytest.raises(ValueError, match="unknown preset"):
        ForecastTrainConfig.with_recipe(preset="papr")


def _demo_cfg(data, out, **kw):
    from unireplknet.tasks.forecast import ForecastTrainConfig

    # sched 'step' (the paper's halving, not the demo's cosine) so that the learning-rate check below is exact
    base = dict(data=str(data), preset="demo", node_list=(2, 2), d_model=32, train_stride=40, val_stride=8,
                epochs=2, output=str(out), export_deploy=False, sched="step")  # the CLI test covers deploy
    base.update(kw)
    return ForecastTrainConfig.with_recipe(**base)


def test_cli_one_epoch_run_and_forecast_eval_per_group(small_station_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(["forecast-train", "--data", str(small_station_dir), "--preset", "demo", "--node-list", "2,2",
                 "--d-model", "32", "--epochs", "1", "--train-stride", "40", "--val-stride", "8",
                 "-o", str(run), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (run / "last.pth").is_file() and (run / "best.pth").is_file() and (run / "deploy.safetensors").is_file()
    assert not (run / "model.onnx").exists()  # the preset turns ONNX off: the FFT has no ONNX export
    assert _cli(["forecast-eval", str(run / "best.pth"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    groups = out["groups"]
    assert list(groups) == ["temp", "region 1/2 (series 0-21)", "region 2/2 (series 22-43)"]
    assert groups["temp"]["mse"] == pytest.approx(trained["test"]["mse"], rel=1e-5)
    # equal-sized regions: the overall MSE/MAE is their mean; physical units are the files' ÷ 10 (÷ 100 for MSE)
    regions = [groups[k] for k in list(groups)[1:]]
    assert groups["temp"]["mse"] == pytest.approx(sum(g["mse"] for g in regions) / 2, rel=1e-9)
    assert groups["temp"]["mae"] == pytest.approx(sum(g["mae"] for g in regions) / 2, rel=1e-9)
    assert groups["temp"]["mse_physical"] == pytest.approx(groups["temp"]["mse"] / 100)
    assert groups["temp"]["mae_physical"] == pytest.approx(groups["temp"]["mae"] / 10)
    assert "seasonal naive (period 24)" in out["baselines"]
    assert _cli(["forecast-eval", str(run / "best.pth")]) == 0
    text = capsys.readouterr().out
    assert "region 2/2" in text and "MSE phys." in text


def test_corrformer_resume_equals_uninterrupted_run(small_station_dir, tmp_path):
    from unireplknet.engine import fit
    from unireplknet.tasks.forecast import CorrformerForecasting

    # the engine alone (train_forecaster adds the test-set report, covered by the CLI test)
    full = fit(CorrformerForecasting(), _demo_cfg(small_station_dir, tmp_path / "full"))
    fit(CorrformerForecasting(), _demo_cfg(small_station_dir, tmp_path / "part", epochs=1))
    resumed = fit(CorrformerForecasting(), _demo_cfg(small_station_dir, tmp_path / "part", resume="auto"))
    a = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pth", weights_only=True)
    assert a["model_config"]["architecture"] == "corrformer" and a["model_config"] == b["model_config"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    # the rate after epoch e is the paper's 'type1' rate of epoch e + 1 (halved after every epoch)
    assert [h["lr"] for h in full.history] == pytest.approx([cf.paper_learning_rate(e + 2, 1e-3) for e in range(2)])


def test_presets_refuse_data_that_does_not_fit(small_station_dir):
    from unireplknet.tasks.forecast import ForecastTrainConfig, build_forecast_model

    with pytest.raises(SeriesError, match=r"--node-list A,B with A·B = 4"):  # 44 stations = 4 nodes, not 7 × 50
        build_forecast_model(ForecastTrainConfig.with_recipe(data=str(small_station_dir), preset="paper"))
    with pytest.raises(SeriesError, match="must be a folder in the Global Temp/Wind layout"):
        build_forecast_model(ForecastTrainConfig.with_recipe(data="synthetic-grid", preset="demo"))
    with pytest.raises(ValueError, match="add --preset paper"):
        _cli(["forecast-train", "--data", str(small_station_dir), "--encoder-size", "a", "--dry-run"])


@pytest.mark.slow
def test_demo_run_beats_the_naive_baselines_and_stays_near_the_linear_model(tmp_path):
    """The documented demo run (docs/timeseries.md: generated world seed 0, ``--preset demo --seed 0``; about
    225 CPU seconds at one thread) beats last value and seasonal naive on the validation and the test split.
    The ridge linear model of the same inputs is the stronger baseline here: the demo trained in a few CPU
    minutes does not beat it (measured: 25 % higher MSE, explained in the docs), so this checks that the gap
    stays under 30 % instead of pretending otherwise."""
    from unireplknet.data.timeseries import WindowDataset
    from unireplknet.tasks.forecast import ForecastTrainConfig, build_forecast_splits, evaluate_run, train_forecaster

    data = tmp_path / "world"
    global_weather.write(data, num_stations=308, days=120, seed=0)
    torch.set_num_threads(1)
    cfg = ForecastTrainConfig.with_recipe(data=str(data), preset="demo", output=str(tmp_path / "run"),
                                       export_deploy=False, seed=0)
    result = train_forecaster(cfg)
    splits, _ = build_forecast_splits(cfg)
    train = WindowDataset(splits["train"], cfg.seq_len, cfg.label_len, cfg.pred_len)
    val = WindowDataset(splits["val"], cfg.seq_len, cfg.label_len, cfg.pred_len)
    val_groups, val_baselines = evaluate_run(result.model, cfg, val, "cpu", train)
    for split, model_mse, baselines in (("val", val_groups[cfg.variable]["mse"], val_baselines),
                                        ("test", result.extras["test"]["mse"], result.extras["baselines"])):
        assert model_mse < baselines["last value (naive)"]["mse"], (split, model_mse, baselines)
        assert model_mse < baselines["seasonal naive (period 24)"]["mse"], (split, model_mse, baselines)
        assert model_mse < 1.3 * baselines["linear (ridge, same inputs)"]["mse"], (split, model_mse, baselines)

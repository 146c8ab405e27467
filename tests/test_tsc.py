"""Time-series classification: the UCR/UEA archive reader (against hand-written files and aeon's loader), the
series-to-image mappings, the bad inputs, the task through the engine (reproducible bit for bit) and the commands."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unireplknet.data.timeseries.archive import (ArchiveFormatError, find_problem_files, load_problem, read_ts,
                                                 read_tsv)
from unireplknet.modalities.series_image import SeriesImageConfig, image_shape, prepare_series, series_to_image
from unireplknet.tasks.tsc.task import stratified_split

TS_HEADER = "# a comment\n@problemName Toy\n@timeStamps false\n@missing true\n@univariate {uni}\n{dims}" \
            "@equalLength {equal}\n@classLabel true {labels}\n@data\n"


def write_ts(path: Path, lines, uni=True, dims=1, equal=True, labels="a b") -> Path:
    dims_line = "" if uni else f"@dimensions {dims}\n"
    path.write_text(TS_HEADER.format(uni=str(uni).lower(), dims=dims_line, equal=str(equal).lower(), labels=labels)
                    + "\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------------- reader
def test_read_ts_multivariate_unequal_with_missing(tmp_path):
    path = write_ts(tmp_path / "X_TRAIN.ts", ["1,2,?,4:5,6,7,8:a", "0.5,1e3:?,2:b"], uni=False, dims=2,
                    equal=False)
    split = read_ts(path)
    assert split.labels == ["a", "b"]
    assert split.channels == 2 and split.lengths == [4, 2]
    np.testing.assert_array_equal(split.series[0][1], [5, 6, 7, 8])
    assert math.isnan(split.series[0][0, 2]) and split.series[0][0, 3] == 4
    np.testing.assert_array_equal(split.series[1][0], [0.5, 1000.0])
    assert split.declared_classes == ["a", "b"]


def test_read_tsv_strips_padding_keeps_inner_missing(tmp_path):
    path = tmp_path / "X_TRAIN.tsv"
    path.write_text("1\t0.1\t0.2\tNaN\t0.4\n-1\t3\t4\tNaN\tNaN\n")
    split = read_tsv(path)
    assert split.labels == ["1", "-1"]
    assert split.lengths == [4, 2]  # trailing NaNs are padding, the inner one a missing value
    assert math.isnan(split.series[0][0, 2])


@pytest.mark.parametrize("lines, message", [
    (["1,2,3:a", "1,2:3,4:a"], "line 10: 2 channel(s) where the file has 1"),
    (["1,2,x:a"], "line 9: channel 1: 'x' is not a number"),
    (["1,2,3:c"], "line 9: class label 'c' is not among the declared ones"),
    (["1,2,3"], "line 9: no class label"),
])
def test_malformed_ts_names_file_and_line(tmp_path, lines, message):
    path = write_ts(tmp_path / "Bad_TRAIN.ts", lines)
    with pytest.raises(ArchiveFormatError) as e:
        read_ts(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_ts_without_data_section_and_equal_length_lie(tmp_path):
    path = tmp_path / "A_TRAIN.ts"
    path.write_text("@problemName A\n@classLabel true 1 2\n")
    with pytest.raises(ArchiveFormatError, match="no @data line"):
        read_ts(path)
    path = write_ts(tmp_path / "B_TRAIN.ts", ["1,2,3:a", "1,2:b"], equal=True)
    with pytest.raises(ArchiveFormatError, match="@equalLength true but the series differ"):
        read_ts(path)


def _problem(tmp_path, train_lines, test_lines, name="Toy", **kw):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    write_ts(folder / f"{name}_TRAIN.ts", train_lines, **kw)
    write_ts(folder / f"{name}_TEST.ts", test_lines, **kw)
    return folder


def test_archive_layout_and_problem_folder(tmp_path):
    root = tmp_path / "archive"
    (root / "Univariate_ts").mkdir(parents=True)
    folder = _problem(root / "Univariate_ts", ["1,2,3:a", "3,2,1:b"], ["1,2,4:b"], name="Toy")
    assert find_problem_files(folder)[0] == "Toy"
    assert find_problem_files(root, "Toy")[1] == folder / "Toy_TRAIN.ts"
    problem = load_problem(root, "Toy")
    assert problem.class_names == ["a", "b"] and problem.targets(problem.test).tolist() == [1]


def test_bad_problems_are_refused(tmp_path):
    # a label in TEST that TRAIN lacks
    folder = _problem(tmp_path / "1", ["1,2,3:a", "3,2,1:a", "1,1,2:b"], ["1,2,3:c"], labels="a b c")
    with pytest.raises(ArchiveFormatError, match="'c' appear in TEST but never in TRAIN"):
        load_problem(folder)
    # a series of length 1
    folder = _problem(tmp_path / "2", ["1,2,3:a", "3:b"], ["1,2,3:a"], equal=False)
    with pytest.raises(ArchiveFormatError, match="series 2 has 1 value"):
        load_problem(folder)
    # a different channel count in TRAIN and TEST
    folder = tmp_path / "3" / "Toy"
    folder.mkdir(parents=True)
    write_ts(folder / "Toy_TRAIN.ts", ["1,2:3,4:a", "1,2:3,5:b"], uni=False, dims=2)
    write_ts(folder / "Toy_TEST.ts", ["1,2:a"])
    with pytest.raises(ArchiveFormatError, match="1 channel.* but .* has 2"):
        load_problem(folder)
    # a series with no value at all
    folder = _problem(tmp_path / "4", ["1,2,3:a", "?,?,?:b"], ["1,2,3:a"])
    with pytest.raises(ArchiveFormatError, match="no value at all"):
        load_problem(folder)


def test_all_missing_channel_becomes_zeros_and_missing_values_are_interpolated():
    series = np.array([[1.0, np.nan, 3.0, 5.0], [np.nan] * 4])
    prepared = prepare_series(series, 4)
    assert np.all(prepared[1] == 0.0)
    filled = np.array([1.0, 2.0, 3.0, 5.0])  # linear interpolation of the gap
    np.testing.assert_allclose(prepared[0], (filled - filled.mean()) / filled.std(), rtol=1e-6)


# ----------------------------------------------------------------------------------------------- images
def test_prepare_series_resamples_linearly_and_normalises():
    ramp = np.arange(11, dtype=np.float64)[None]  # a line stays a line under linear resampling
    out = prepare_series(ramp, 21)
    expected = np.linspace(0, 10, 21)
    np.testing.assert_allclose(out[0], (expected - 5) / ramp.std(), rtol=1e-5, atol=1e-6)


def test_rows_and_gaf_images():
    rng = np.random.default_rng(0)
    series = rng.normal(size=(3, 50))
    rows_cfg = SeriesImageConfig("rows", channels=3, length=64, height=32)
    image = series_to_image(series, rows_cfg)
    assert image.shape == image_shape(rows_cfg) == (2, 33, 64)
    np.testing.assert_array_equal(image[0, 11], prepare_series(series, 64)[1])  # rows 11-21 hold channel 2
    np.testing.assert_array_equal(image[1], np.ones((33, 64)))  # the level plane
    plain_cfg = SeriesImageConfig("rows", channels=3, length=64, height=32, level_plane=False)
    np.testing.assert_array_equal(series_to_image(series, plain_cfg), image[:1])
    # a checkpoint written before the plane existed keeps its one-channel images
    assert SeriesImageConfig.from_dict(dict(mapping="rows", channels=3, length=64, height=32)).in_chans == 1
    gaf_cfg = SeriesImageConfig("gaf", channels=3, gaf_size=16)
    gaf = series_to_image(series, gaf_cfg)
    assert gaf.shape == image_shape(gaf_cfg) == (3, 16, 16)
    x = prepare_series(series, 16)[0].astype(np.float64)
    x = 2 * (x - x.min()) / (x.max() - x.min()) - 1
    phi = np.arccos(x)
    np.testing.assert_allclose(gaf[0], np.cos(phi[:, None] + phi[None, :]), atol=1e-5)  # the definition


def test_level_plane_keeps_the_series_amplitude_through_the_stem():
    """The default network's stem is conv3×3 → channels-first LayerNorm with zero conv bias at init, so on a
    one-channel rows image it maps a series and the same series times 2 to identical features (LayerNorm is scale
    invariant): the network starts blind to the local level, and on GunPoint fitted TRAIN at chance on validation.
    With the constant plane the conv adds an offset the LayerNorm cannot divide out."""
    from unireplknet.factory import build_model
    from unireplknet.tasks.tsc.task import TSC_MODEL_KWARGS

    series = np.sin(np.linspace(0, 6, 80))[None] + 0.1 * np.arange(80)[None] / 80
    torch.manual_seed(0)
    for level_plane in (False, True):
        cfg = SeriesImageConfig("rows", channels=1, length=64, height=32, level_plane=level_plane)
        stem = build_model("custom", 2, cfg.in_chans, dict(TSC_MODEL_KWARGS)).downsample_layers[0].eval()
        image = torch.from_numpy(series_to_image(series, cfg))[None]
        doubled = image.clone()
        doubled[:, 0] *= 2  # the series channel only
        with torch.no_grad():
            change = float((stem(doubled) - stem(image)).abs().mean() / stem(image).abs().mean())
        if level_plane:
            assert change > 0.1
        else:  # LayerNorm(W·2x) = LayerNorm(W·x) but for its eps at pixels of almost no signal
            assert change < 0.01


def test_stratified_split_keeps_every_class_and_is_seeded():
    targets = np.array([0] * 10 + [1] * 5 + [2])
    train, val = stratified_split(targets, 0.2, seed=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(16))
    assert np.bincount(targets[val], minlength=3).tolist() == [2, 1, 0]  # the single-series class stays in training
    again = stratified_split(targets, 0.2, seed=3)
    assert np.array_equal(val, again[1]) and not np.array_equal(val, stratified_split(targets, 0.2, seed=4)[1])


# ----------------------------------------------------------------------------------------------- aeon
AEON_PROBLEMS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "PickupGestureWiimoteZ",
                 "BasicMotions", "JapaneseVowels")


def _aeon_data() -> Path:
    aeon = pytest.importorskip("aeon")
    return Path(aeon.__file__).resolve().parent / "datasets" / "data"


@pytest.mark.parametrize("name", AEON_PROBLEMS)
def test_reader_matches_aeon_loader(name):
    root = _aeon_data()
    datasets = pytest.importorskip("aeon.datasets")  # its loader needs aeon's dependencies (pandas …)
    problem = load_problem(root / name)
    for split, ours in (("TRAIN", problem.train), ("TEST", problem.test)):
        X, y = datasets.load_from_ts_file(str(root / name / f"{name}_{split}.ts"))
        # aeon lowercases every line it reads (BasicMotions' 'Standing' becomes 'standing'); we keep labels as written
        assert [str(v) for v in y] == [label.lower() for label in ours.labels]
        assert len(X) == len(ours.series)
        for a, b in zip(X, ours.series):
            np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), b)


def test_ts_and_tsv_of_gunpoint_agree():
    root = _aeon_data() / "GunPoint"
    ts, tsv = read_ts(root / "GunPoint_TRAIN.ts"), read_tsv(root / "GunPoint_TRAIN.tsv")
    assert ts.labels == tsv.labels
    np.testing.assert_allclose(np.stack(ts.series), np.stack(tsv.series), rtol=1e-6)


# ----------------------------------------------------------------------------------------------- training
TINY_KWARGS = {"depths": [1, 1, 1, 1], "dims": [8, 8, 16, 16], "kernel_sizes": [[7], [3], [3], [3]]}


def _tiny_problem(tmp_path: Path) -> Path:
    """Two classes of noisy sines (slow vs fast), unequal lengths, two channels, a missing value."""
    rng = np.random.default_rng(0)
    lines = {"TRAIN": [], "TEST": []}
    for split, n in (("TRAIN", 16), ("TEST", 8)):
        for i in range(n):
            label = i % 2
            length = int(rng.integers(30, 45))
            t = np.linspace(0, 1, length)
            a = np.sin(2 * np.pi * (2 + 4 * label) * t) + 0.1 * rng.normal(size=length)
            b = np.cos(2 * np.pi * (2 + 4 * label) * t)
            text_a = ",".join("?" if j == 3 else f"{v:.5f}" for j, v in enumerate(a))
            lines[split].append(f"{text_a}:{','.join(f'{v:.5f}' for v in b)}:{'slow fast'.split()[label]}")
    folder = tmp_path / "Sines"
    folder.mkdir()
    for split in ("TRAIN", "TEST"):
        write_ts(folder / f"Sines_{split}.ts", lines[split], uni=False, dims=2, equal=False, labels="slow fast")
    return folder


def _config(data: Path, out: Path, **kw):
    from unireplknet.tasks.tsc.task import TscConfig

    options = dict(data=str(data), output=str(out), epochs=2, batch_size=4, length=32, model_kwargs=TINY_KWARGS,
                   tensorboard=False, export_onnx=False, warmup_epochs=0.0)
    options.update(kw)
    return TscConfig(**options)


def test_training_is_reproducible_bit_for_bit(tmp_path):
    from unireplknet.tasks.tsc.task import train_tsc

    data = _tiny_problem(tmp_path)
    first = train_tsc(_config(data, tmp_path / "a", seed=5))
    second = train_tsc(_config(data, tmp_path / "b", seed=5))
    assert first.extras["test"] == second.extras["test"] and first.extras["val"] == second.extras["val"]
    a = torch.load(first.checkpoint, weights_only=True)["model"]
    b = torch.load(second.checkpoint, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first.extras["test"]["series"] == 8 and first.class_names == ["slow", "fast"]
    assert first.deploy_file is not None and first.deploy_file.is_file()


def test_cli_train_eval_predict(tmp_path, capsys):
    from unireplknet.cli import main

    data = _tiny_problem(tmp_path)
    out = tmp_path / "run"
    assert main(["tsc-train", "--data", str(data), "--output", str(out), "--epochs", "1", "--batch-size", "4",
                 "--length", "32", "--model-kwargs", json.dumps(TINY_KWARGS), "--no-onnx", "--no-tensorboard",
                 "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["problem"] == "Sines" and summary["test_acc"] == summary["test"]["acc"]
    assert main(["tsc-eval", str(out / "best.pth"), "--data", str(data), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["acc"] == pytest.approx(summary["test_acc"]) and evaluated["series"] == 8
    assert main(["tsc-predict", str(out / "best.pth"), str(data / "Sines_TEST.ts"), "--json", "--top-k", "1"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    correct = sum(p["top"][0]["label"] == p["label"] for p in predictions)
    assert len(predictions) == 8 and 100.0 * correct / 8 == pytest.approx(summary["test_acc"])


def test_a_channel_missing_in_a_series_loads_and_draws_as_zeros(tmp_path):
    """The documented handling of an all-missing channel, through the reader and the image (not only prepare_series):
    the series loads, its other channel is untouched, the empty channel's rows are zeros (its normalised mean)."""
    folder = tmp_path / "Gap"
    folder.mkdir()
    write_ts(folder / "Gap_TRAIN.ts", ["1,2,3,4:?,?,?,?:a", "4,3,2,1:1,2,2,1:b"], uni=False, dims=2, labels="a b")
    write_ts(folder / "Gap_TEST.ts", ["1,2,3,4:1,1,2,2:a"], uni=False, dims=2, labels="a b")
    problem = load_problem(folder)
    cfg = SeriesImageConfig("rows", channels=2, length=8, height=32, level_plane=False)
    image = series_to_image(problem.train.series[0], cfg)
    rows = image.shape[1] // 2
    np.testing.assert_array_equal(image[0, rows:], np.zeros((image.shape[1] - rows, 8)))
    np.testing.assert_allclose(image[0, 0], prepare_series(np.array([[1.0, 2.0, 3.0, 4.0]]), 8)[0], rtol=1e-6)


def test_downsample_norm_reaches_the_network_checkpoint_and_deploy_file(tmp_path):
    """--downsample-norm goes into the model, the run's model_config (so tsc-eval rebuilds it) and the deploy file
    (whose fused network gives the trained model's logits); a timm peer keeps its own norms."""
    from torch import nn

    from unireplknet.loading import load_model
    from unireplknet.model import LayerNorm
    from unireplknet.tasks.tsc.task import TscConfig, load_tsc_model, series_images, train_tsc

    data = _tiny_problem(tmp_path)
    for norm, kind in (("batchnorm", nn.BatchNorm2d), ("layernorm", LayerNorm)):
        r = train_tsc(_config(data, tmp_path / norm, downsample_norm=norm, epochs=1))
        assert r.model_config["model_kwargs"]["downsample_norm"] == norm
        model, series_cfg, _ = load_tsc_model(r.best_checkpoint)
        assert model.downsample_norm == norm
        assert isinstance(model.downsample_layers[1][1], kind)
        deployed = load_model(r.deploy_file)
        assert deployed.downsample_norm == norm and deployed.deploy
        images = series_images(load_problem(data).test, series_cfg)
        with torch.no_grad():
            assert torch.allclose(deployed(images), model(images), rtol=1e-4, atol=1e-4)
    peer = TscConfig(model="resnet10t", model_kwargs={}, downsample_norm="batchnorm")
    assert "downsample_norm" not in peer.network_kwargs()


def test_epochs_default_to_a_step_budget():
    """Without --epochs a run gets about train_steps optimizer steps (ceil(series / batch) per epoch), at most 100
    epochs; an explicit epoch count wins."""
    from unireplknet.tasks.tsc.task import MAX_AUTO_EPOCHS, TscConfig

    cfg = TscConfig(batch_size=16, train_steps=300)
    assert cfg.resolved_epochs(160) == 30  # 10 steps an epoch
    assert cfg.resolved_epochs(216) == 22  # 14 steps an epoch: 308 steps, the least epochs reaching 300
    assert cfg.resolved_epochs(40) == MAX_AUTO_EPOCHS == 100  # 3 steps an epoch would need 100 epochs
    assert cfg.resolved_epochs(8) == 100  # 1 step an epoch: capped
    assert TscConfig(epochs=7).resolved_epochs(160) == 7

"""Issue 29, items 3, 4 and 6: sizes checked before they are believed, decoders with bounds, time series on trust.

The inputs are the second hostile corpus (``make_bounds_corpus`` of scripts/make_hostile_corpus.py, at the small
scale); every refusal here happens before the claimed size is allocated, so each test stays cheap, and the
peak-memory growth of the test process is checked to prove it.
"""
from __future__ import annotations

import contextlib
import io
import math
import resource
import sys

import numpy as np
import pytest
import torch

from conftest import load_repo_script
from unireplknet.cli import main

GB = 1e9


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_repo_script("scripts/make_hostile_corpus.py").make_bounds_corpus(
        tmp_path_factory.mktemp("bounds"), full_size=False)


@pytest.fixture
def pinned_limit(monkeypatch):
    """The same memory limit on every machine (16 GB), as the sweep uses."""
    monkeypatch.setenv("UNIREPLKNET_MAX_MEMORY_GB", "16")


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _refused(argv, *words):
    before = _peak_bytes()
    code, _, err = _run(argv)
    lines = [line for line in err.splitlines() if line.startswith(f"unireplknet {argv[0]}: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert _peak_bytes() - before < 1 * GB  # refused before the claimed size was allocated
    return lines[0]


# ------------------------------------------------------------------------------------------------- item 3
def test_the_weight_estimate_counts_exactly_what_the_model_allocates():
    from unireplknet import UniRepLKNet
    from unireplknet.limits import model_bytes

    tiny = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((13,), (13,), (3,), (3,)))
    real = UniRepLKNet(num_classes=7, **tiny)
    allocated = sum(t.numel() * t.element_size() for t in list(real.parameters()) + list(real.buffers()))
    assert model_bytes(lambda: UniRepLKNet(num_classes=7, **tiny)) == allocated


def test_sizes_that_files_and_flags_claim_are_refused_before_allocating(corpus, pinned_limit, tmp_path):
    # metadata whose class count disagrees with the weights: named before a 2.5 M-class head is made
    _refused(["audio-predict", corpus["many_classes_audio_pth"], corpus["good_wav"]], "(2500000", "metadata")
    # a tiny file of zero-element tensors announcing 12 M classes
    _refused(["predict", corpus["zero_element_safetensors"], corpus["png8"]], "zero-element tensors", "no weights")
    # deflated records that torch.load would inflate in full
    _refused(["predict", corpus["inflating_pth"], corpus["png8"]], "inflate")
    # input sizes from metadata and from the flag; the number and the limit are named
    _refused(["predict", corpus["huge_input_safetensors"], corpus["png8"]], "60000×60000", "16.0 GB")
    _refused(["predict", corpus["good_deploy_safetensors"], corpus["png8"], "--input-size", "60000"],
             "UNIREPLKNET_MAX_MEMORY_GB")
    _refused(["train", "--input-size", "100000", "--epochs", "1", "-o", tmp_path / "a", "--quiet"], "57.5 TB")
    _refused(["train", "--model", "custom", "--model-kwargs", '{"depths": [1, 1, 1, 1], "dims": [100000, 100000, '
              '100000, 100000], "kernel_sizes": [[3], [3], [3], [3]]}', "--epochs", "1", "-o", tmp_path / "b", "--quiet"], "weights", "16.0 GB")


def test_forecast_and_dense_readers_check_sizes_before_allocating(corpus, pinned_limit):
    # a forecaster whose model_config claims 10^9 stations (their coordinates alone: 8 GB), a 2,500,000-class
    # segmenter: each named by the tensor that disagrees, before the claimed model is allocated
    line = _refused(["forecast-eval", corpus["wide_forecast_pth"]], "1,000,000,000 stations", "tensor geo")
    assert "(1, 8)" in line
    line = _refused(["seg-eval", corpus["many_classes_dense_pth"]], "decode_head.conv_seg.weight", "(2500000, 16")
    assert "(3, 16, 1, 1)" in line


# ------------------------------------------------------------------------------------------------- item 4
def test_decoders_refuse_what_would_expand_beyond_their_limits(corpus, monkeypatch):
    from unireplknet.data.audio import load_audio
    from unireplknet.data.folder import ImageTooLargeError, open_image
    from unireplknet.data.timeseries import SeriesError, load_array_series, load_csv_series
    from unireplknet.data.video import read_video
    from unireplknet.data.video.files import VideoDecodeError
    from unireplknet.modalities.audio import AudioError

    before = _peak_bytes()
    with pytest.raises(ImageTooLargeError, match="UNIREPLKNET_MAX_ASPECT_RATIO"):
        open_image(corpus["wide_png"], "L")  # 1 × 1,000,000: under the pixel limit, but resized it is huge
    with pytest.raises(AudioError, match="7,200 s .*UNIREPLKNET_MAX_AUDIO_SECONDS"):
        load_audio(corpus["long_wav"])  # refused by its header: the 635 MB of samples are never read
    monkeypatch.setenv("UNIREPLKNET_MAX_VIDEO_PIXELS", "4000000")
    with pytest.raises(VideoDecodeError, match="UNIREPLKNET_MAX_VIDEO_PIXELS"):
        read_video(corpus["frames_gif"])  # 40 frames of 400×400 = 6.4 M pixels
    monkeypatch.setenv("UNIREPLKNET_MAX_SERIES_BYTES", "10000000")
    with pytest.raises(SeriesError, match="UNIREPLKNET_MAX_SERIES_BYTES"):
        load_csv_series(corpus["sparse_csv"])
    with pytest.raises(SeriesError, match="line 7.*UNIREPLKNET_MAX_CSV_CELL"):
        load_csv_series(corpus["long_cell_csv"])
    with pytest.raises(SeriesError, match=r"no values \(shape \(1000000000, 0\)\)"):
        load_array_series(corpus["empty_npy"])
    assert _peak_bytes() - before < 0.5 * GB
    # each limit can be raised: the same GIF is read whole with a higher one
    monkeypatch.setenv("UNIREPLKNET_MAX_VIDEO_PIXELS", "7000000")
    assert read_video(corpus["frames_gif"]).shape == (40, 400, 400, 3)


def test_resampling_at_any_rate_is_the_same_filter_in_bounded_memory(monkeypatch):
    from unireplknet.modalities import audio

    # the per-output-sample evaluation reproduces the polyphase bank where both can run
    x = torch.randn(2, 44100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    reference = audio.resample(x, 44100, 16000)
    monkeypatch.setattr(audio, "MAX_POLYPHASE_ENTRIES", 16)
    assert torch.allclose(audio.resample(x, 44100, 16000), reference, atol=1e-10)
    monkeypatch.undo()
    # 44,101 Hz -> 16 kHz: a bank of 16,000 × 44,135 entries (5.6 GB) before; a 440 Hz tone stays that tone
    before = _peak_bytes()
    t = torch.arange(44101, dtype=torch.float64)
    y = audio.resample(torch.sin(2 * math.pi * 440 * t / 44101)[None], 44101, 16000)
    assert _peak_bytes() - before < 0.5 * GB
    expected = torch.sin(2 * math.pi * 440 * torch.arange(y.shape[-1], dtype=torch.float64) / 16000)
    assert y.shape[-1] == math.ceil(44101 * 16000 / 44101 - 1e-9)
    assert (y[0, 200:-200] - expected[200:-200]).abs().max() < 1e-3


# ------------------------------------------------------------------------------------------------- item 6
def test_time_series_order_duplicates_gaps_and_float_timestamps(corpus, tmp_path):
    from unireplknet.data.timeseries import SeriesError, WindowDataset, load_array_series, load_csv_series

    with pytest.raises(SeriesError, match="not sorted by time: CSV line 252"):
        load_csv_series(corpus["unsorted_csv"], "date")
    with pytest.raises(SeriesError, match="duplicated timestamps: CSV lines 121 and 122"):
        load_csv_series(corpus["duplicated_csv"], "date")
    with pytest.raises(SeriesError, match="gap.*61 h between CSV line 151 .* and CSV line 152.*--gap-policy"):
        load_csv_series(corpus["gap_csv"], "date")
    with pytest.raises(SeriesError, match="floating-point"):
        load_array_series(corpus["float_times_npz"])
    # split: every window is contiguous in time (consecutive timestamps one hour apart)
    split = load_csv_series(corpus["gap_csv"], "date", gap_policy="split")
    windows = WindowDataset(split, seq_len=24, label_len=12, pred_len=8)
    spans = [split.timestamps[s:s + 32] for s in windows.starts]
    assert spans and all(np.all(np.diff(s) == np.timedelta64(1, "h")) for s in spans)
    assert len(windows) == (150 - 32 + 1) + (150 - 32 + 1)  # the windows of both sides, none across
    # fill: the 60 missing hours are inserted and, with interpolate, lie on the line between their neighbours
    with pytest.raises(SeriesError, match="NaN"):
        load_csv_series(corpus["gap_csv"], "date", gap_policy="fill")
    filled = load_csv_series(corpus["gap_csv"], "date", gap_policy="fill", nan_policy="interpolate")
    assert filled.num_steps == 360 and np.all(np.diff(filled.timestamps) == np.timedelta64(1, "h"))
    left, right = filled.values[149, 0], filled.values[210, 0]
    assert np.allclose(filled.values[150:210, 0], left + (right - left) * np.arange(1, 61) / 61, atol=1e-5)


def test_forecast_train_names_the_gap_policy(corpus, tmp_path):
    line = _refused(["forecast-train", "--data", corpus["gap_csv"], "-o", tmp_path / "run"], "--gap-policy")
    assert "61 h between CSV line 151" in line


# ------------------------------------------------------------------------------------------------- the sweep
def _sweep_module():
    return load_repo_script("scripts/sweep_hostile_corpus.py")


def test_the_sweep_passes_one_case_of_each_class(corpus, tmp_path):
    sweep = _sweep_module()
    cases, seen = [], set()
    for case in sweep.all_cases():
        if case[1] not in seen and case[0] in {c[0] for c in sweep.corpus_module.BOUNDS_CASES}:
            seen.add(case[1])
            cases.append(case)
    assert seen == {"sizes", "decoders", "series"}
    results = sweep.sweep(corpus, cases, tmp_path, sweep.corpus_module.SMALL_LIMITS)
    assert all(not r["problems"] for r in results), sweep.format_report(results)
    assert all(r["exit"] == 2 and r["error"] for r in results)


@pytest.mark.slow
def test_the_full_sweep_passes(tmp_path):
    assert _sweep_module().main(["--workdir", str(tmp_path)]) == 0

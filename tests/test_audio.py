"""Audio modality: reading, image layout, augmentation, datasets, metrics, model, training loop and CLI."""
from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from unireplknet.data.audio import (AudioClipDataset, audio_folder_dataset, load_audio, mulaw_decode,
                                    speech_commands_datasets, spoken_digits_datasets)
from unireplknet.modalities.audio import (AudioAugment, AudioConfig, AudioError, fbank_to_image, kaldi_fbank,
                                          spec_augment, waveform_fbank, waveform_to_image)
from unireplknet.tasks.audio.task import (
    AudioClassifier,
    AudioTrainConfig,
    average_precision,
    mean_average_precision,
    train_audio,
)
from conftest import load_repo_script


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors gain nothing from intra-op threads, and on a shared, loaded CPU idle OpenMP workers spinning
    # make these tests ~10× slower; the previous setting is restored afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13,), (3,)))


def _write_wav(path: Path, x: np.ndarray, rate: int, width: int = 2) -> None:
    """x: (samples,) or (samples, channels) floats in [-1, 1]."""
    x = np.atleast_2d(x.T).T if x.ndim == 1 else x
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            w.writeframes(np.round(x * 127 + 128).astype(np.uint8).tobytes())
        elif width == 2:
            w.writeframes(np.round(x * 32767).astype("<i2").tobytes())
        elif width == 3:
            v = np.round(x * (2 ** 23 - 1)).astype(np.int32).reshape(-1)
            b = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8)
            w.writeframes(b.tobytes())


def _tone(freq: float, rate: int = 16000, seconds: float = 0.3) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


# ----------------------------------------------------------------------------------------------- reading
def test_mulaw_decode_inverts_the_generator_encoding():
    mod = load_repo_script("scripts/make_spoken_digits.py")
    x = np.linspace(-1, 1, 2001)
    y = mulaw_decode(mod.mulaw_encode(x))
    # The code spacing in the companded domain is 2/255; mapped back through the derivative of the expansion,
    # one step at amplitude |x| is (1 + 255|x|) ln(256) / (255 * 127.5). Within one step that local width grows
    # by at most exp(ln(256) / 127.5), so the rounding error is at most half a step times that factor.
    step = (1 + 255 * np.abs(x)) * np.log(256) / (255 * 127.5)
    assert np.all(np.abs(y - x) <= 0.5 * step * np.exp(np.log(256) / 127.5) + 1e-7)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_load_wav_bit_depths_and_stereo_to_mono(tmp_path, width):
    left, right = _tone(440.0), _tone(440.0) * 0.5
    _write_wav(tmp_path / "a.wav", np.stack([left, right], axis=1), 16000, width)
    x, rate = load_audio(tmp_path / "a.wav")
    assert rate == 16000 and x.shape == (1, len(left))
    quant = {1: 1 / 127, 2: 1 / 32767, 3: 1 / (2 ** 23 - 1)}[width]
    np.testing.assert_allclose(x[0].numpy(), 0.5 * (left + right), atol=quant + 1e-6)


def test_wrong_sample_rate_is_resampled_or_refused(tmp_path):
    _write_wav(tmp_path / "a.wav", _tone(440.0, rate=8000), 8000)
    x, rate = load_audio(tmp_path / "a.wav", 16000)
    assert rate == 16000 and x.shape[-1] == 2 * int(8000 * 0.3)
    t = np.arange(x.shape[-1]) / 16000
    np.testing.assert_allclose(x[0, 200:-200].numpy(), 0.5 * np.sin(2 * np.pi * 440 * t[200:-200]), atol=2e-3)
    with pytest.raises(AudioError, match="8000 Hz.*16000 Hz"):
        load_audio(tmp_path / "a.wav", 16000, on_rate_mismatch="error")


def test_unreadable_and_missing_files_raise_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "bad.wav").write_bytes(b"this is not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    _write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "a.flac").write_bytes(b"fLaC")
    monkeypatch.setitem(sys.modules, "soundfile", None)  # as if the audio extra were not installed
    with pytest.raises(AudioError, match=r"unireplknet\[audio\]"):
        load_audio(tmp_path / "a.flac")


# ----------------------------------------------------------------------------------------------- image
def test_image_layout_padding_and_normalisation():
    cfg = AudioConfig(target_frames=40, num_mel_bins=32, norm_mean=-3.0, norm_std=2.0)
    wave_ = torch.from_numpy(_tone(1000.0, seconds=0.2)).float()  # 18 frames
    fb = kaldi_fbank(wave_ - wave_.mean(), num_mel_bins=32)
    img = waveform_to_image(wave_, cfg)
    assert img.shape == (1, 32, 40)  # H = frequency, W = time (official orientation)
    torch.testing.assert_close(img[0, :, :18] * 4.0 - 3.0, fb.T, rtol=0, atol=1e-5)
    # Padding is zeros in the log-mel domain (AST), i.e. (0 - mean) / (2 std) after normalisation.
    assert torch.all(img[0, :, 18:] == 0.75)
    # Cutting keeps the first frames.
    cut = fbank_to_image(fb, AudioConfig(target_frames=10, num_mel_bins=32), normalize=False)
    torch.testing.assert_close(cut[0], fb[:10].T)


def test_spec_augment_masks_one_band_per_axis():
    img = torch.arange(1 * 20 * 30, dtype=torch.float32).reshape(1, 20, 30) + 1.0
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        out = spec_augment(img, 8, 6, generator=g)
        zero = out == 0
        rows = zero.all(dim=2)[0]  # fully masked frequency rows
        cols = zero.all(dim=1)[0]  # fully masked time columns
        assert int(rows.sum()) < 8 and int(cols.sum()) < 6
        # every zero lies in a masked row or column, and masked rows/columns are contiguous
        assert torch.equal(zero[0], rows[:, None] | cols[None, :])
        for mask in (rows, cols):
            idx = torch.nonzero(mask).flatten()
            if len(idx):
                assert int(idx[-1] - idx[0]) + 1 == len(idx)
        assert torch.equal(out[~zero], img[~zero])


def test_waveform_mixup_gives_soft_labels():
    clips = [torch.from_numpy(_tone(f)).float() for f in (300.0, 900.0, 2000.0)]
    cfg = AudioConfig(target_frames=32, num_mel_bins=32)
    ds = AudioClipDataset(clips, [0, 1, 2], 3, cfg, AudioAugment(mixup=1.0, freq_mask=0, time_mask=0, noise=0, roll=0))
    mixed = 0
    for i in range(3):
        img, y = ds[i]
        assert img.shape == (1, 32, 32)
        assert abs(float(y.sum()) - 1.0) < 1e-6 and float(y[i]) > 0
        mixed += int((y > 0).sum() == 2)
    assert mixed >= 1  # λ ~ Beta(10, 10) is never 0 or 1: a partner other than the clip itself shows up


def test_loader_workers_draw_different_augmentations():
    from unireplknet.tasks.audio.task import _loader

    clip = torch.from_numpy(_tone(500.0)).float()
    cfg = AudioConfig(target_frames=32, num_mel_bins=32)
    ds = AudioClipDataset([clip] * 4, [0] * 4, 1, cfg, AudioAugment(mixup=0, freq_mask=0, time_mask=0, noise=0.1, roll=0))
    images = [batch.inputs for batch in _loader(ds, 1, False, workers=2, seed=0)]
    # Worker 0 gets clips 0 and 2, worker 1 clips 1 and 3: same clip, same position in each worker's stream.
    assert not torch.equal(images[0], images[1])


# ----------------------------------------------------------------------------------------------- datasets
def test_audio_folder_labels_by_subfolder(tmp_path):
    for name, f in (("high", 2000.0), ("low", 200.0)):
        (tmp_path / name).mkdir()
        for k in range(2):
            _write_wav(tmp_path / name / f"{k}.wav", _tone(f + 10 * k), 16000)
    (tmp_path / "low" / "notes.txt").write_text("not audio")
    ds = audio_folder_dataset(tmp_path, AudioConfig(target_frames=32))
    assert ds.class_names == ["high", "low"] and ds.labels == [0, 0, 1, 1]
    img, y = ds[3]
    assert img.shape == (1, 128, 32) and y.tolist() == [0.0, 1.0]
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(AudioError, match="no audio files"):
        audio_folder_dataset(tmp_path / "empty", AudioConfig())
    with pytest.raises(AudioError, match="no class sub-folders"):
        audio_folder_dataset(tmp_path / "empty" / "a", AudioConfig())


def test_speech_commands_split_follows_the_lists(tmp_path):
    for word in ("no", "yes"):
        (tmp_path / word).mkdir()
        for k in range(3):
            _write_wav(tmp_path / word / f"s{k}_nohash_0.wav", _tone(300.0), 16000)
    (tmp_path / "_background_noise_").mkdir()
    _write_wav(tmp_path / "_background_noise_" / "white.wav", _tone(300.0), 16000)
    (tmp_path / "validation_list.txt").write_text("yes/s0_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/s1_nohash_0.wav\nyes/s2_nohash_0.wav\n")
    parts = speech_commands_datasets(tmp_path, AudioConfig(target_frames=32))
    assert parts["train"].class_names == ["no", "yes"]
    names = {k: sorted(f"{p.parent.name}/{p.name}" for p in v.items) for k, v in parts.items()}
    assert names["val"] == ["yes/s0_nohash_0.wav"]
    assert names["test"] == ["no/s1_nohash_0.wav", "yes/s2_nohash_0.wav"]
    assert len(names["train"]) == 3
    (tmp_path / "validation_list.txt").unlink()
    with pytest.raises(AudioError, match="validation_list"):
        speech_commands_datasets(tmp_path)


def test_embedded_spoken_digits_split_by_voice():
    parts = spoken_digits_datasets(AudioConfig(target_frames=64))
    assert [len(parts[s]) for s in ("train", "val", "test")] == [80, 20, 20]
    assert parts["train"].class_names[:3] == ["zero", "one", "two"]
    for split in ("val", "test"):
        assert sorted(parts[split].labels) == sorted(list(range(10)) * 2)
    img, y = parts["test"][0]
    assert img.shape == (1, 128, 64) and torch.isfinite(img).all()


# ----------------------------------------------------------------------------------------------- metrics
def _ap_by_definition(scores, labels):
    # Mean over positives of precision at the rank of that positive (no ties in the data used).
    order = np.argsort(-scores)
    hits = labels[order]
    return np.mean([hits[: k + 1].mean() for k in range(len(hits)) if hits[k]])


def test_average_precision_matches_definition_and_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((50, 4))
    labels = rng.random((50, 4)) < 0.3
    for c in range(4):
        ap = average_precision(torch.from_numpy(scores[:, c]), torch.from_numpy(labels[:, c]))
        assert ap == pytest.approx(_ap_by_definition(scores[:, c], labels[:, c]), abs=1e-12)
    m = mean_average_precision(torch.from_numpy(scores), torch.from_numpy(labels.astype(np.float32)))
    assert m == pytest.approx(np.mean([_ap_by_definition(scores[:, c], labels[:, c]) for c in range(4)]))
    sklearn = pytest.importorskip("sklearn.metrics")
    assert m == pytest.approx(sklearn.average_precision_score(labels, scores, average="macro"), abs=1e-12)


def test_map_edge_cases():
    perfect = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # class 1 has no positive: left out
    assert mean_average_precision(perfect, targets) == 1.0
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(perfect, torch.zeros(3, 2))


# ----------------------------------------------------------------------------------------------- model and loop
def test_classifier_uses_pooled_features():
    model = AudioClassifier(5, "custom", TINY).eval()
    x = torch.randn(2, 1, 64, 48)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64)
    torch.testing.assert_close(model(x), model.head(feats))
    with pytest.raises(ValueError, match=r"\(N, 1, mel, frames\)"):
        model(torch.randn(2, 3, 64, 48))


def _tone_folder(root: Path) -> Path:
    for name, f in (("high", 3000.0), ("low", 250.0)):
        (root / "train" / name).mkdir(parents=True)
        (root / "val" / name).mkdir(parents=True)
        for k in range(3):
            _write_wav(root / "train" / name / f"{k}.wav", _tone(f * (1 + 0.05 * k), seconds=0.25), 16000)
        _write_wav(root / "val" / name / "0.wav", _tone(f * 1.02, seconds=0.25), 16000)
    return root


def _cfg(data: Path, out: Path, **kw) -> AudioTrainConfig:
    base = dict(data=str(data), audio=AudioConfig(num_mel_bins=32, target_frames=32).to_dict(), norm_stats="auto",
                model="custom", model_kwargs=TINY, drop_path=0.0, epochs=2, batch_size=2, lr=1e-3, mixup=0.5,
                freq_mask=4, time_mask=4, roll=2, output=str(out))
    base.update(kw)
    return AudioTrainConfig(**base)


def test_train_checkpoints_and_resume_exactly(tmp_path):
    data = _tone_folder(tmp_path / "data")
    full = train_audio(_cfg(data, tmp_path / "full"))
    assert [r["epoch"] for r in full.history] == [1, 2]
    assert (tmp_path / "full" / "best.pth").is_file() and (tmp_path / "full" / "metrics.csv").is_file()
    train_audio(_cfg(data, tmp_path / "part", epochs=1))
    resumed = train_audio(_cfg(data, tmp_path / "part", resume="auto"))
    a = torch.load(tmp_path / "full" / "last.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pth", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed.history[-1]["epoch"] == 2


def test_cli_stats_eval_and_predict(tmp_path, capsys):
    from unireplknet.tasks.audio.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    data = _tone_folder(tmp_path / "data")
    args = parser.parse_args(["audio-stats", "--data", str(data), "--frames", "32", "--mel-bins", "32", "--json"])
    assert args.func(args) == 0
    stats = json.loads(capsys.readouterr().out)
    ds = audio_folder_dataset(data / "train", AudioConfig(num_mel_bins=32, target_frames=32))
    values = torch.cat([fbank_to_image(waveform_fbank(ds.waveform(i), ds.cfg), ds.cfg, normalize=False).flatten()
                        for i in range(len(ds))]).double()
    assert stats["mean"] == pytest.approx(float(values.mean()), rel=1e-9)
    assert stats["std"] == pytest.approx(float(values.std(unbiased=False)), rel=1e-6)

    train_audio(_cfg(data, tmp_path / "run", epochs=1, mixup=0.0))
    args = parser.parse_args(["audio-eval", str(tmp_path / "run" / "best.pth"), "--data", str(data), "--eval-split", "val",
                              "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 2
    args = parser.parse_args(["audio-predict", str(tmp_path / "run" / "best.pth"),
                              str(data / "val" / "low" / "0.wav"), "--json", "--top-k", "2"])
    assert args.func(args) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert {t["label"] for t in top} == {"high", "low"}
    assert sum(t["score"] for t in top) == pytest.approx(1.0, abs=1e-5)


def test_bad_training_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multi-label training needs loss='bce'"):
        train_audio(AudioTrainConfig(multilabel=True, loss="ce", output=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="--data .*nope does not exist"):  # inputs are checked first
        train_audio(AudioTrainConfig(data=str(tmp_path / "nope"), output=str(tmp_path / "o")))
    (tmp_path / "notes.txt").write_text("not audio\n")
    with pytest.raises(AudioError, match="neither a folder nor a .csv manifest"):
        train_audio(AudioTrainConfig(data=str(tmp_path / "notes.txt"), output=str(tmp_path / "o")))


def test_multilabel_manifest_trains_with_map(tmp_path):
    rows = ["file,labels,split"]
    for k, (labels, split) in enumerate([("low;high", "train"), ("low", "train"), ("high", "train"),
                                         ("low;high", "val"), ("high", "val")]):
        tone = sum(_tone(f) for f in ({"low": [250.0], "high": [3000.0]}[n][0] for n in labels.split(";")))
        _write_wav(tmp_path / f"c{k}.wav", 0.5 * tone, 16000)
        rows.append(f"c{k}.wav,{labels},{split}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    cfg = _cfg(tmp_path / "m.csv", tmp_path / "run", epochs=1, mixup=0.0)
    with pytest.raises(AudioError, match="pass --multilabel"):
        train_audio(cfg)
    cfg.multilabel = True
    result = train_audio(cfg)
    assert result.class_names == ["high", "low"]
    assert "acc" not in result.extras["val"]
    # best.pth re-evaluated after training gives the mAP the engine logged for that epoch
    best_row = next(row for row in result.history if row["epoch"] == result.best_epoch)
    assert result.extras["val"]["mAP"] == pytest.approx(best_row["val_mAP"], abs=1e-6)
    both = AudioClipDataset([torch.zeros(800)], [[0, 1]], 2, AudioConfig(target_frames=32))[0][1]
    assert both.tolist() == [1.0, 1.0]  # multi-hot target


def test_reparameterized_classifier_scores_the_same():
    from unireplknet import reparameterize

    model = AudioClassifier(4, "custom", TINY).eval()
    for m in model.modules():  # non-trivial BN statistics so that the fusion has something to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 1, 64, 48)
    before = model(x)
    reparameterize(model)
    assert model.backbone.deploy
    torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_spoken_digits_short_run_beats_chance(tmp_path):
    # The default run of `unireplknet audio-train` (about a minute on two CPU cores with one thread).
    result = train_audio(AudioTrainConfig.with_recipe(output=str(tmp_path)))
    assert result.chance == 10.0
    assert result.extras["test"]["acc"] >= 50.0, result.extras["test"]

"""The noisy spoken digits generator (scripts/make_noisy_digits.py): disjoint speakers, determinism, the room and
noise it claims to make, and that its folder trains through the audio task's own reader."""
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_repo_script


gen = load_repo_script("scripts/make_noisy_digits.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("noisy") / "digits"
    counts = gen.generate(out, seed=3, train=3, val=1, test=2)
    return out, counts


def _speakers_in(folder: Path) -> set:
    return {p.name.split("_")[0] for p in folder.rglob("*.wav")}


def test_speakers_of_the_three_splits_are_disjoint(tiny):
    out, counts = tiny
    found = {split: _speakers_in(out / split) for split in ("train", "val", "test")}
    assert [len(found[s]) for s in ("train", "val", "test")] == [3, 1, 2]
    assert not (found["train"] & found["val"]) and not (found["train"] & found["test"]) and not (found["val"] & found["test"])
    assert counts == {"train": 30, "val": 10, "test": 20}
    meta = json.loads((out / "speakers.json").read_text())
    by_split = {s: [p for p in meta["speakers"] if p["split"] == s] for s in ("train", "val", "test")}
    # Every held-out speaker is a new draw: its voice, accent and room differ from every training speaker's.
    for held in by_split["val"] + by_split["test"]:
        for seen in by_split["train"]:
            assert held["tract"] != seen["tract"] and held["f0"] != seen["f0"] and held["rt60"] != seen["rt60"]
            assert held["accent"] != seen["accent"]
    assert {f"spk{p['index']:03d}" for p in by_split["test"]} == found["test"]


def test_same_seed_gives_identical_files_and_another_seed_does_not(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    gen.generate(again, seed=3, train=3, val=1, test=2)
    files = sorted(p.relative_to(out) for p in out.rglob("*.wav"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.wav"))
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = tmp_path / "other"
    gen.generate(other, seed=4, train=3, val=1, test=2)
    assert (other / files[0]).read_bytes() != (out / files[0]).read_bytes()


def test_an_existing_folder_is_kept_unless_overwrite(tiny):
    out, _ = tiny
    before = (out / "speakers.json").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        gen.generate(out, seed=5, train=1, val=1, test=1)
    assert (out / "speakers.json").read_text() == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".digits.")]  # no temporary folder left


def test_the_folder_loads_through_the_audio_task(tiny):
    from unireplknet.modalities.audio import AudioConfig
    from unireplknet.tasks.audio.task import AudioTrainConfig, build_audio_datasets

    out, _ = tiny
    datasets = build_audio_datasets(AudioTrainConfig(data=str(out)), AudioConfig(target_frames=96))
    assert {k: len(v) for k, v in datasets.items()} == {"train": 30, "val": 10, "test": 20}
    assert datasets["train"].class_names == sorted(gen.WORDS) == datasets["test"].class_names
    image, target = datasets["test"][0]
    assert image.shape == (1, 128, 96) and float(target.sum()) == 1.0
    assert datasets["train"].waveform(0).shape == (int(gen.SAMPLE_RATE * gen.CLIP_SECONDS),)


def test_room_response_decays_60_db_in_rt60_with_the_drawn_direct_to_reverberant_ratio():
    spk = dict(gen.draw_speaker(0, 0), rt60=0.5, drr_db=6.0)
    rir = gen.room_response(spk, np.random.default_rng(0))
    tail = rir[1:]
    assert 10 * np.log10(1.0 / np.sum(tail ** 2)) == pytest.approx(6.0, abs=1e-6)  # direct energy is 1
    # Energy decay: Schroeder backward integral, its slope in dB/s over -5 .. -25 dB is -60 / RT60.
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail ** 2))
    t = np.arange(len(tail)) / gen.SAMPLE_RATE
    sel = (edc < -5) & (edc > -25)
    slope = np.polyfit(t[sel], edc[sel], 1)[0]
    assert slope == pytest.approx(-60 / 0.5, rel=0.1)


def test_shaped_noise_with_a_unit_rms_spectrum_has_unit_rms():
    rng = np.random.default_rng(1)
    frames = 400
    shape = gen._unit_rms(np.abs(rng.normal(size=(frames, 4 * gen.HOP // 2 + 1))))
    x = gen._shaped_noise(shape, rng, frames * gen.HOP)
    core = x[4 * gen.HOP:-4 * gen.HOP]  # away from the edges, where fewer frames overlap
    assert np.sqrt(np.mean(core ** 2)) == pytest.approx(1.0, rel=0.05)


def test_clip_has_the_drawn_snr_range_and_a_word_inside_it():
    spk = gen.draw_speaker(0, 1)
    x = gen.make_clip("seven", spk, np.random.default_rng(2))
    assert x.shape == (gen.SAMPLE_RATE,) and 0.2 < np.abs(x).max() <= 1.0
    dry = gen.speak("seven", spk, np.random.default_rng(2))
    assert 0.2 * gen.SAMPLE_RATE < len(dry) < 0.95 * gen.SAMPLE_RATE

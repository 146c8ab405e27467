#!/usr/bin/env python3
"""Regenerate ``src/unireplknet/data/audio/spoken_digits.npz``: spoken digits from the espeak-ng synthesiser.

Needs the command-line tools ``espeak-ng`` and ``sox`` (Debian/Ubuntu: ``apt-get install espeak-ng sox``).
Each English digit word ("zero" … "nine") is spoken by a grid of espeak-ng voices (eight English accents ×
voice variants) at several speeds and pitches, trimmed of leading/trailing silence by sox, resampled by sox to
8 kHz mono and stored as 8-bit mu-law codes (mu = 255, continuous companding, see
:func:`unireplknet.modalities.audio.mulaw_decode`) in one compressed npz: about 4 KB per clip, so the whole set
stays a few hundred KB. The split is by voice: the validation and test clips come from accent/variant
combinations that never occur in training, so held-out accuracy measures generalisation to unseen voices.

Usage::

    python scripts/make_spoken_digits.py [--out src/unireplknet/data/audio/spoken_digits.npz]

espeak-ng output is deterministic for a given version; the versions used are stored in the npz (``tool_versions``).
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SAMPLE_RATE = 8000
MU = 255

# (voice, speed words/min, pitch 0-99, split). Each voice string is an espeak-ng accent plus a variant.
# 12 voices per digit: 8 train, 2 validation, 2 test; the held-out accent/variant pairs are unseen in training.
VOICES = [
    ("en-us", 150, 50, "train"),
    ("en-gb", 170, 40, "train"),
    ("en-gb-scotland+m3", 140, 35, "train"),
    ("en-gb-x-rp+f2", 160, 70, "train"),
    ("en-us-nyc+f4", 180, 65, "train"),
    ("en-029+m2", 130, 45, "train"),
    ("en-gb-x-gbclan+f3", 150, 75, "train"),
    ("en-gb-x-gbcwmd+klatt", 190, 30, "train"),
    ("en-us+m4", 155, 40, "val"),
    ("en-gb-scotland+f2", 175, 70, "val"),
    ("en-gb-x-rp+m1", 160, 45, "test"),
    ("en-us-nyc+f3", 135, 72, "test"),
]


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8 codes (continuous mu-law companding, 256 uniform levels)."""
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.clip(np.round((y + 1.0) / 2.0 * MU), 0, MU).astype(np.uint8)


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "sox was asked for 16-bit mono"
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, w.getframerate()


def synthesise(word: str, voice: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    raw = tmp / "raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), word], check=True)
    # Trim silence at both ends (threshold 0.5 % of full scale), resample to 8 kHz, 16-bit mono.
    out = subprocess.run(
        ["sox", str(raw), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-",
         "silence", "1", "0.01", "0.5%", "reverse", "silence", "1", "0.01", "0.5%", "reverse"],
        check=True, capture_output=True,
    ).stdout
    x, sr = read_wav(out)
    assert sr == SAMPLE_RATE
    peak = float(np.abs(x).max())
    if peak == 0:
        raise RuntimeError(f"espeak-ng produced silence for {word!r} with voice {voice}")
    return x * (0.9 / peak)  # peak-normalise so that all voices use the mu-law range alike


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src/unireplknet/data/audio/spoken_digits.npz"))
    args = ap.parse_args()
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install espeak-ng sox")
    versions = " | ".join(
        subprocess.run([t, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[0]
        for t in ("espeak-ng", "sox"))
    codes, offsets, labels, voices, splits = [], [0], [], [], []
    with tempfile.TemporaryDirectory() as d:
        for vi, (voice, speed, pitch, split) in enumerate(VOICES):
            for digit, word in enumerate(WORDS):
                x = synthesise(word, voice, speed, pitch, Path(d))
                codes.append(mulaw_encode(x))
                offsets.append(offsets[-1] + len(x))
                labels.append(digit)
                voices.append(f"{voice} s{speed} p{pitch}")
                splits.append(split)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        mulaw=np.concatenate(codes),
        offsets=np.asarray(offsets, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        voices=np.asarray(voices),
        splits=np.asarray(splits),
        class_names=np.asarray(WORDS),
        sample_rate=np.asarray(SAMPLE_RATE),
        mu=np.asarray(MU),
        tool_versions=np.asarray(versions),
    )
    dur = (offsets[-1]) / SAMPLE_RATE
    print(f"wrote {out}: {len(labels)} clips, {dur:.1f} s of audio, {out.stat().st_size / 1024:.0f} KB ({versions})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

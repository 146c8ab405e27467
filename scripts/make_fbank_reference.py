#!/usr/bin/env python3
"""Regenerate ``src/unireplknet/data/audio/fbank_reference.npz``: reference numbers from torchaudio itself.

The test ``tests/test_audio_fbank.py`` checks our own Kaldi fbank and resampler against these numbers, computed
with ``torchaudio.compliance.kaldi.fbank`` and ``torchaudio.functional.resample``. torchaudio has no wheel for
every torch (none for the torch this project is developed with), but its pure-Python compliance module imports
fine from an unpacked wheel of a nearby version. To regenerate::

    pip download --no-deps -d /tmp/ta torchaudio==2.11.0
    (cd /tmp/ta && unzip -q -o torchaudio-*.whl -d unpacked)
    python scripts/make_fbank_reference.py --torchaudio-path /tmp/ta/unpacked

The waveforms are stored with the results (int16 for the 16-bit cases), so the test does not depend on how
they were made. Each case records the fbank options used.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torchaudio-path", default=None, help="folder holding an unpacked torchaudio wheel")
    ap.add_argument("--out", default=str(ROOT / "src/unireplknet/data/audio/fbank_reference.npz"))
    args = ap.parse_args()
    if args.torchaudio_path:
        sys.path.insert(0, args.torchaudio_path)
    import torch
    import torchaudio
    from torchaudio.compliance import kaldi
    from torchaudio.functional import resample

    rng = np.random.default_rng(20240501)
    sr = 16000
    t = np.arange(int(0.25 * sr)) / sr
    # A chirp 100 Hz -> 6 kHz, a 440 Hz tone and white noise: energy in every mel band.
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (6000 - 100) / (2 * 0.25) * t ** 2)) + 0.1 * np.sin(2 * np.pi * 440 * t)
    chirp = chirp + 0.02 * rng.standard_normal(t.shape)
    chirp_i16 = np.round(np.clip(chirp, -1, 1) * 32767).astype(np.int16)

    with np.load(ROOT / "src/unireplknet/data/audio/spoken_digits.npz") as z:
        sys.path.insert(0, str(ROOT / "src"))
        from unireplknet.data.audio import mulaw_decode  # only to decode the stored clip

        o = z["offsets"]
        # The first 0.3 s of one clip of the embedded set (8 kHz); stored as its mu-law codes.
        digit_codes = z["mulaw"][o[7]:o[7] + 2400]
        digit = mulaw_decode(digit_codes).astype(np.float32)
        digit_rate = int(z["sample_rate"])

    cases = {
        # The official Speech Commands call (AST dataloader): waveform minus its mean, then fbank.
        "official_16k": (chirp_i16, sr, dict(htk_compat=True, sample_frequency=sr, use_energy=False,
                                              window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)),
        "digit_8k": (digit, digit_rate, dict(htk_compat=True, sample_frequency=digit_rate, use_energy=False,
                                              window_type="hanning", num_mel_bins=64, dither=0.0, frame_shift=10)),
        "povey_23_nodc": (chirp_i16, sr, dict(sample_frequency=sr, window_type="povey", num_mel_bins=23,
                                               dither=0.0, remove_dc_offset=False, low_freq=60.0, high_freq=-400.0)),
    }
    out = {}
    meta = {}
    for name, (wave_data, rate, opts) in cases.items():
        w = torch.from_numpy(wave_data.astype(np.float32) / (32768.0 if wave_data.dtype == np.int16 else 1.0))
        w = w - w.mean()
        fb = kaldi.fbank(w[None, :], **opts)
        # The waveforms themselves are stored once each: chirp_16k (int16) and digit_8k_mulaw (codes).
        out[f"{name}_fbank"] = fb.numpy().astype(np.float32)
        meta[name] = dict(rate=rate, **opts)
    # Resampling references (torchaudio's default sinc_interp_hann, 6 zero crossings, rolloff 0.99).
    out["resample_digit_8k_to_16k"] = resample(torch.from_numpy(digit), digit_rate, 16000).numpy()
    noise = rng.standard_normal(2205).astype(np.float32) * 0.1
    out["resample_noise_44k1"] = noise
    out["resample_noise_44k1_to_16k"] = resample(torch.from_numpy(noise), 44100, 16000).numpy()
    out["digit_8k_mulaw"] = digit_codes
    out["chirp_16k"] = chirp_i16
    out["meta"] = np.asarray(json.dumps(dict(cases=meta, torchaudio=torchaudio.__version__, torch=torch.__version__)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB) with torchaudio {torchaudio.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

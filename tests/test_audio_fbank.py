"""Our Kaldi fbank and resampler against torchaudio's own numbers (stored by scripts/make_fbank_reference.py).

Tolerances, and why:

* Mel energies. torchaudio computed the references in float32. A float32 FFT, power and filter sum make
  errors proportional to the *frame's* energy, not to the bin's (a quiet bin next to a loud one inherits the
  loud one's rounding). So the test bounds ``|E_ours - E_ref| <= 64 * eps32 * sum(E_ref of the frame)``;
  observed: 23 eps32 (the reference's own float32 rounding — our float64 path shows the same value).
* Log mel of bins holding at least 0.1 % of their frame's energy: ``|Δ log E| <= 1e-4`` (observed 2e-5).
  Quieter bins are covered by the energy bound above; in log terms they can differ by up to ~1e-3 there.
* Resampling: both implement a Hann-windowed sinc with 6 zero crossings and roll-off 0.99, in float32;
  ``|Δ| <= 1e-5`` on signals of peak ≤ 1 (a ~100-tap float32 dot product rounds at ~1e-6; observed 1.1e-6).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unireplknet.data.audio import DATA_DIR, mulaw_decode
from unireplknet.modalities.audio import AudioError, kaldi_fbank, mel_filterbank, resample

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors gain nothing from intra-op threads, and on a shared, loaded CPU idle OpenMP workers spinning
    # make these tests ~10× slower; the previous setting is restored afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA_DIR / "fbank_reference.npz") as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))["cases"]
    return data


def _waves(ref):
    chirp = torch.from_numpy(ref["chirp_16k"].astype(np.float32) / 32768.0)
    digit = torch.from_numpy(mulaw_decode(ref["digit_8k_mulaw"]))
    return {"official_16k": chirp, "povey_23_nodc": chirp, "digit_8k": digit}


def _our_options(meta):
    return dict(sample_rate=meta["sample_frequency"], num_mel_bins=meta["num_mel_bins"],
                window=meta["window_type"], remove_dc_offset=meta.get("remove_dc_offset", True),
                low_freq=meta.get("low_freq", 20.0), high_freq=meta.get("high_freq", 0.0),
                frame_shift_ms=meta.get("frame_shift", 10.0))


@pytest.mark.parametrize("case", ["official_16k", "digit_8k", "povey_23_nodc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fbank_matches_torchaudio(ref, case, dtype):
    wave = _waves(ref)[case]
    wave = wave - wave.mean()  # as the official data loader and the reference script do
    ours = kaldi_fbank(wave.to(dtype), **_our_options(ref["meta"][case])).double().numpy()
    theirs = ref[f"{case}_fbank"].astype(np.float64)
    assert ours.shape == theirs.shape
    e_ours, e_ref = np.exp(ours), np.exp(theirs)
    frame_energy = e_ref.sum(axis=1, keepdims=True)
    assert np.max(np.abs(e_ours - e_ref) / frame_energy) <= 64 * EPS32
    loud = e_ref / frame_energy >= 1e-3
    assert loud.mean() > 0.1  # the bound below must cover a real part of the image (a chirp is sparse)
    assert np.max(np.abs(ours - theirs)[loud]) <= 1e-4


def test_fbank_batch_dimensions_match_single_clips(ref):
    wave = _waves(ref)["official_16k"]
    batch = torch.stack([wave, 0.5 * wave.flip(0)])
    out = kaldi_fbank(batch)
    assert out.shape == (2, 23, 128)
    torch.testing.assert_close(out[1], kaldi_fbank(0.5 * wave.flip(0)), rtol=0, atol=1e-5)


def test_mel_filterbank_definition():
    # Independent check of the triangles: peak of filter m sits on the FFT bin nearest its mel centre, and every
    # filter's support lies between its neighbours' centres (Kaldi's HTK mel, 1127 ln(1 + f/700)).
    banks = mel_filterbank(40, 512, 16000.0, 20.0, 0.0).numpy()
    assert banks.shape == (40, 257)
    assert np.all(banks[:, -1] == 0) and banks.min() >= 0 and banks.max() <= 1
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)
    centres = [mel(20) + (m + 1) * (mel(8000) - mel(20)) / 41 for m in range(40)]
    bin_mels = np.array([mel(k * 16000 / 512) for k in range(256)])
    for m in range(40):
        assert abs(bin_mels[np.argmax(banks[m, :256])] - centres[m]) <= (bin_mels[1:] - bin_mels[:-1]).max()


def test_resample_matches_torchaudio(ref):
    digit = torch.from_numpy(mulaw_decode(ref["digit_8k_mulaw"]))
    up = resample(digit, 8000, 16000)
    assert up.shape == ref["resample_digit_8k_to_16k"].shape
    np.testing.assert_allclose(up.numpy(), ref["resample_digit_8k_to_16k"], rtol=0, atol=1e-5)
    down = resample(torch.from_numpy(ref["resample_noise_44k1"]), 44100, 16000)
    assert down.shape == ref["resample_noise_44k1_to_16k"].shape
    np.testing.assert_allclose(down.numpy(), ref["resample_noise_44k1_to_16k"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("orig,new,freq", [(8000, 16000, 440.0), (48000, 16000, 1000.0), (22050, 16000, 3000.0)])
def test_resample_pass_band_tone_is_exact(orig, new, freq):
    # Truth: the analytic sine at the new rate. Away from the edges (filter half-width) a pass-band tone is
    # reproduced to within 1e-3 (Hann-windowed sinc, 6 zero crossings, cut-off at 0.99 × the lower Nyquist).
    n = orig // 4
    x = torch.sin(2 * math.pi * freq * torch.arange(n, dtype=torch.float64) / orig)
    y = resample(x, orig, new)
    t = torch.arange(y.numel(), dtype=torch.float64) / new
    expected = torch.sin(2 * math.pi * freq * t)
    edge = 64
    assert y.numel() == math.ceil(n * new / orig)
    assert (y[edge:-edge] - expected[edge:-edge]).abs().max() < 1e-3


def test_resample_removes_tone_above_new_nyquist():
    x = torch.sin(2 * math.pi * 6000.0 * torch.arange(16000) / 16000)
    y = resample(x, 16000, 8000)  # 6 kHz is above the new 4 kHz Nyquist: must be filtered, not aliased to 2 kHz
    assert y[100:-100].abs().max() < 0.02


def test_fbank_rejects_bad_input():
    with pytest.raises(AudioError, match="fewer than one"):
        kaldi_fbank(torch.zeros(100))
    with pytest.raises(AudioError, match="float waveform"):
        kaldi_fbank(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(AudioError, match="unknown window"):
        kaldi_fbank(torch.zeros(1000), window="kaiser")
    with pytest.raises(AudioError, match="Nyquist"):
        kaldi_fbank(torch.zeros(1000), low_freq=9000.0)

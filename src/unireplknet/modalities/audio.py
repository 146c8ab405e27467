"""Audio → 1-channel image: Kaldi-compatible log-mel filterbank, normalisation, augmentation.

The preprocessing follows the official audio code (official `Audio/` code, described in docs/audio.md, built on AST's ``src/dataloader.py``):

1. waveform (mono, float in [-1, 1], 16 kHz) minus its mean;
2. Kaldi ``fbank`` (:func:`kaldi_fbank`): 25 ms frames every 10 ms (``snip_edges``), per-frame DC removal,
   pre-emphasis 0.97, Hanning window, zero-padding to 512 samples, power spectrum, 128 triangular HTK-mel
   filters between 20 Hz and Nyquist, natural log with a floor of float32 eps, no dither, no energy term;
3. zero-pad or cut to a fixed number of frames (128 for Speech Commands);
4. normalise ``(x - mean) / (2 * std)`` with dataset statistics (:func:`unireplknet.data.audio.compute_norm_stats`);
5. lay out as ``(1, mel, frames)``: H = frequency, W = time — the orientation of the official code.

torchaudio has no wheel for the torch this project is developed with, so :func:`kaldi_fbank` is our own
implementation of the Kaldi definition; ``tests/test_audio_fbank.py`` checks it against numbers produced by
``torchaudio.compliance.kaldi.fbank`` (stored in ``data/audio/fbank_reference.npz`` by
``scripts/make_fbank_reference.py``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AudioError",
    "AudioConfig",
    "SPEECH_COMMANDS_CONFIG",
    "kaldi_fbank",
    "mel_filterbank",
    "resample",
    "waveform_fbank",
    "waveform_to_image",
    "fbank_to_image",
    "spec_augment",
    "AudioAugment",
]

_logger = logging.getLogger(__name__)



class AudioError(ValueError):
    """Bad audio input (unreadable file, wrong sample rate, empty clip …); the message says what to do."""


# ----------------------------------------------------------------------------------------------- fbank
def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Kaldi's (and HTK's) mel scale with the natural logarithm.
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=16)
def _mel_banks_np(num_bins: int, padded_window: int, sample_rate: float, low_freq: float, high_freq: float) -> np.ndarray:
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist  # Kaldi: a non-positive high frequency is an offset from Nyquist
    if not (0.0 <= low_freq < high_freq <= nyquist):
        raise AudioError(
            f"mel filterbank needs 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz), got low_freq={low_freq}, "
            f"high_freq={high_freq}"
        )
    num_fft_bins = padded_window // 2
    mel_low, mel_high = _hz_to_mel(low_freq), _hz_to_mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * np.arange(num_bins + 2, dtype=np.float64)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fft_mel = _hz_to_mel(np.arange(num_fft_bins, dtype=np.float64) * (sample_rate / padded_window))[None, :]
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(rising, falling))
    # Kaldi leaves out the Nyquist bin of the FFT; a zero column keeps the matrix aligned with rfft's output.
    return np.concatenate([banks, np.zeros((num_bins, 1))], axis=1)


def mel_filterbank(num_bins: int = 128, padded_window: int = 512, sample_rate: float = 16000.0,
                   low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
    """Kaldi's triangular HTK-mel filters, shape ``(num_bins, padded_window // 2 + 1)`` (float64).

    Triangles are equally spaced in mel = 1127·ln(1 + f/700) between ``low_freq`` and ``high_freq``
    (≤ 0 means Nyquist + high_freq) and evaluated at the FFT bin centres in the mel domain.
    """
    return torch.from_numpy(_mel_banks_np(int(num_bins), int(padded_window), float(sample_rate), float(low_freq),
                                          float(high_freq)))


def _window(kind: str, length: int, dtype: torch.dtype) -> torch.Tensor:
    if kind == "hanning":
        return torch.hann_window(length, periodic=False, dtype=torch.float64).to(dtype)
    if kind == "povey":  # Kaldi's default: a Hanning window to the power 0.85
        return torch.hann_window(length, periodic=False, dtype=torch.float64).pow(0.85).to(dtype)
    if kind == "hamming":
        return torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64).to(dtype)
    if kind == "rectangular":
        return torch.ones(length, dtype=dtype)
    raise AudioError(f"unknown window {kind!r}; choose hanning, povey, hamming or rectangular")


def kaldi_fbank(
    waveform: torch.Tensor,
    sample_rate: float = 16000.0,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    window: str = "hanning",
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    use_power: bool = True,
    use_log: bool = True,
) -> torch.Tensor:
    """Kaldi ``compute-fbank-feats`` (and ``torchaudio.compliance.kaldi.fbank``) with dither 0, no energy.

    Args:
        waveform: ``(samples,)`` or ``(..., samples)`` float tensor (any scale; the official code passes
            [-1, 1] floats). Leading dimensions are batch dimensions.
        sample_rate: in Hz.
        num_mel_bins … use_log: the Kaldi options of the same names (``window`` = Kaldi ``window_type``).

    Returns:
        ``(..., frames, num_mel_bins)`` log mel energies, ``frames = 1 + (samples - window) // shift``
        (Kaldi's ``snip_edges``: only frames that fit entirely).

    The options the official code sets (``htk_compat=True``, ``use_energy=False``) only concern the energy
    column and the order of columns, so with ``use_energy=False`` they leave the result unchanged.
    """
    if not torch.is_tensor(waveform):
        raise AudioError(f"kaldi_fbank expects a torch tensor, got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise AudioError(f"kaldi_fbank expects a float waveform, got {waveform.dtype}; convert int16 PCM with "
                         "x.float() / 32768")
    window_size = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if window_size < 2 or shift < 1:
        raise AudioError(f"frame length {frame_length_ms} ms / shift {frame_shift_ms} ms at {sample_rate} Hz give "
                         f"{window_size}/{shift} samples; both must be positive")
    n = waveform.shape[-1]
    if n < window_size:
        raise AudioError(f"waveform has {n} samples, fewer than one {frame_length_ms} ms frame ({window_size} samples "
                         f"at {sample_rate} Hz); pad the clip or pass a longer one")
    padded = 1 << (window_size - 1).bit_length() if round_to_power_of_two else window_size
    num_frames = 1 + (n - window_size) // shift
    frames = waveform.unfold(-1, window_size, shift)[..., :num_frames, :]  # (..., frames, window)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if preemphasis != 0.0:
        # x[i] -= coeff * x[i-1], with x[-1] taken as x[0] (Kaldi's convention for the first sample).
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - preemphasis * previous
    frames = frames * _window(window, window_size, frames.dtype)
    if padded > window_size:
        frames = F.pad(frames, (0, padded - window_size))
    spectrum = torch.fft.rfft(frames, dim=-1).abs()
    if use_power:
        spectrum = spectrum.pow(2)
    banks = mel_filterbank(num_mel_bins, padded, sample_rate, low_freq, high_freq).to(spectrum.dtype)
    mel = torch.matmul(spectrum, banks.T.to(spectrum.device))
    if use_log:
        # Kaldi floors at the machine epsilon of float32 (torchaudio uses torch.finfo(torch.float).eps too).
        mel = torch.clamp_min(mel, torch.finfo(torch.float32).eps).log()
    return mel


# ----------------------------------------------------------------------------------------------- resampling
@lru_cache(maxsize=8)
def _resample_kernel(orig: int, new: int, zeros: int, rolloff: float) -> Tuple[np.ndarray, int]:
    # One windowed-sinc filter per output phase. Output sample j of each block of `new` sits at input time
    # j * orig / new; the filter is a low-pass at rolloff * min(orig, new) / 2 with a Hann window spanning
    # `zeros` zero crossings each side.
    base = min(orig, new) * rolloff
    width = int(math.ceil(zeros * orig / base))
    taps = np.arange(-width, width + orig, dtype=np.float64)  # input offsets covered by one block
    phases = np.arange(new, dtype=np.float64)[:, None] * orig / new
    t = (taps[None, :] - phases) * base / orig  # time in units of the low-pass's sample period
    t = np.clip(t, -zeros, zeros)
    window = np.cos(t * math.pi / zeros / 2) ** 2
    kernel = np.sinc(t) * window * (base / orig)
    return kernel, width


#: The polyphase filter bank has (new phases) × (taps) entries after reducing the rates by their gcd; from
#: 44,101 Hz (or any prime rate) to 16 kHz that is 16,000 × 44,135 (5.6 GB). Above this many entries the same
#: filter is evaluated per output sample instead, in chunks of bounded memory (:func:`_resample_direct`).
MAX_POLYPHASE_ENTRIES = 1 << 22
_DIRECT_CHUNK = 8192  # output samples per chunk of the direct evaluation


def _resample_direct(x: torch.Tensor, orig_rate: int, new_rate: int, zeros: int, rolloff: float,
                     out_len: int) -> torch.Tensor:
    """The windowed-sinc filter of :func:`_resample_kernel` evaluated at each output sample's own input time.

    Output ``m`` sits at input time ``m · orig_rate / new_rate`` and is the sum of the ``2·width + 2`` input
    samples around it, each weighted by the low-pass at its distance: memory grows with the chunk, not with the
    rates' least common multiple.
    """
    scale = min(orig_rate, new_rate) * rolloff / orig_rate  # the low-pass's rate in units of input samples
    width = int(math.ceil(zeros / scale))
    n = x.shape[-1]
    pad = width + 2
    xp = F.pad(x, (pad, pad))
    offsets = torch.arange(2 * width + 2, dtype=torch.int64)
    out = torch.empty(x.shape[0], out_len, dtype=x.dtype)
    for start in range(0, out_len, _DIRECT_CHUNK):
        m = torch.arange(start, min(out_len, start + _DIRECT_CHUNK), dtype=torch.float64)
        centre = m * orig_rate / new_rate
        first = torch.floor(centre).to(torch.int64) - width
        index = first[:, None] + offsets[None, :]  # (chunk, taps) input sample numbers
        t = ((index.to(torch.float64) - centre[:, None]) * scale).clamp(-zeros, zeros)
        weight = torch.sinc(t) * torch.cos(t * math.pi / zeros / 2) ** 2 * scale
        weight = weight * ((index >= 0) & (index < n))  # outside the clip: zeros, as the polyphase padding
        gathered = xp[:, (index + pad).clamp(0, xp.shape[-1] - 1)]  # (B, chunk, taps)
        out[:, start:start + len(m)] = (gathered * weight.to(x.dtype)).sum(-1)
    return out


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, zeros: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling along the last dimension (windowed-sinc, polyphase, as Kaldi/torchaudio do).

    ``zeros`` zero crossings of the sinc each side and a cut-off at ``rolloff`` × the lower Nyquist rate; a
    signal well inside the pass band (below ~0.8 × the lower Nyquist) comes out within 1e-3 of the ideal.
    Rates whose reduced ratio would need a filter bank of more than :data:`MAX_POLYPHASE_ENTRIES` entries (a
    prime rate, 44,101 Hz) are resampled by the same filter evaluated per output sample, in bounded memory.
    """
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate <= 0 or new_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    shape = waveform.shape
    width_estimate = math.ceil(zeros * orig / (min(orig, new) * rolloff))
    if new * (2 * width_estimate + orig) > MAX_POLYPHASE_ENTRIES:
        x = waveform.reshape(-1, shape[-1])
        x = x if x.is_floating_point() else x.float()
        out_len = int(math.ceil(new * shape[-1] / orig))
        return _resample_direct(x, orig_rate, new_rate, zeros, rolloff, out_len).reshape(*shape[:-1], out_len)
    kernel_np, width = _resample_kernel(orig, new, zeros, rolloff)
    x = waveform.reshape(-1, 1, shape[-1])
    kernel = torch.from_numpy(kernel_np).to(x.dtype if x.is_floating_point() else torch.float32).to(x.device)
    n = shape[-1]
    x = F.pad(x.to(kernel.dtype), (width, width + orig))
    y = F.conv1d(x, kernel[:, None, :], stride=orig)  # (B, new phases, blocks)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    out_len = int(math.ceil(new * n / orig))
    return y[:, :out_len].reshape(*shape[:-1], out_len)


# ----------------------------------------------------------------------------------------------- image
@dataclass
class AudioConfig:
    """How a clip becomes the network's input; stored with checkpoints so that evaluation matches training.

    ``norm_mean``/``norm_std`` are dataset statistics of the log-mel values (:func:`compute_norm_stats`);
    the input is ``(fbank - norm_mean) / (2 * norm_std)`` as in the official code.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_frames: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemphasis: float = 0.97
    window: str = "hanning"
    norm_mean: float = -6.845978
    norm_std: float = 5.5654526
    on_rate_mismatch: str = "resample"

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "AudioConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def image_size(self) -> Tuple[int, int, int]:
        """``(1, H = mel bins, W = frames)``."""
        return (1, self.num_mel_bins, self.target_frames)


#: The official Speech Commands V2 settings (official `Audio/` code, described in docs/audio.md).
SPEECH_COMMANDS_CONFIG = AudioConfig()


def waveform_fbank(waveform: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """``(samples,)`` or ``(1, samples)`` waveform → ``(frames, mel)`` log-mel of the mean-subtracted clip."""
    x = waveform.reshape(-1) if waveform.dim() > 1 and waveform.shape[0] == 1 else waveform
    if x.dim() != 1:
        raise AudioError(f"expected a mono waveform (samples,) or (1, samples), got shape {tuple(waveform.shape)}")
    min_len = int(cfg.sample_rate * cfg.frame_length_ms * 0.001)
    if x.numel() < min_len:
        # Shorter than one frame: pad with silence (after mean removal) rather than fail, since Speech
        # Commands holds a few clips this short; the missing frames are zero-padded below anyway.
        x = F.pad(x - x.mean(), (0, min_len - x.numel()))
    return kaldi_fbank(x - x.mean(), cfg.sample_rate, cfg.num_mel_bins, cfg.frame_length_ms, cfg.frame_shift_ms,
                       cfg.preemphasis, cfg.window)


def fbank_to_image(fbank: torch.Tensor, cfg: AudioConfig, normalize: bool = True) -> torch.Tensor:
    """``(frames, mel)`` → ``(1, mel, target_frames)``: cut or zero-pad in time, normalise, frequency on H."""
    frames = fbank.shape[0]
    if frames < cfg.target_frames:
        fbank = F.pad(fbank, (0, 0, 0, cfg.target_frames - frames))  # zeros in the log domain, as AST
    else:
        fbank = fbank[: cfg.target_frames]
    if normalize:
        fbank = (fbank - cfg.norm_mean) / (2.0 * cfg.norm_std)
    return fbank.T.unsqueeze(0).contiguous()


def waveform_to_image(waveform: torch.Tensor, cfg: Optional[AudioConfig] = None) -> torch.Tensor:
    """The evaluation-time transform: waveform → normalised ``(1, mel, frames)`` image."""
    cfg = cfg or AudioConfig()
    return fbank_to_image(waveform_fbank(waveform, cfg), cfg)


# ----------------------------------------------------------------------------------------------- augmentation
def spec_augment(image: torch.Tensor, freq_mask: int, time_mask: int, generator: Optional[torch.Generator] = None,
                 value: float = 0.0) -> torch.Tensor:
    """One frequency and one time mask (torchaudio ``FrequencyMasking``/``TimeMasking`` semantics).

    Widths are drawn uniformly from ``[0, param)``, starts from ``[0, size - width)``; masked cells are set
    to ``value``. ``image`` is ``(..., mel, frames)``; a new tensor is returned.
    """
    out = image.clone()
    for dim, param in ((-2, freq_mask), (-1, time_mask)):
        size = out.shape[dim]
        if param <= 0:
            continue
        width = int(torch.rand((), generator=generator) * min(param, size))
        start = int(torch.rand((), generator=generator) * (size - width))
        if width == 0:
            continue
        index = [slice(None)] * out.dim()
        index[dim] = slice(start, start + width)
        out[tuple(index)] = value
    return out


@dataclass
class AudioAugment:
    """The official training augmentations (AST recipe, official `Audio/` code, described in docs/audio.md), applied in the official order.

    ``mixup``: probability of mixing the waveform with a random other clip of the training set (λ ~ Beta(10, 10),
    soft labels λ·y₁ + (1-λ)·y₂); ``freq_mask``/``time_mask``: SpecAugment widths (before normalisation, as
    AST); ``noise``: add ``U(0,1) × U(0,1) × noise`` after normalisation (AST: /10 → 0.1); ``roll``: shift the
    time axis circularly by an integer in ``[-roll, roll)`` frames.
    """

    mixup: float = 0.6
    mixup_alpha: float = 10.0
    freq_mask: int = 48
    time_mask: int = 48
    noise: float = 0.1
    roll: int = 10

    @classmethod
    def none(cls) -> "AudioAugment":
        return cls(mixup=0.0, freq_mask=0, time_mask=0, noise=0.0, roll=0)

"""Audio → 1-channel image: Kaldi-compatible log-mel filterbank, normalisation, augmentation, datasets.

The preprocessing follows the official audio code (official `Audio/` code, described in docs/audio.md, built on AST's ``src/dataloader.py``):

1. waveform (mono, float in [-1, 1], 16 kHz) minus its mean;
2. Kaldi ``fbank`` (:func:`kaldi_fbank`): 25 ms frames every 10 ms (``snip_edges``), per-frame DC removal,
   pre-emphasis 0.97, Hanning window, zero-padding to 512 samples, power spectrum, 128 triangular HTK-mel
   filters between 20 Hz and Nyquist, natural log with a floor of float32 eps, no dither, no energy term;
3. zero-pad or cut to a fixed number of frames (128 for Speech Commands);
4. normalise ``(x - mean) / (2 * std)`` with dataset statistics (:func:`compute_norm_stats`);
5. lay out as ``(1, mel, frames)``: H = frequency, W = time — the orientation of the official code.

torchaudio has no wheel for the torch this project is developed with, so :func:`kaldi_fbank` is our own
implementation of the Kaldi definition; ``tests/test_audio_fbank.py`` checks it against numbers produced by
``torchaudio.compliance.kaldi.fbank`` (stored in ``data/audio/fbank_reference.npz`` by
``scripts/make_fbank_reference.py``).
"""
from __future__ import annotations

import logging
import math
import random
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "AudioError",
    "AudioConfig",
    "SPEECH_COMMANDS_CONFIG",
    "kaldi_fbank",
    "mel_filterbank",
    "resample",
    "load_audio",
    "mulaw_decode",
    "waveform_to_image",
    "fbank_to_image",
    "spec_augment",
    "AudioAugment",
    "seed_audio_worker",
    "AudioClipDataset",
    "audio_folder_dataset",
    "audio_manifest_datasets",
    "speech_commands_datasets",
    "spoken_digits_datasets",
    "compute_norm_stats",
    "AUDIO_EXTENSIONS",
    "DATA_DIR",
]

_logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "audio"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


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


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, zeros: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling along the last dimension (windowed-sinc, polyphase, as Kaldi/torchaudio do).

    ``zeros`` zero crossings of the sinc each side and a cut-off at ``rolloff`` × the lower Nyquist rate; a
    signal well inside the pass band (below ~0.8 × the lower Nyquist) comes out within 1e-3 of the ideal.
    """
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate <= 0 or new_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    kernel_np, width = _resample_kernel(orig, new, zeros, rolloff)
    shape = waveform.shape
    x = waveform.reshape(-1, 1, shape[-1])
    kernel = torch.from_numpy(kernel_np).to(x.dtype if x.is_floating_point() else torch.float32).to(x.device)
    n = shape[-1]
    x = F.pad(x.to(kernel.dtype), (width, width + orig))
    y = F.conv1d(x, kernel[:, None, :], stride=orig)  # (B, new phases, blocks)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    out_len = int(math.ceil(new * n / orig))
    return y[:, :out_len].reshape(*shape[:-1], out_len)


# ----------------------------------------------------------------------------------------------- reading
def mulaw_decode(codes: np.ndarray, mu: int = 255) -> np.ndarray:
    """uint8 mu-law codes (continuous companding, ``mu + 1`` uniform levels) → float32 in [-1, 1]."""
    y = codes.astype(np.float64) / mu * 2.0 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def _read_wav_stdlib(path: Path) -> Tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - the wave module rejects other widths itself
        raise AudioError(f"{path}: {8 * width}-bit WAV is not supported")
    return x.reshape(-1, channels).T, rate


def load_audio(path: Union[str, Path], sample_rate: Optional[int] = 16000, on_rate_mismatch: str = "resample",
               mono: bool = True) -> Tuple[torch.Tensor, int]:
    """Read an audio file as a float32 ``(channels, samples)`` tensor in [-1, 1] (mono: channels = 1).

    PCM WAV is read with the standard library; other formats (FLAC, OGG, MP3 …) and non-PCM WAV need
    ``soundfile`` (``pip install 'unireplknet[audio]'``). Multi-channel audio is averaged to mono. When the file's
    rate differs from ``sample_rate``, ``on_rate_mismatch='resample'`` resamples (:func:`resample`) and
    ``'error'`` raises :class:`AudioError`. Unreadable or empty files raise :class:`AudioError`.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    if on_rate_mismatch not in ("resample", "error"):
        raise ValueError(f"on_rate_mismatch must be 'resample' or 'error', got {on_rate_mismatch!r}")
    data: Optional[np.ndarray] = None
    rate = 0
    if path.suffix.lower() == ".wav":
        try:
            data, rate = _read_wav_stdlib(path)
        except (wave.Error, EOFError) as e:
            _logger.debug("stdlib wave could not read %s (%s); trying soundfile", path, e)
            wav_error: Optional[Exception] = e
        else:
            wav_error = None
    else:
        wav_error = None
    if data is None:
        try:
            import soundfile
        except ImportError:
            hint = f" (the standard library could not read it: {wav_error})" if wav_error else ""
            raise AudioError(f"reading {path.suffix or 'this'} audio needs soundfile{hint}: "
                             "pip install 'unireplknet[audio]'") from None
        try:
            arr, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError types
            raise AudioError(f"cannot read audio file {path}: {e}") from e
        data = arr.T
    if data.size == 0 or data.shape[-1] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    if mono and x.shape[0] > 1:
        x = x.mean(dim=0, keepdim=True)
    if sample_rate is not None and rate != sample_rate:
        if on_rate_mismatch == "error":
            raise AudioError(f"{path} is sampled at {rate} Hz, the model expects {sample_rate} Hz; resample it "
                             "(e.g. sox in.wav -r 16000 out.wav) or allow resampling (on_rate_mismatch='resample')")
        x = resample(x, rate, sample_rate)
        rate = sample_rate
    return x, rate


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


def seed_audio_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: give each worker's copy of the dataset its own augmentation stream."""
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "rng"):
        info.dataset.rng.seed(info.seed)


def _fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    return F.pad(x, (0, n - x.shape[-1])) if x.shape[-1] < n else x[..., :n]


# ----------------------------------------------------------------------------------------------- datasets
class AudioClipDataset(Dataset):
    """Clips (file paths or in-memory waveforms) with labels → ``(image, target)`` pairs.

    ``target`` is a float vector of length ``num_classes``: one-hot for single-label data (label = int), multi-hot
    for multi-label data (label = list of ints), mixed when waveform mixup is on. Augmentation runs only when
    ``augment`` is given. Unreadable files raise :class:`AudioError` naming the file. ``cache=True`` keeps
    decoded files in memory (per data-loading process; off by default: Speech Commands alone is 6.8 GB as
    float32). The augmentation stream comes from ``self.rng``; data-loader workers re-seed it (see
    :func:`seed_audio_worker`) so that they do not repeat each other.
    """

    def __init__(self, items: Sequence[Union[str, Path, torch.Tensor]], labels: Sequence[Union[int, Sequence[int]]],
                 num_classes: int, cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                 class_names: Optional[Sequence[str]] = None, seed: int = 0, cache: bool = False):
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} clips but {len(labels)} labels")
        if len(items) == 0:
            raise AudioError("no audio clips: the dataset is empty (check the folder and the file extensions)")
        self.items, self.labels, self.num_classes, self.cfg = list(items), list(labels), int(num_classes), cfg
        self.augment = augment
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.rng = random.Random(seed)
        self._cache: Optional[Dict[int, torch.Tensor]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def waveform(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        item = self.items[i]
        if torch.is_tensor(item):
            x = item.reshape(-1).float()
        else:
            x, _ = load_audio(item, self.cfg.sample_rate, self.cfg.on_rate_mismatch)
            x = x[0]
        if self._cache is not None and not torch.is_tensor(item):
            self._cache[i] = x
        return x

    def target(self, i: int) -> torch.Tensor:
        t = torch.zeros(self.num_classes)
        label = self.labels[i]
        idx = [label] if isinstance(label, (int, np.integer)) else list(label)
        for k in idx:
            if not 0 <= int(k) < self.num_classes:
                raise ValueError(f"label {k} of clip {i} is outside 0..{self.num_classes - 1}")
            t[int(k)] = 1.0
        return t

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        x, y = self.waveform(i), self.target(i)
        aug = self.augment
        if aug is not None and aug.mixup > 0 and self.rng.random() < aug.mixup:
            j = self.rng.randrange(len(self))
            other = self.waveform(j)
            lam = float(np.random.default_rng(self.rng.getrandbits(32)).beta(aug.mixup_alpha, aug.mixup_alpha))
            n = x.shape[-1]
            # AST: both clips mean-subtracted, the partner padded/cut to this clip's length.
            x = lam * (x - x.mean()) + (1.0 - lam) * _fit_length(other - other.mean(), n)
            y = lam * y + (1.0 - lam) * self.target(j)
        fb = waveform_fbank(x, self.cfg)
        if aug is None:
            return fbank_to_image(fb, self.cfg), y
        img = fbank_to_image(fb, self.cfg, normalize=False)
        g = torch.Generator().manual_seed(self.rng.getrandbits(62))
        img = spec_augment(img, aug.freq_mask, aug.time_mask, generator=g)
        img = (img - self.cfg.norm_mean) / (2.0 * self.cfg.norm_std)
        if aug.noise > 0:
            img = img + torch.rand(img.shape, generator=g) * (float(torch.rand((), generator=g)) * aug.noise)
        if aug.roll > 0:
            img = torch.roll(img, self.rng.randrange(-aug.roll, aug.roll), dims=-1)
        return img, y


def audio_folder_dataset(root: Union[str, Path], cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                         class_names: Optional[Sequence[str]] = None) -> AudioClipDataset:
    """``root/<class>/**/<clip>.wav|.flac|…``: labels by sub-folder (sorted names unless ``class_names`` given)."""
    root = Path(root)
    if not root.is_dir():
        raise AudioError(f"audio folder {root} does not exist")
    names = list(class_names) if class_names is not None else sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not names:
        raise AudioError(f"{root} has no class sub-folders; expected root/<class>/<clip>.wav")
    items, labels = [], []
    for k, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise AudioError(f"class {name!r} has no folder {folder}")
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                items.append(p)
                labels.append(k)
    if not items:
        raise AudioError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}/<class>/")
    return AudioClipDataset(items, labels, len(names), cfg, augment, class_names=names)


def audio_manifest_datasets(manifest: Union[str, Path], cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                            class_names: Optional[Sequence[str]] = None) -> Dict[str, AudioClipDataset]:
    """A CSV manifest for multi-label data (e.g. AudioSet clips downloaded to disk).

    Columns: ``file`` (path, relative to the manifest's folder or absolute), ``labels`` (class names separated
    by ``;``), and optionally ``split`` (train / val / test; default train). Classes are the sorted union of all
    labels unless ``class_names`` is given. Returns a dataset per split present; only ``train`` gets ``augment``.
    """
    import csv

    manifest = Path(manifest)
    if not manifest.is_file():
        raise AudioError(f"manifest {manifest} does not exist")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "file" not in rows[0] or "labels" not in rows[0]:
        raise AudioError(f"{manifest} needs a header with the columns file,labels[,split] and at least one row")
    parsed = []
    for i, row in enumerate(rows):
        labels = [t.strip() for t in (row["labels"] or "").split(";") if t.strip()]
        split = (row.get("split") or "train").strip()
        if split not in ("train", "val", "test"):
            raise AudioError(f"{manifest}, row {i + 2}: split {split!r} is not train, val or test")
        path = Path(row["file"])
        parsed.append((path if path.is_absolute() else manifest.parent / path, labels, split))
    names = list(class_names) if class_names is not None else sorted({n for _, ls, _ in parsed for n in ls})
    index = {n: k for k, n in enumerate(names)}
    unknown = sorted({n for _, ls, _ in parsed for n in ls if n not in index})
    if unknown:
        raise AudioError(f"{manifest}: labels not among the class names: {', '.join(unknown[:10])}")
    out: Dict[str, AudioClipDataset] = {}
    for split in ("train", "val", "test"):
        part = [(p, [index[n] for n in ls]) for p, ls, sp in parsed if sp == split]
        if part:
            out[split] = AudioClipDataset([p for p, _ in part], [ls for _, ls in part], len(names), cfg,
                                          augment if split == "train" else None, class_names=names)
    if "train" not in out:
        raise AudioError(f"{manifest} has no training rows (split column)")
    return out


#: Speech Commands folders that are not classes.
_SC_NON_CLASSES = {"_background_noise_"}


def speech_commands_datasets(root: Union[str, Path], cfg: AudioConfig = SPEECH_COMMANDS_CONFIG,
                             augment: Optional[AudioAugment] = None) -> Dict[str, AudioClipDataset]:
    """The Speech Commands v2 protocol: 35 word folders; ``validation_list.txt`` and ``testing_list.txt``
    select the held-out clips and every other clip trains (the official ``prep_sc.py`` split).

    Returns ``{'train', 'val', 'test'}`` datasets; only ``train`` gets ``augment``.
    """
    root = Path(root)
    lists = {name: root / f"{name}_list.txt" for name in ("validation", "testing")}
    missing = [str(p) for p in lists.values() if not p.is_file()]
    if missing:
        raise AudioError(f"{root} is not a Speech Commands v2 folder: missing {', '.join(missing)} "
                         "(download speech_commands_v0.02.tar.gz and unpack it there)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in _SC_NON_CLASSES
                   and not p.name.startswith("."))
    index = {n: k for k, n in enumerate(names)}
    held = {}
    for split, p in lists.items():
        held[split] = {line.strip() for line in p.read_text().splitlines() if line.strip()}
    parts: Dict[str, Tuple[List[Path], List[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for name in names:
        for f in sorted((root / name).glob("*.wav")):
            rel = f"{name}/{f.name}"
            split = "val" if rel in held["validation"] else "test" if rel in held["testing"] else "train"
            parts[split][0].append(f)
            parts[split][1].append(index[name])
    return {split: AudioClipDataset(items, labels, len(names), cfg, augment if split == "train" else None,
                                    class_names=names)
            for split, (items, labels) in parts.items()}


def spoken_digits_datasets(cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                           path: Optional[Union[str, Path]] = None) -> Dict[str, AudioClipDataset]:
    """The embedded espeak-ng spoken digits (``data/audio/spoken_digits.npz``), split by voice.

    Clips are stored at 8 kHz as mu-law codes and resampled to ``cfg.sample_rate`` on load (see
    ``scripts/make_spoken_digits.py``). Returns ``{'train', 'val', 'test'}``.
    """
    path = Path(path) if path is not None else DATA_DIR / "spoken_digits.npz"
    if not path.is_file():
        raise AudioError(f"embedded spoken digits {path} are missing; run scripts/make_spoken_digits.py")
    with np.load(path) as z:
        codes, offsets, labels = z["mulaw"], z["offsets"], z["labels"]
        splits, names, rate, mu = z["splits"], [str(s) for s in z["class_names"]], int(z["sample_rate"]), int(z["mu"])
    wave_all = torch.from_numpy(mulaw_decode(codes, mu))
    if rate != cfg.sample_rate:
        if cfg.on_rate_mismatch == "error":
            raise AudioError(f"the embedded digits are sampled at {rate} Hz and on_rate_mismatch='error'")
    out = {}
    for split in ("train", "val", "test"):
        idx = np.flatnonzero(splits == split)
        clips = [resample(wave_all[offsets[i]:offsets[i + 1]], rate, cfg.sample_rate) for i in idx]
        out[split] = AudioClipDataset(clips, [int(labels[i]) for i in idx], len(names), cfg,
                                      augment if split == "train" else None, class_names=names)
    return out


def compute_norm_stats(dataset: AudioClipDataset, max_clips: Optional[int] = None) -> Tuple[float, float]:
    """Mean and standard deviation of every log-mel value (after padding) over the dataset's clips.

    The official code averages per-batch means and standard deviations; the exact pooled values computed here
    differ from that only by the batch-wise approximation. No augmentation is applied.
    """
    n = len(dataset) if max_clips is None else min(len(dataset), max_clips)
    total = total_sq = count = 0.0
    for i in range(n):
        fb = fbank_to_image(waveform_fbank(dataset.waveform(i), dataset.cfg), dataset.cfg, normalize=False).double()
        total += float(fb.sum())
        total_sq += float((fb * fb).sum())
        count += fb.numel()
    if count == 0:
        raise AudioError("cannot compute statistics of an empty dataset")
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return float(mean), float(math.sqrt(var))

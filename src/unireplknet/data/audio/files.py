"""Audio files -> float waveforms: PCM WAV with the standard library, other formats with soundfile, mu-law codes.

The signal -> image steps (fbank, resampling, augmentation) are in :mod:`unireplknet.modalities.audio`.
"""
from __future__ import annotations

import logging
import wave
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

from ...modalities.audio import AudioError, resample

__all__ = ["AUDIO_EXTENSIONS", "mulaw_decode", "load_audio"]

_logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


# ----------------------------------------------------------------------------------------------- reading
def mulaw_decode(codes: np.ndarray, mu: int = 255) -> np.ndarray:
    """uint8 mu-law codes (continuous companding, ``mu + 1`` uniform levels) → float32 in [-1, 1]."""
    y = codes.astype(np.float64) / mu * 2.0 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


MAX_AUDIO_SECONDS_ENV = "UNIREPLKNET_MAX_AUDIO_SECONDS"
#: Clips are read whole (4 bytes a sample once decoded); an hour at 48 kHz stereo is 1.4 GB. 10 minutes is far
#: longer than any clip a classifier sees (AudioSet: 10 s) and keeps a file at ~230 MB.
DEFAULT_MAX_AUDIO_SECONDS = 600
#: Channels are averaged to mono after reading; more than this is not audio a microphone recorded.
MAX_AUDIO_CHANNELS = 64


def max_audio_seconds() -> float:
    """The longest clip that is read: ``UNIREPLKNET_MAX_AUDIO_SECONDS`` or 600."""
    from ...limits import env_limit

    try:
        return env_limit(MAX_AUDIO_SECONDS_ENV, DEFAULT_MAX_AUDIO_SECONDS, "seconds", integer=False)
    except ValueError as e:
        raise AudioError(str(e)) from None


def _check_clip_size(path: Path, frames: int, rate: int, channels: int) -> None:
    """Refuse a clip by its header, before its samples are read: too long, too many channels, or no rate."""
    if rate <= 0:
        raise AudioError(f"{path} declares a sample rate of {rate} Hz; the file is corrupt")
    if channels > MAX_AUDIO_CHANNELS:
        raise AudioError(f"{path} declares {channels} channels, more than {MAX_AUDIO_CHANNELS}; the file is corrupt "
                         "or not a recording")
    seconds, most = frames / rate, max_audio_seconds()
    if seconds > most:
        raise AudioError(
            f"{path} is {seconds:,.0f} s long ({frames:,} samples at {rate} Hz), over the limit of {most:g} s; cut it "
            f"into clips (e.g. sox in.wav out.wav trim 0 10), or raise the limit with {MAX_AUDIO_SECONDS_ENV}=<s>")


def _read_wav_stdlib(path: Path) -> Tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        _check_clip_size(path, w.getnframes(), rate, channels)
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
    if not path.is_file():  # missing, or a FIFO/device that would block the reader
        from ...checkpoint import not_a_regular_file

        raise AudioError(not_a_regular_file(path, "audio file"))
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
            info = soundfile.info(str(path))
        except Exception as e:  # noqa: BLE001 - soundfile raises its own LibsndfileError / RuntimeError types
            raise AudioError(f"cannot read audio file {path}: {e}") from e
        _check_clip_size(path, int(info.frames), int(info.samplerate), int(info.channels))
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

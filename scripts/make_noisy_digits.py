#!/usr/bin/env python3
"""Generate the *noisy spoken digits*: a harder audio demo with many speakers, rooms and noises, fully offline.

The ten English digit words are spoken by a small source-filter (formant) synthesiser, one speaker at a time,
then played in a generated room and mixed with generated background noise:

* **speaker** (fixed per speaker): vocal-tract length (all formants scaled by one factor, 0.85-1.30), mean pitch
  (tied to the tract length, as for men, women and children), speaking rate (0.75-1.35), glottal spectral tilt,
  formant bandwidths, breathiness, intonation range, and an *accent*: each vowel's formants shifted by its own
  random amount (about ±7 %) for this speaker only;
* **take** (fresh per clip): pitch and rate jitter, per-segment duration jitter, loudness, and a random start
  time inside the 1 s clip (words last 0.2-1.0 s, median 0.42 s; the start is uniform over the rest);
* **room** (fixed per speaker, every clip a fresh realisation): an exponentially decaying noise tail with
  RT60 0.15-0.8 s and a direct-to-reverberant ratio of 0-12 dB (a generated room impulse response);
* **noise** (fixed colour per speaker, fresh per clip): coloured noise (white ... brown) plus, for half of the
  speakers, speech-shaped noise modulated at syllable rate ("babble"), at an SNR of 0-20 dB.

Splits are **disjoint in speaker, room and noise environment**: speaker ``k`` is drawn from its own random
stream ``default_rng([seed, k])``; speakers ``0 .. train-1`` make the training split, the next ``val`` the
validation split and the next ``test`` the test split. No speaker, no accent, no room and no noise colour of
the held-out splits occurs in training: they are new draws from the same population.

Output: the standard folder ``<out>/{train,val,test}/<word>/spk<NNN>_t<T>.wav`` (16 kHz, 16-bit mono PCM) that
``unireplknet audio-train --data <out>`` reads, plus ``<out>/speakers.json`` (every speaker's split and
parameters). The folder is written under a temporary name and renamed at the end, so an interrupted run leaves
no half-written data set. With the defaults (48/12/24 speakers, one take of each word) it writes 840 clips in
about 13 s of CPU time (one core).

Usage::

    python scripts/make_noisy_digits.py --out runs/noisy-digits [--seed 0] [--train 48 --val 12 --test 24]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import wave
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SAMPLE_RATE = 16000
CLIP_SECONDS = 1.0
HOP = 80  # control-track step: 5 ms
NYQUIST_GUARD = 7600.0  # no harmonic above this (the mel bank ends at 8 kHz)
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# Vowel formants F1-F3 in Hz of an adult male tract (Peterson & Barney 1952 / Hillenbrand et al. 1995 averages,
# rounded). Diphthongs glide from the first target to the second.
VOWELS: Dict[str, Tuple[Tuple[float, float, float], ...]] = {
    "IY": ((270, 2290, 3010),), "IH": ((400, 1920, 2560),), "EH": ((530, 1840, 2480),),
    "AO": ((570, 840, 2410),), "UW": ((300, 870, 2240),), "AH": ((640, 1190, 2390),), "AX": ((500, 1500, 2500),),
    "OW": ((540, 1000, 2400), (330, 800, 2300)), "EY": ((480, 1900, 2500), (330, 2200, 2800)),
    "AY": ((730, 1090, 2440), (400, 1900, 2600)),
}
# Voiced non-vowels: formant targets and voicing amplitude.
SONORANTS: Dict[str, Tuple[Tuple[float, float, float], float]] = {
    "W": ((300, 650, 2200), 0.7), "R": ((350, 1200, 1600), 0.7), "N": ((250, 1600, 2600), 0.35)}
# Fricatives and bursts: noise centre and width in Hz (0 = flat), noise level, voicing amplitude.
NOISES: Dict[str, Tuple[float, float, float, float]] = {
    "S": (5200, 1800, 0.5, 0.0), "Z": (5200, 1800, 0.35, 0.35), "F": (0, 0, 0.12, 0.0), "TH": (0, 0, 0.08, 0.0),
    "V": (0, 0, 0.08, 0.35), "T": (4000, 2500, 0.6, 0.0), "K": (2000, 900, 0.6, 0.0)}
STOPS = ("T", "K")
PRONUNCIATIONS: Dict[str, List[str]] = {
    "zero": ["Z", "IY", "R", "OW"], "one": ["W", "AH", "N"], "two": ["T", "UW"], "three": ["TH", "R", "IY"],
    "four": ["F", "AO", "R"], "five": ["F", "AY", "V"], "six": ["S", "IH", "K", "S"],
    "seven": ["S", "EH", "V", "AX", "N"], "eight": ["EY", "T"], "nine": ["N", "AY", "N"]}
# Segment durations in ms at rate 1 (stops: closure + burst).
DURATIONS = {"vowel": 140, "diphthong": 210, "sonorant": 70, "fricative": 110, "closure": 55, "burst": 25}


# ----------------------------------------------------------------------------------------------- parameters
def draw_speaker(seed: int, index: int) -> Dict[str, object]:
    """One speaker, its room and its noise environment, from the speaker's own random stream."""
    rng = np.random.default_rng([seed, index])
    tract = float(np.exp(rng.uniform(np.log(0.85), np.log(1.30))))  # formant scale: men < 1 < women < children
    return dict(
        index=index,
        tract=tract,
        f0=float(105.0 * tract ** 3 * np.exp(rng.normal(0.0, 0.12))),
        rate=float(rng.uniform(0.75, 1.35)),  # duration multiplier
        tilt_db_per_octave=float(rng.uniform(-9.0, -3.0)),
        bandwidth_scale=float(rng.uniform(0.8, 1.6)),
        breathiness=float(rng.uniform(0.0, 0.25)),
        intonation=float(rng.uniform(0.05, 0.25)),
        accent={v: [float(a) for a in np.exp(rng.normal(0.0, 0.07, 3))] for v in sorted(VOWELS)},
        rt60=float(rng.uniform(0.15, 0.8)),
        drr_db=float(rng.uniform(0.0, 12.0)),
        noise_colour=float(rng.uniform(0.0, 2.0)),  # power spectrum ~ 1/f^colour
        babble=bool(rng.random() < 0.5),
    )


def _segments(word: str, spk: Dict[str, object], rng: np.random.Generator, rate: float) -> List[Dict[str, object]]:
    """The word as a list of segments with frame counts and control targets."""
    out: List[Dict[str, object]] = []
    phones = PRONUNCIATIONS[word]
    tract = float(spk["tract"])
    for i, ph in enumerate(phones):
        jitter = float(np.exp(rng.normal(0.0, 0.15))) * rate * (1.3 if i == len(phones) - 1 else 1.0)
        frames = lambda ms: max(2, int(round(ms * jitter / 5.0)))  # noqa: E731
        if ph in VOWELS:
            accent = np.asarray(spk["accent"][ph])  # type: ignore[index]
            targets = [np.asarray(t) * tract * accent for t in VOWELS[ph]]
            kind = "diphthong" if len(targets) == 2 else "vowel"
            out.append(dict(frames=frames(DURATIONS[kind]), formants=targets, voice=1.0, noise=0.0))
        elif ph in SONORANTS:
            formants, voice = SONORANTS[ph]
            out.append(dict(frames=frames(DURATIONS["sonorant"]), formants=[np.asarray(formants) * tract],
                            voice=voice, noise=0.0, nasal=ph == "N"))
        else:
            centre, width, level, voice = NOISES[ph]
            spec = dict(centre=centre * tract ** 0.5, width=width * tract ** 0.5)
            if ph in STOPS:
                out.append(dict(frames=frames(DURATIONS["closure"]), formants=None, voice=0.0, noise=0.0))
                out.append(dict(frames=frames(DURATIONS["burst"]), formants=None, voice=0.0, noise=level, **spec))
            else:
                out.append(dict(frames=frames(DURATIONS["fricative"]), formants=None, voice=voice, noise=level, **spec))
    return out


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 (edge values repeated): coarticulation of the control tracks."""
    if width <= 1:
        return x
    pad = np.concatenate([np.repeat(x[:1], width // 2, 0), x, np.repeat(x[-1:], width - 1 - width // 2, 0)])
    kernel = np.ones(width) / width
    return np.stack([np.convolve(pad[:, j], kernel, mode="valid") for j in range(x.shape[1])], 1)


def _resonance(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of 2nd-order resonators (gain 1 at DC) at ``freqs`` (..., K) for formants (..., F)."""
    f = freqs[..., None]
    fc, bw = formants[..., None, :], bandwidths[..., None, :]
    return np.prod(fc ** 2 / np.sqrt((fc ** 2 - f ** 2) ** 2 + (f * bw) ** 2), axis=-1)


# ----------------------------------------------------------------------------------------------- synthesis
def speak(word: str, spk: Dict[str, object], rng: np.random.Generator) -> np.ndarray:
    """One dry take of ``word`` by speaker ``spk`` (float waveform at 16 kHz, peak 1)."""
    rate = float(spk["rate"]) * float(np.exp(rng.normal(0.0, 0.08)))
    segs = _segments(word, spk, rng, rate)
    n_frames = sum(int(s["frames"]) for s in segs) + 4  # a little release at the end
    formants = np.full((n_frames, 3), np.nan)
    voice, noise = np.zeros(n_frames), np.zeros(n_frames)
    centre, width, nasal = np.zeros(n_frames), np.zeros(n_frames), np.zeros(n_frames)
    t = 0
    for s in segs:
        n = int(s["frames"])
        if s["formants"] is not None:
            a, b = s["formants"][0], s["formants"][-1]  # type: ignore[index]
            w = np.linspace(0.0, 1.0, n)[:, None]
            formants[t:t + n] = (1 - w) * a + w * b
        voice[t:t + n], noise[t:t + n] = float(s["voice"]), float(s["noise"])
        centre[t:t + n], width[t:t + n] = float(s.get("centre", 0.0)), float(s.get("width", 0.0))
        nasal[t:t + n] = float(bool(s.get("nasal", False)))
        t += n
    # Consonants without formant targets take their neighbours' (linear interpolation), then everything glides.
    frame_idx = np.arange(n_frames)
    for j in range(3):
        known = ~np.isnan(formants[:, j])
        formants[:, j] = np.interp(frame_idx, frame_idx[known], formants[known, j])
    formants = _smooth(formants, 8)
    voice = _smooth(voice[:, None], 3)[:, 0]
    noise = _smooth(noise[:, None], 2)[:, 0]
    tract = float(spk["tract"])
    higher = np.broadcast_to(np.array([3300.0, 4200.0]) * tract, (n_frames, 2))
    all_formants = np.concatenate([formants, higher], 1)
    bandwidths = np.array([60.0, 90.0, 150.0, 200.0, 250.0]) * float(spk["bandwidth_scale"])
    bandwidths = np.broadcast_to(bandwidths, (n_frames, 5)).copy()
    bandwidths[:, 0] *= 1.0 + 2.0 * nasal  # nasal murmur: a damped first formant

    # Pitch: declination over the word plus a slow random wobble.
    f0_mean = float(spk["f0"]) * float(np.exp(rng.normal(0.0, 0.08)))
    excursion = float(spk["intonation"])
    f0 = f0_mean * (1 + excursion * np.linspace(0.5, -0.5, n_frames)
                    + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * frame_idx * HOP / SAMPLE_RATE + rng.uniform(0, 6.3)))
    n = n_frames * HOP
    sample_frames = np.arange(n) / HOP
    f0_s = np.interp(sample_frames, frame_idx, f0)
    phase = 2 * np.pi * np.cumsum(f0_s) / SAMPLE_RATE

    # Voiced part: additive harmonics, amplitude = source tilt x vocal-tract resonance x voicing.
    k = np.arange(1, int(NYQUIST_GUARD / f0.min()) + 1)
    harmonic_freqs = f0[:, None] * k[None, :]  # (frames, K)
    tilt = k[None, :] ** (float(spk["tilt_db_per_octave"]) / 6.02)
    amp = tilt * _resonance(harmonic_freqs, all_formants, bandwidths) * voice[:, None]
    amp[harmonic_freqs > NYQUIST_GUARD] = 0.0
    amp_s = np.stack([np.interp(sample_frames, frame_idx, amp[:, i]) for i in range(len(k))])  # (K, n)
    voiced = (amp_s * np.sin(k[:, None] * phase[None, :] + rng.uniform(0, 2 * np.pi, (len(k), 1)))).sum(0)

    voiced /= np.sqrt(np.mean(voiced[np.repeat(voice, HOP) >= 0.9] ** 2)) + 1e-12  # unit RMS in the vowels

    # Noise part, shaped frame by frame in the short-time Fourier domain: frication bands + breathy aspiration.
    bins = np.fft.rfftfreq(4 * HOP, 1.0 / SAMPLE_RATE)  # 161 bins of a 20 ms frame
    band = np.where(width[:, None] > 0,
                    np.exp(-0.5 * ((bins[None, :] - centre[:, None]) / np.maximum(width[:, None], 1.0)) ** 2),
                    np.clip(bins[None, :] / 1500.0, 0.0, 1.0))  # flat fricatives: everything above ~1.5 kHz
    tract_shape = _resonance(np.broadcast_to(bins, (n_frames, len(bins))), all_formants, bandwidths) ** 0.5
    fricative = _shaped_noise(noise[:, None] * _unit_rms(band), rng, n)
    aspiration = _shaped_noise(float(spk["breathiness"]) * voice[:, None] * _unit_rms(tract_shape), rng, n)
    x = voiced + fricative + aspiration
    return x / (np.abs(x).max() + 1e-9)


def _unit_rms(shape: np.ndarray) -> np.ndarray:
    """Scale each frame's magnitude spectrum so that noise with that spectrum has unit RMS (see _shaped_noise)."""
    return shape / (np.sqrt((shape ** 2).mean(1, keepdims=True)) + 1e-12)


def _shaped_noise(shape: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaussian noise whose short-time magnitude spectrum at control frame i is ``shape[i]`` (20 ms Hann frames,
    overlap-added every 5 ms, centred on the frame). A frame with a unit-RMS ``shape`` gives unit-RMS noise."""
    size = 4 * HOP
    spectrum = (rng.normal(size=shape.shape) + 1j * rng.normal(size=shape.shape)) * shape
    window = np.hanning(size)
    # irfft of unit complex Gaussians with mean square magnitude 1 has variance ~2/size; 4 overlapping Hann frames
    # add sum(window^2)/HOP = 1.5 times the variance of one frame.
    frames = np.fft.irfft(spectrum, size, axis=1) * window[None, :] * np.sqrt(size / 2.0 / 1.5)
    out = np.zeros(n + size)
    for i in range(len(shape)):
        out[i * HOP:i * HOP + size] += frames[i]
    return out[2 * HOP:2 * HOP + n]


def room_response(spk: Dict[str, object], rng: np.random.Generator) -> np.ndarray:
    """A generated room impulse response: direct path, then a noise tail decaying 60 dB in RT60 seconds."""
    rt60 = float(spk["rt60"])
    length = int(min(1.2 * rt60, 0.8) * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.normal(size=length) * np.exp(-6.91 * t / rt60)
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # first reflections arrive a few ms after the direct sound
    tail *= np.sqrt(10 ** (-float(spk["drr_db"]) / 10) / (np.sum(tail ** 2) + 1e-12))  # energy relative to direct = 1
    tail[0] += 1.0
    return tail


def background(spk: Dict[str, object], rng: np.random.Generator, n: int) -> np.ndarray:
    """Coloured noise (power ~ 1/f^colour), plus syllable-rate modulated speech-shaped noise for 'babble' rooms."""
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum = rng.normal(size=len(freqs)) + 1j * rng.normal(size=len(freqs))
    x = np.fft.irfft(spectrum / np.maximum(freqs, 20.0) ** (float(spk["noise_colour"]) / 2), n)
    x /= x.std() + 1e-12
    if spk["babble"]:
        shaped = np.fft.irfft(spectrum[::-1] * np.exp(-0.5 * ((freqs - 500.0) / 700.0) ** 2), n)
        envelope = 1.0 + np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / SAMPLE_RATE + rng.uniform(0, 6.3))
        babble = shaped * envelope
        x = x + babble / (babble.std() + 1e-12)
    return x / (x.std() + 1e-12)


def make_clip(word: str, spk: Dict[str, object], rng: np.random.Generator) -> np.ndarray:
    """A 1 s clip: the spoken word at a random time, reverberated in the speaker's room, in noise at 0-20 dB SNR."""
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    dry = speak(word, spk, rng)
    if len(dry) > int(0.95 * n):  # a very slow take: keep it inside the clip
        dry = dry[: int(0.95 * n)]
    start = int(rng.integers(0, n - len(dry) + 1))
    placed = np.zeros(n)
    placed[start:start + len(dry)] = dry
    rir = room_response(spk, rng)
    wet = np.fft.irfft(np.fft.rfft(placed, 2 * n) * np.fft.rfft(rir, 2 * n), 2 * n)[:n]
    active = wet[start:start + len(dry)]
    snr_db = rng.uniform(0.0, 20.0)
    noise = background(spk, rng, n) * np.sqrt(np.mean(active ** 2) / 10 ** (snr_db / 10))
    mixed = wet + noise
    return mixed * (10 ** (rng.uniform(-12.0, -1.0) / 20) / (np.abs(mixed).max() + 1e-12))


def write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes())


# ----------------------------------------------------------------------------------------------- folder
def split_speakers(train: int, val: int, test: int) -> Dict[str, List[int]]:
    """Speaker indices of each split: consecutive, non-overlapping ranges."""
    return {"train": list(range(train)), "val": list(range(train, train + val)),
            "test": list(range(train + val, train + val + test))}


def generate(out: Path, seed: int = 0, train: int = 48, val: int = 12, test: int = 24, takes: int = 1,
             overwrite: bool = False) -> Dict[str, int]:
    """Write the data set to ``out`` (see the module docstring); returns the number of clips per split."""
    out = Path(out)
    if min(train, val, test, takes) < 1:
        raise ValueError(f"every split needs at least one speaker and one take, got train={train} val={val} "
                         f"test={test} takes={takes}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        speakers, counts = [], {}
        for split, indices in split_speakers(train, val, test).items():
            counts[split] = 0
            for word in WORDS:
                (tmp / split / word).mkdir(parents=True)
            for index in indices:
                spk = draw_speaker(seed, index)
                speakers.append(dict(spk, split=split))
                for take in range(takes):
                    for w, word in enumerate(WORDS):
                        rng = np.random.default_rng([seed, index, take, w, 1])
                        write_wav(tmp / split / word / f"spk{index:03d}_t{take}.wav", make_clip(word, spk, rng))
                        counts[split] += 1
        meta = dict(seed=seed, sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS, words=WORDS, takes=takes,
                    counts=counts, speakers=speakers, generator="scripts/make_noisy_digits.py")
        (tmp / "speakers.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def draw_figure(path: Path, seed: int = 0, speaker: int = 60, mel_bins: int = 64) -> None:
    """Draw every word of one speaker twice, dry and as written to the data set (room + noise), as the network's
    log-mel input (``mel_bins`` bands); needs matplotlib (``pip install 'unireplknet[plot]'``)."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit("the figure needs matplotlib: pip install 'unireplknet[plot]'") from None
    import io

    import torch
    from PIL import Image

    from unireplknet.modalities.audio import AudioConfig, waveform_fbank

    matplotlib.rcParams.update(matplotlib.rcParamsDefault)
    cfg = AudioConfig(num_mel_bins=mel_bins, target_frames=96)
    spk = draw_speaker(seed, speaker)
    fig = Figure(figsize=(13.0, 3.6), layout="constrained")
    axes = fig.subplots(2, len(WORDS), sharex=True, sharey=True)
    image = None
    for w, word in enumerate(WORDS):
        dry = np.zeros(SAMPLE_RATE)
        take = speak(word, spk, np.random.default_rng([seed, speaker, 0, w, 1]))[: SAMPLE_RATE]
        dry[: len(take)] = take
        wet = make_clip(word, spk, np.random.default_rng([seed, speaker, 0, w, 1]))
        for row, x in enumerate((0.3 * dry, wet)):
            fb = waveform_fbank(torch.tensor(x, dtype=torch.float32), cfg).numpy()
            image = axes[row, w].imshow(fb.T, origin="lower", aspect="auto", vmin=-12, vmax=6, interpolation="nearest",
                                        extent=(0.0, len(fb) * cfg.frame_shift_ms / 1000, -0.5, mel_bins - 0.5))
            axes[row, w].set_xlabel("time (s)" if row == 1 else "")
        axes[0, w].set_title(f"“{word}”")
    axes[0, 0].set_ylabel("dry take\nmel band")
    axes[1, 0].set_ylabel("as written\nmel band")
    fig.colorbar(image, ax=list(axes.flat), shrink=0.9, label="log filter-bank energy")
    fig.suptitle(f"Noisy spoken digits: speaker {speaker} (a test speaker with the defaults; tract ×{spk['tract']:.2f}, "
                 f"pitch {spk['f0']:.0f} Hz, durations ×{spk['rate']:.2f}, RT60 {spk['rt60']:.2f} s, "
                 f"{'babble + ' if spk['babble'] else ''}noise 1/f^{spk['noise_colour']:.1f}; dry take at its "
                 f"start, written clip shifted at random)", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB").quantize(colors=128)
    tmp = path.with_name(f".{path.name}.tmp")
    picture.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/noisy-digits", help="output folder (runs/noisy-digits)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every speaker, room, noise and take (0)")
    ap.add_argument("--train", type=int, default=48, help="training speakers (48)")
    ap.add_argument("--val", type=int, default=12, help="validation speakers (12)")
    ap.add_argument("--test", type=int, default=24, help="test speakers (24)")
    ap.add_argument("--takes", type=int, default=1, help="takes of every word per speaker (1)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    ap.add_argument("--figure", metavar="PNG", help="only draw one test speaker's words (docs/audio_noisy_digits.png)")
    args = ap.parse_args(argv)
    if args.figure:
        draw_figure(Path(args.figure), args.seed, speaker=args.train + args.val)
        print(f"wrote {args.figure}")
        return 0
    try:
        counts = generate(Path(args.out), args.seed, args.train, args.val, args.test, args.takes, args.overwrite)
    except (FileExistsError, ValueError) as e:
        sys.exit(f"make_noisy_digits: {e}")
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v} clips" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

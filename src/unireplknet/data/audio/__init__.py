"""Audio data: file readers (:mod:`.files`), clip datasets and the embedded spoken digits (:mod:`.clips`).

This folder also holds the embedded audio: ``spoken_digits.npz`` (see scripts/make_spoken_digits.py) and
``fbank_reference.npz`` (torchaudio's fbank numbers for tests/test_audio_fbank.py).
"""
from .clips import (DATA_DIR, AudioClipDataset, audio_folder_dataset, audio_manifest_datasets, compute_norm_stats,
                    seed_audio_worker, speech_commands_datasets, spoken_digits_datasets)
from .files import AUDIO_EXTENSIONS, load_audio, mulaw_decode

__all__ = ["AUDIO_EXTENSIONS", "load_audio", "mulaw_decode", "DATA_DIR", "AudioClipDataset", "audio_folder_dataset",
           "audio_manifest_datasets", "speech_commands_datasets", "spoken_digits_datasets", "compute_norm_stats",
           "seed_audio_worker"]

"""The audio and forecasting checkpoint readers (shared in tasks._epoch_loop) refuse each other's files."""
from __future__ import annotations

import pytest
import torch

from unireplknet.tasks.audio import load_audio_classifier
from unireplknet.tasks.forecasting import load_forecaster


@pytest.mark.parametrize("load, other_format, own_format", [
    (load_audio_classifier, "unireplknet-forecast-v1", "unireplknet-audio-v1"),
    (load_forecaster, "unireplknet-audio-v1", "unireplknet-forecast-v1"),
])
def test_checkpoint_of_the_other_task_or_no_checkpoint_is_refused(tmp_path, load, other_format, own_format):
    with pytest.raises(FileNotFoundError, match="does not exist; pass the last.pth or best.pth"):
        load(tmp_path / "missing.pth")
    torch.save({"format": other_format, "model": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=f"no format='{own_format}'"):
        load(tmp_path / "other.pth")
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load(tmp_path / "cut.pth")

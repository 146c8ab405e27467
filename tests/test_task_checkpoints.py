"""Task checkpoint readers (shared loading in tasks._epoch_loop) refuse missing, foreign and truncated files."""
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


@pytest.mark.parametrize("load, command, other_task", [
    ("video", "video-train", "pointcloud"),
    ("pointcloud", "points-train", "video"),
])
def test_video_and_pointcloud_readers_refuse_missing_foreign_and_truncated_files(tmp_path, load, command, other_task):
    from unireplknet.tasks.pointcloud import load_pointcloud_classifier
    from unireplknet.tasks.video import load_video_classifier

    load = {"video": load_video_classifier, "pointcloud": load_pointcloud_classifier}[load]
    with pytest.raises(FileNotFoundError, match=f"does not exist; pass the last.pth of a {command} run"):
        load(str(tmp_path / "missing.pth"))
    torch.save({"model_config": {"task": other_task}, "model": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=f"is not a {command} checkpoint"):
        load(str(tmp_path / "other.pth"))
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load(str(tmp_path / "cut.pth"))

"""One checkpoint schema and one reader for every task: each task's loader refuses missing, truncated, foreign
(not written by the engine) and other-task checkpoints with a clear error."""
from __future__ import annotations

import pytest
import torch

from unireplknet.engine import CHECKPOINT_FORMAT
from unireplknet.tasks.audio.task import load_audio_classifier
from unireplknet.tasks.forecast import load_forecaster
from unireplknet.tasks.pointcloud.task import load_pointcloud_classifier
from unireplknet.tasks.video.task import load_video_classifier

LOADERS = {"audio": load_audio_classifier, "forecast": load_forecaster, "video": load_video_classifier,
           "pointcloud": load_pointcloud_classifier}
COMMANDS = {"audio": "audio-train", "forecast": "forecast-train", "video": "video-train", "pointcloud": "points-train"}


@pytest.mark.parametrize("task, other_task", [("audio", "forecast"), ("forecast", "audio"), ("video", "pointcloud"),
                                              ("pointcloud", "video")])
def test_reader_refuses_missing_truncated_foreign_and_other_task_files(tmp_path, task, other_task):
    load = LOADERS[task]
    with pytest.raises(FileNotFoundError, match="does not exist; pass the last.pth"):
        load(str(tmp_path / "missing.pth"))
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="is not a readable checkpoint.*truncated or corrupt.*last.pth"):
        load(str(tmp_path / "cut.pth"))
    torch.save({"model": {}}, tmp_path / "foreign.pth")  # a plain state-dict file, not written by the engine
    with pytest.raises(ValueError, match="is not a unireplknet training checkpoint"):
        load(str(tmp_path / "foreign.pth"))
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": {"task": other_task, "model_kwargs": {}}, "model": {}},
               tmp_path / "other.pth")
    with pytest.raises(ValueError, match=f"{COMMANDS[task]}.*task '{other_task}'"):
        load(str(tmp_path / "other.pth"))

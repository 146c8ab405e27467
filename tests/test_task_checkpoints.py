"""Shared task-loop parts (tasks._epoch_loop): checkpoint readers refuse missing, foreign and truncated files; the training step."""
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


def test_optimizer_step_stops_on_a_non_finite_loss_and_clips_otherwise():
    """The shared training step: NaN loss → FloatingPointError naming epoch and advice, no update; else one
    SGD step on gradients clipped to the given norm."""
    from unireplknet.tasks._epoch_loop import optimizer_step

    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    model = torch.nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=1.0)
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 3; try less"):
        optimizer_step(model, opt, (w * float("nan")).sum(), 2, advice="try less")
    assert torch.equal(w.detach(), torch.tensor([3.0, 4.0]))
    value = optimizer_step(model, opt, (w * w).sum(), 0, clip_grad=1.0)  # grad (6, 8), norm 10 → (0.6, 0.8)
    assert value == 25.0
    assert torch.allclose(w.detach(), torch.tensor([2.4, 3.2]))

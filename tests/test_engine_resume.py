"""Checkpoints: atomic writes that survive a full disk, RNG state round trips, and exact resume."""
import errno
import random

import numpy as np
import pytest
import torch

from unireplknet.data import write_digits_image_folder
from unireplknet.engine import (
    CheckpointWriteError,
    atomic_torch_save,
    get_rng_state,
    load_training_checkpoint,
    set_rng_state,
)
from unireplknet.engine import checkpointing
from unireplknet.tasks.image import TrainConfig, train

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((13,), (13,), (3,), (3,)))


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_image_folder(root / "train", split="train", limit_per_class=4)
    write_digits_image_folder(root / "val", split="val", limit_per_class=1)
    return root


def _cfg(data, out, **kw):
    # Full recipe randomness on purpose (RandAugment, random erasing, mixup/cutmix, drop path, EMA), so that
    # exact resume has to restore every random stream and the EMA.
    base = dict(data=str(data), model="custom", model_kwargs=TINY, in_chans=1, input_size=32, epochs=2,
                batch_size=8, workers=0, warmup_epochs=0.5, drop_path=0.1, mixup=0.8, cutmix=1.0,
                model_ema=True, model_ema_decay=0.9, export_deploy=False, output=str(out))
    base.update(kw)
    return TrainConfig.with_recipe(**base)


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leave a cached gaussian in NumPy's state
    state = get_rng_state()
    atomic_torch_save({"rng": state}, tmp_path / "rng.pth")
    want = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"])
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == want


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    atomic_torch_save({"epoch": 1, "w": torch.arange(4.0)}, path)

    def full_disk(obj, f):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match="No space left.*disk full.*previous last.pth is intact"):
        atomic_torch_save({"epoch": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 1 and torch.equal(kept["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left behind


class _Killed(Exception):
    pass


def _kill_after(epoch):
    def callback(end):
        if end.epoch == epoch:
            raise _Killed()
    return callback


def test_killed_and_resumed_run_matches_uninterrupted_run(digits_tree, tmp_path):
    full = train(_cfg(digits_tree, tmp_path / "full"))
    with pytest.raises(_Killed):
        train(_cfg(digits_tree, tmp_path / "resumed"), callbacks=[_kill_after(1)])
    stopped = load_training_checkpoint(tmp_path / "resumed" / "last.pth")
    assert stopped["epoch"] == 1
    # scramble the process's random state: resume must restore it from the checkpoint
    torch.manual_seed(12345), random.seed(5), np.random.seed(5)
    resumed = train(_cfg(digits_tree, tmp_path / "resumed", resume="auto"))

    a = load_training_checkpoint(tmp_path / "full" / "last.pth")
    b = load_training_checkpoint(tmp_path / "resumed" / "last.pth")
    assert a["epoch"] == b["epoch"] == 2 and a["num_updates"] == b["num_updates"]
    for part in ("model", "model_ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert [r["val_top1"] for r in full.history] == [r["val_top1"] for r in resumed.history]
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + one row per epoch, none duplicated by the resume


def test_save_failure_during_training_keeps_last_epoch(digits_tree, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = torch.save

    def save_then_fill_disk(obj, f):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpointing.torch, "save", save_then_fill_disk)
    with pytest.raises(CheckpointWriteError, match="intact"):
        train(_cfg(digits_tree, tmp_path / "run", model_ema=False, mixup=0.0, cutmix=0.0))
    monkeypatch.undo()
    assert load_training_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 1


def test_resume_checks(digits_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_cfg(digits_tree, tmp_path / "none", resume="auto"))
    torch.save({"model": {}}, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="not a unireplknet training checkpoint"):
        load_training_checkpoint(tmp_path / "plain.pth")


def test_finetune_from_deploy_checkpoint_resumes_exactly(digits_tree, tmp_path):
    """A deploy-layout --checkpoint trains the deploy structure; a killed run of it resumes in that structure and
    ends where the uninterrupted one does (the resumed model used to be rebuilt in the training structure)."""
    from unireplknet import UniRepLKNet, reparameterize
    from unireplknet.checkpoint import save_model

    torch.manual_seed(3)
    own = reparameterize(UniRepLKNet(in_chans=1, num_classes=10, **TINY))
    path = save_model(own, tmp_path / "deploy.safetensors")
    kw = dict(checkpoint=str(path), model_ema=False, mixup=0.0, cutmix=0.0, drop_path=0.0)
    full = train(_cfg(digits_tree, tmp_path / "full", **kw))
    assert full.model.deploy
    with pytest.raises(_Killed):
        train(_cfg(digits_tree, tmp_path / "resumed", **kw), callbacks=[_kill_after(1)])
    resumed = train(_cfg(digits_tree, tmp_path / "resumed", resume="auto", **kw))
    assert resumed.model.deploy
    a = load_training_checkpoint(tmp_path / "full" / "last.pth")
    b = load_training_checkpoint(tmp_path / "resumed" / "last.pth")
    assert a["model_config"]["deploy"] is True and b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys() == own.state_dict().keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

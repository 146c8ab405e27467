"""Every task on the one engine, on tiny data: a killed-and-resumed run is bit-identical to an uninterrupted one;
``best.pth`` + ``last.pth``; the deploy file (and ONNX where the task has one fixed-shape input) scores what the
training structure scores; two gloo processes equal one process with gradient accumulation.

Each task's config below is the smallest that still runs every engine feature it has (random augmentation,
mixup where the task has it, EMA for the image task).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unireplknet.engine import load_training_checkpoint

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (7,), (3,), (3,)))
TASKS = ["image", "video", "pointcloud", "audio", "forecast", "segmentation", "detection"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The files the image and audio tasks read (the other tasks generate their data)."""
    from unireplknet.data import write_digits_image_folder

    root = tmp_path_factory.mktemp("data")
    write_digits_image_folder(root / "digits" / "train", split="train", limit_per_class=2)
    write_digits_image_folder(root / "digits" / "val", split="val", limit_per_class=1)
    sys.path.insert(0, str(Path(__file__).parent))
    from test_audio import _tone_folder

    _tone_folder(root / "tones")
    return root


def make(task: str, root: Path, out: Path, **kw):
    """(train function, config) of ``task`` in its tiny setting; ``kw`` overrides engine options."""
    common = {**dict(output=str(out), epochs=2, progress=False, tensorboard=False), **kw}
    if task == "image":
        from unireplknet.tasks.image import TrainConfig, train

        return train, TrainConfig.with_recipe(**merge(dict(
            data=str(root / "digits"), model="custom", model_kwargs=TINY, in_chans=1, input_size=32, batch_size=4,
            workers=0, warmup_epochs=0.5, drop_path=0.1, mixup=0.8, cutmix=1.0, model_ema=True,
            model_ema_decay=0.9), common))
    if task == "video":
        from unireplknet.tasks.video.task import VideoTrainConfig, train_video

        return train_video, VideoTrainConfig(**merge(dict(num_frames=4, input_size=16, clips_per_class=1,
                                                         batch_size=2, model_kwargs=TINY, mixup=0.8), common))
    if task == "pointcloud":
        from unireplknet.tasks.pointcloud.task import PointCloudTrainConfig, train_pointcloud

        return train_pointcloud, PointCloudTrainConfig(**merge(dict(
            num_points=64, image_size=32, num_views=2, shapes_per_class=1, batch_size=2, model_kwargs=TINY,
            test_rotations=2), common))
    if task == "audio":
        from unireplknet.modalities.audio import AudioConfig
        from unireplknet.tasks.audio.task import AudioTrainConfig, train_audio

        return train_audio, AudioTrainConfig(**merge(dict(
            data=str(root / "tones"), audio=AudioConfig(num_mel_bins=32, target_frames=32).to_dict(),
            norm_stats="auto", model="custom", model_kwargs=TINY, drop_path=0.0, batch_size=2, lr=1e-3, mixup=0.5,
            freq_mask=4, time_mask=4, roll=2), common))
    if task == "forecast":
        from unireplknet.tasks.forecast import ForecastTrainConfig, train_forecaster

        return train_forecaster, ForecastTrainConfig.with_recipe(**merge(dict(
            data="co2", seq_len=24, label_len=12, pred_len=8, d_model=96, model_kwargs=TINY, train_stride=8,
            batch_size=8),
            common))
    if task == "segmentation":
        from unireplknet.tasks.dense.task import DenseTrainConfig, train_dense

        return train_dense, DenseTrainConfig(**merge(dict(
            task="segmentation", model="custom", model_kwargs=TINY, head_kwargs=dict(channels=16, aux_channels=8),
            scenes_train=4, scenes_val=2, batch_size=2), common))
    if task == "detection":
        from unireplknet.tasks.dense.task import DenseTrainConfig, train_dense

        return train_dense, DenseTrainConfig(**merge(dict(
            task="detection", detector="maskrcnn", model="custom", model_kwargs=TINY, scenes_train=4, scenes_val=2,
            batch_size=2), common))
    raise KeyError(task)


def merge(task_options, common):
    return {**task_options, **common}


class Killed(Exception):
    pass


def _kill_after_first_epoch(end):
    if end.epoch == 1:
        raise Killed


def _weights(path: Path):
    ckpt = load_training_checkpoint(path)
    return ckpt["model"], ckpt["optimizer"]["state"], ckpt.get("model_ema")


@pytest.mark.parametrize("task", TASKS)
def test_killed_and_resumed_run_is_bit_identical_and_writes_every_file(task, data_root, tmp_path):
    fn, cfg = make(task, data_root, tmp_path / "full")
    fn(cfg)
    full = tmp_path / "full"
    assert (full / "last.pth").is_file() and (full / "best.pth").is_file() and (full / "metrics.csv").is_file()
    summary = json.loads((full / "summary.json").read_text())
    assert summary["epochs"] == 2 and (full / "deploy.safetensors").is_file()
    metric = next(k for k in summary["best"] if k.startswith("val_"))
    best = load_training_checkpoint(full / "best.pth")
    assert best["epoch"] == summary["best"]["epoch"] and best["history"][-1][metric] == summary["best"][metric]
    # the re-parameterized deploy structure scores what the trained structure scores (float noise only)
    for k, v in summary["train_structure"].items():
        if isinstance(v, float) and k != "loss":
            assert summary["deploy_structure"][k] == pytest.approx(v, abs=1e-6), k
    if summary["max_logit_diff"] is not None:
        assert summary["max_logit_diff"] < 1e-4
    # every task's deploy model as ONNX, checked with onnxruntime (the forecaster's with its two inputs)
    assert (full / "model.onnx").is_file() and summary["onnx_max_diff"] < 1e-3

    fn, cfg = make(task, data_root, tmp_path / "part")
    with pytest.raises(Killed):
        fn(cfg, callbacks=[_kill_after_first_epoch])
    assert not (tmp_path / "part" / ".unireplknet.lock").exists()  # the lock goes with the process
    fn, cfg = make(task, data_root, tmp_path / "part", resume="auto")
    fn(cfg)
    a, b = _weights(full / "last.pth"), _weights(tmp_path / "part" / "last.pth")
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), f"{task}: weight {k} differs after resume"
    for i in a[1]:
        for k, v in a[1][i].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b[1][i][k])), f"{task}: optimizer state {i}.{k}"
    if a[2] is not None:
        for k in a[2]:
            assert torch.equal(a[2][k], b[2][k]), f"{task}: EMA weight {k}"


WORKER = """
import json, os, sys, torch
sys.path.insert(0, sys.argv[3])
from test_engine_tasks import make
task, options = sys.argv[1], json.loads(sys.argv[2])
fn, cfg = make(task, __import__("pathlib").Path(options.pop("root")), options.pop("output"), **options)
fn(cfg)
"""


#: Randomness that differs between ranks by design (augmentation, dropout) off for the DDP comparison.
DETERMINISTIC = dict(pointcloud=dict(augment=False), video=dict(mixup=0.0, crop_scale=(1.0, 1.0)),
                     audio=dict(mixup=0.0, freq_mask=0, time_mask=0, noise=0.0, roll=0), forecast=dict(dropout=0.0),
                     segmentation=dict(hflip=0.0), detection=dict(hflip=0.0))


def _ddp_matches_accumulation(task, data_root, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    # randomness that differs between ranks by design (drop path, augmentation) is off in these settings
    options = dict(root=str(data_root), output=str(tmp_path / "ddp"), accum_steps=1, epochs=1, device="cpu",
                   export_deploy=False, **DETERMINISTIC[task])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), task, json.dumps(options), str(Path(__file__).parent)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fn, cfg = make(task, data_root, tmp_path / "single", accum_steps=2, epochs=1, device="cpu", export_deploy=False,
                   **DETERMINISTIC[task])
    fn(cfg)
    ddp, _, _ = _weights(tmp_path / "ddp" / "last.pth")
    single, _, _ = _weights(tmp_path / "single" / "last.pth")
    params = {k for k, v in single.items() if v.is_floating_point() and "running_" not in k}
    for k in params:  # BatchNorm running statistics differ by design (averaged per rank vs accumulated)
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-3, atol=1e-4, msg=f"{task}: parameter {k}")


def test_two_gloo_processes_equal_one_with_accumulation_pointcloud(data_root, tmp_path):
    _ddp_matches_accumulation("pointcloud", data_root, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["video", "audio", "forecast", "segmentation", "detection"])
def test_two_gloo_processes_equal_one_with_accumulation(task, data_root, tmp_path):
    _ddp_matches_accumulation(task, data_root, tmp_path)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_trains_with_bf16_autocast_ema_and_accumulation(task, data_root, tmp_path):
    """The engine features a task gets for free: AMP (bf16 on the CPU), model EMA (evaluated and checkpointed)
    and gradient accumulation (one optimizer step per two micro-batches)."""
    fn, cfg = make(task, data_root, tmp_path, epochs=1, amp="bf16", model_ema=True, model_ema_decay=0.5,
                   accum_steps=2, export_deploy=False)
    fn(cfg)
    ckpt = load_training_checkpoint(tmp_path / "last.pth")
    assert ckpt["model_ema"] is not None and ckpt["model_ema"].keys() == ckpt["model"].keys()
    row = ckpt["history"][-1]
    assert any(k.startswith("ema_val_") for k in row)
    train_samples = ckpt["history"][-1]["samples_per_s"] * ckpt["history"][-1]["epoch_s"]
    # one optimizer step per accumulated pair of micro-batches: floor(samples / (2 * batch)) steps
    assert ckpt["num_updates"] == round(train_samples) // (2 * cfg.batch_size) >= 1
    first = next(iter(ckpt["optimizer"]["state"].values()))
    assert int(first["step"]) == ckpt["num_updates"]


def test_every_task_subclasses_the_engine_task_and_gets_its_default_hooks(tmp_path):
    """One contract: each task class derives from engine.Task; a task that writes only the required methods gets
    the documented defaults (no own groups, no-op resume hooks, no ONNX without an example input)."""
    from torch import nn

    from unireplknet.engine import Task
    from unireplknet.tasks.audio import AudioClassification
    from unireplknet.tasks.dense import DetectionTask, SegmentationTask
    from unireplknet.tasks.forecast import CorrformerForecasting, LinearForecasting
    from unireplknet.tasks.image import ImageClassification
    from unireplknet.tasks.pointcloud import PointCloudClassification
    from unireplknet.tasks.video import VideoClassification

    for cls in (ImageClassification, AudioClassification, VideoClassification, PointCloudClassification,
                LinearForecasting, CorrformerForecasting, DetectionTask, SegmentationTask):
        assert issubclass(cls, Task), cls

    class Bare(Task):
        name = "bare"

    task, model = Bare(), nn.Linear(2, 2)
    assert isinstance(task, Task)
    assert task.param_groups(model, None) is None and task.deploy_example(None) is None
    assert task.export_onnx(model, tmp_path / "m.onnx", ()) is None and not (tmp_path / "m.onnx").exists()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task.adapt_to_checkpoint(model, {}), task.restore({}), task.start_epoch(3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (task.higher_is_better, task.find_unused_parameters) == (True, False)
    with pytest.raises(NotImplementedError, match="Bare must implement training_loss"):
        task.training_loss(model, None, None)


def test_one_batch_type_from_every_collate():
    """engine.Batch from the default collate (unreadable samples left out and counted), the clip collate and the
    forecasting windows: the tasks read .inputs / .targets / .unreadable, whatever the modality."""
    from unireplknet.engine import Batch, collate_samples
    from unireplknet.data.video import collate_clips
    from unireplknet.tasks.forecast import collate_windows

    a, b = torch.randn(3, 5), torch.randn(3, 5)
    batch = collate_samples([(a, 1), None, (b, 0)])
    assert isinstance(batch, Batch) and batch.unreadable == 1 and len(batch) == 2
    assert torch.equal(batch.inputs, torch.stack([a, b])) and batch.targets.tolist() == [1, 0]
    empty = collate_samples([None, None])
    assert empty.unreadable == 2 and empty.inputs.numel() == 0
    clips = collate_clips([(None, 0), (a, 2)])
    assert isinstance(clips, Batch) and clips.unreadable == 1 and torch.equal(clips.inputs[0], a)
    windows = [tuple(torch.full((4, 2), float(i + k)) for k in range(4)) for i in range(2)]
    w = collate_windows(windows)
    assert isinstance(w, Batch) and len(w.inputs) == 3 and torch.equal(w.targets[1], windows[1][2])
    assert torch.equal(w.inputs[2][0], windows[0][3])  # the decoder's calendar features (y_mark)

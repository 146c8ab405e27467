"""det-train / seg-train / det-eval / seg-eval end to end on the generated scenes (tiny settings), the schedule,
resume, torchrun, and (slow) the learning demo: trained scores clearly above the untrained model's."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from unireplknet.cli import main
from unireplknet.engine.loop import lr_factor

TINY = json.dumps(dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], kernel_sizes=[[3], [7], [5], [3]]))
DET_HEADS = json.dumps(dict(fpn_channels=16, anchor_sizes=[8, 16, 32, 64, 128], box_head_convs=1,
                            box_head_channels=16, representation_size=32, mask_head_channels=16,
                            rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100,
                            rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=32, box_batch_size_per_image=32,
                            box_detections_per_img=10))
SEG_HEADS = json.dumps(dict(channels=16, aux_channels=8))


def test_lr_schedule_matches_mmengine_semantics():
    # warmup: linear from ratio to 1 over warmup iterations, applied on top of the schedule's own factor
    assert lr_factor(0, 100, 10, 1e-3, "step", (50, 80)) == pytest.approx(1e-3)
    assert lr_factor(5, 100, 10, 1e-3, "step", (50, 80)) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert lr_factor(10, 100, 10, 1e-3, "step", (50, 80)) == 1.0
    assert lr_factor(50, 100, 10, 1e-3, "step", (50, 80)) == pytest.approx(0.1)
    assert lr_factor(85, 100, 10, 1e-3, "step", (50, 80)) == pytest.approx(0.01)
    assert lr_factor(40, 100, 0, 0.0, "poly") == pytest.approx(0.6)
    assert lr_factor(100, 100, 0, 0.0, "poly") == 0.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, 0, 0, "cosine")


def _run(tmp_path, *argv):
    return main([*argv, "--output", str(tmp_path), "--model-kwargs", TINY, "--batch-size", "2",
                 "--scenes-train", "2", "--scenes-val", "2", "--no-onnx"])


def test_det_train_resume_and_eval(tmp_path, capsys):
    assert _run(tmp_path, "det-train", "--epochs", "1", "--head-kwargs", DET_HEADS) == 0
    first = json.loads((tmp_path / "summary.json").read_text())  # the engine's TrainResult
    assert first["history"][-1]["epoch"] == 1 and "val_box_AP" in first["history"][-1]
    # Mask R-CNN (the default detector) is scored on its masks too, and the end summary says so (issue 24, 8c)
    row = first["history"][-1]
    printed = capsys.readouterr().out
    trained = next(line for line in printed.splitlines() if "after training" in line)
    assert trained.split()[2:] == ["box_AP", f"{row['val_box_AP']:.2f}", "mask_AP", f"{row['val_mask_AP']:.2f}"]
    deployed = next(line for line in printed.splitlines() if "re-parameterized" in line)
    assert deployed.split()[1:] == ["box_AP", f"{first['deploy_structure']['box_AP']:.2f}",
                                    "mask_AP", f"{first['deploy_structure']['mask_AP']:.2f}"]
    # the deploy (re-parameterized) model scores what the training structure scored
    assert first["deploy_structure"]["box_AP"] == pytest.approx(first["train_structure"]["box_AP"], abs=1e-6)
    assert _run(tmp_path, "det-train", "--epochs", "2", "--head-kwargs", DET_HEADS, "--resume") == 0
    second = json.loads((tmp_path / "summary.json").read_text())
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert second["history"][-1]["epoch"] == 2
    capsys.readouterr()
    assert main(["det-eval", str(tmp_path / "deploy.safetensors"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["box_AP"] == pytest.approx(second["deploy_structure"]["box_AP"], abs=1e-6)


def test_seg_train_and_eval(tmp_path, capsys):
    assert _run(tmp_path, "seg-train", "--epochs", "1", "--head-kwargs", SEG_HEADS, "--eval-at-start") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["untrained"]) == set(summary["train_structure"])  # --eval-at-start scored the same metrics
    assert summary["deploy_structure"]["mIoU"] == pytest.approx(summary["train_structure"]["mIoU"], abs=1e-6)
    capsys.readouterr()
    assert main(["seg-eval", str(tmp_path / "last.pth"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mIoU"] == pytest.approx(summary["history"][-1]["val_mIoU"], abs=1e-6)


def test_cli_errors_are_clear(tmp_path, capsys):
    (tmp_path / "annotations").mkdir()
    assert main(["det-train", "--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    assert "instances_train.json" in capsys.readouterr().err
    assert main(["seg-train", "--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    assert "ADE20K layout" in capsys.readouterr().err
    assert main(["det-eval", str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """Two CPU processes (gloo) train one epoch of the segmenter together."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "unireplknet.cli",
           "seg-train", "--epochs", "1", "--output", str(tmp_path), "--model-kwargs", TINY, "--batch-size", "2",
           "--scenes-train", "8", "--scenes-val", "4", "--no-onnx", "--head-kwargs", SEG_HEADS, "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["history"][-1]["epoch"] == 1


def _constant_detections(train_set, val_set):
    """The best answer that ignores the image: for every class its mean training box, with score 1, everywhere."""
    sums = {}
    for i in range(len(train_set)):
        for ann in train_set.anns[train_set.images[i]["id"]]:
            acc = sums.setdefault(ann["category_id"], [torch.zeros(4, dtype=torch.float64), 0])
            acc[0] += torch.tensor(ann["bbox"], dtype=torch.float64)
            acc[1] += 1
    return [{"image_id": int(im["id"]), "category_id": cid, "bbox": (total / n).tolist(), "score": 1.0}
            for im in val_set.images for cid, (total, n) in sums.items()]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_short_run_learns(tmp_path, task):
    """The demo of docs/dense.md with its defaults (about 5 CPU-minutes each): scores far above the untrained
    model's and a constant answer's.

    Detection's constant answer puts every class's mean training box, with score 1, on every held-out image;
    segmentation's (everything background) scores the background pixel share divided by the 4 classes present.
    The demo measured box AP / AP50 65.3 / 93.2, mask AP 67.0 and mIoU 88.3 (docs/dense.md); the margins
    leave 22 to 30 points for other machines and library versions.
    """
    from unireplknet.data import scenes
    from unireplknet.tasks.dense.task import DenseTrainConfig, _coco_files, train_dense

    r = train_dense(DenseTrainConfig(task=task, output=str(tmp_path), eval_at_start=True, export_onnx=False,
                                     eval_every=1000))  # the demo's defaults, scored before and after
    key = r.extras["key_metric"]
    before, after = r.untrained, r.extras["final"]
    if task == "detection":
        from unireplknet.data.coco import CocoDetectionDataset
        from unireplknet.tasks.dense import detection as det

        sets = [CocoDetectionDataset(*_coco_files(tmp_path / "scenes", split), masks=False)
                for split in ("train", "val")]
        constant = det._score(sets[1], _constant_detections(*sets))
        for metric, margin in (("box_AP", 35.0), ("box_AP50", 65.0)):
            floor = max(before[metric], constant[metric]) + margin
            assert after[f"val_{metric}"] > floor, (metric, before, constant, after)
        assert after["val_mask_AP"] > before["mask_AP"] + 35.0, (before, after)
    else:
        background = scenes.scene_stats(100, split="val")["pixels_background"]
        constant = 100 * background / 4
        assert after[f"val_{key}"] > max(before[key] + 50.0, constant + 45.0), (before, after, constant)
    # the re-parameterized model scores what the trained one scored
    assert r.deploy_structure[key] == pytest.approx(after[f"val_{key}"], abs=0.5)

"""The points-* subcommands: train → eval on a checkpoint, the projection picture, bad input."""
from __future__ import annotations

import json

import pytest

from unireplknet.cli import main

TINY = '{"depths":[1,1,1,1],"dims":[8,16,32,64],"kernel_sizes":[[3],[7],[3],[3]]}'


def test_points_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["points-train", "--num-points", "64", "--image-size", "32", "--num-views", "2", "--shapes-per-class",
               "1", "--epochs", "1", "--batch-size", "4", "--test-rotations", "2", "--model-kwargs", TINY,
               "--output", str(out)])
    assert rc == 0
    assert "official" in capsys.readouterr().out
    rc = main(["points-eval", str(out / "last.pth"), "--shapes-per-class", "1", "--test-rotations", "2", "--json"])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["samples"] == 8 and "voted_top1" in metrics and "view_top1" not in metrics


def test_points_project_picture_from_files(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from unireplknet.data.pointcloud import shape_mesh
    from unireplknet.data.pointcloud.modelnet import write_off

    write_off(tmp_path / "torus.off", *shape_mesh("torus"))
    np.savetxt(tmp_path / "pts.txt", np.random.default_rng(0).normal(size=(500, 6)), delimiter=",")
    path = tmp_path / "p.png"
    assert main(["points-project", str(tmp_path / "torus.off"), str(tmp_path / "pts.txt"), "--image-size", "24",
                 "--num-points", "256", "-o", str(path)]) == 0
    written = np.asarray(Image.open(path).convert("RGB"))
    assert written.shape[0] > 2 * 24 and written.shape[1] > 4 * 24  # the 2 x 4 views and bands of labels


def test_points_project_names_rows_by_class_and_columns_by_view(tmp_path, capsys):
    """The default picture (one generated shape per class) is the projection the model sees, pixel for pixel,
    with each row's class name and each column's view number drawn beside it (issue 24, point 10e)."""
    import numpy as np
    import torch
    from PIL import Image

    from unireplknet.data.pointcloud import GeneratedShapes
    from unireplknet.tasks._pictures import label_picture
    from unireplknet.tasks.pointcloud.cli import projection_picture

    path = tmp_path / "p.png"
    assert main(["points-project", "--image-size", "24", "--num-points", "256", "--num-views", "3",
                 "-o", str(path)]) == 0
    written = np.asarray(Image.open(path).convert("RGB"))
    ds = GeneratedShapes("val", 1, 256)
    items = [ds[i] for i in range(len(ds))]
    bare = projection_picture(torch.stack([p for p, _ in items]), 3, 24)
    names = [ds.classes[label] for _, label in items]
    _, layout = label_picture(bare, "views; R occupancy, G mean depth, B front depth", names, ["1", "2", "3"])
    left, top, right, bottom = layout["content"]
    np.testing.assert_array_equal(written[top:bottom, left:right], np.asarray(bare))
    assert len(layout["rows"]) == len(ds.classes) and len(layout["columns"]) == 3
    for x0, y0, x1, y1 in [layout["title"], *layout["rows"], *layout["columns"]]:
        assert (written[y0:y1, x0:x1] < 128).any()  # text: dark pixels on the white band
    assert left > 0 and top > 0  # the labels sit outside the projection, not on it


def test_points_cli_errors(tmp_path, capsys):
    assert main(["points-train", "--data", str(tmp_path / "nothing"), "--epochs", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "flat.off").write_text("OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n")
    assert main(["points-project", str(tmp_path / "flat.off"), "-o", str(tmp_path / "x.png")]) == 2
    assert "surface area" in capsys.readouterr().err


def test_points_top1_is_the_overall_accuracy_and_voted_top1_the_voted_one(tmp_path, capsys):
    """val_top1 is the plain accuracy over every (shape, rotation) prediction, as every task's top1, and chooses
    best.pth; val_voted_top1 is the accuracy of the softmax averaged over the rotations — both recomputed here
    from the model's own per-rotation outputs (issue 24, point 10d). A run written with the old names
    (val_top1 voted, val_view_top1 overall) resumes with its history in the new names."""
    import torch

    from unireplknet.data.pointcloud import GeneratedShapes
    from unireplknet.modalities.pointcloud import eval_rotations
    from unireplknet.tasks.pointcloud import load_pointcloud_classifier

    out = tmp_path / "run"
    assert main(["points-train", "--num-points", "64", "--image-size", "32", "--num-views", "2", "--shapes-per-class",
                 "4", "--epochs", "1", "--batch-size", "4", "--test-rotations", "3", "--model-kwargs", TINY,
                 "--no-onnx", "--output", str(out)]) == 0
    ckpt = torch.load(out / "last.pth", weights_only=True)
    row = ckpt["history"][-1]
    assert "val_view_top1" not in row and ckpt["best"] == {"epoch": 1, "val_top1": row["val_top1"]}
    model, _ = load_pointcloud_classifier(str(out / "last.pth"))
    held_out = GeneratedShapes("val", 1, 64)
    x = torch.stack([held_out[i][0] for i in range(len(held_out))])
    y = torch.tensor([held_out[i][1] for i in range(len(held_out))])
    with torch.no_grad():
        probs = model.forward_views(x, eval_rotations()[:3]).softmax(-1)  # (shapes, rotations, classes)
    overall = 100.0 * (probs.argmax(-1) == y[:, None]).float().mean().item()
    voted = 100.0 * (probs.mean(1).argmax(-1) == y).float().mean().item()
    assert row["val_top1"] == pytest.approx(overall, abs=1e-6)
    assert row["val_voted_top1"] == pytest.approx(voted, abs=1e-6)
    printed = capsys.readouterr().out
    assert f"(official, val_top1): {overall:.2f}%" in printed and f"(val_voted_top1): {voted:.2f}%" in printed

    # the same checkpoint as an older version wrote it, then resumed for a second epoch
    old = dict(ckpt, history=[{**{k: v for k, v in r.items() if k not in ("val_top1", "val_voted_top1")},
                               "val_top1": r["val_voted_top1"], "val_view_top1": r["val_top1"]}
                              for r in ckpt["history"]],
               best={"epoch": 1, "val_top1": row["val_voted_top1"]})
    torch.save(old, out / "last.pth")
    assert main(["points-train", "--num-points", "64", "--image-size", "32", "--num-views", "2", "--shapes-per-class",
                 "4", "--epochs", "2", "--batch-size", "4", "--test-rotations", "3", "--model-kwargs", TINY,
                 "--no-onnx", "--output", str(out), "--resume"]) == 0
    history = torch.load(out / "last.pth", weights_only=True)["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0]["val_top1"] == pytest.approx(overall) and history[0]["val_voted_top1"] == pytest.approx(voted)
    assert all("val_view_top1" not in r for r in history)

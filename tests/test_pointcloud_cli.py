"""The points-* subcommands: train → eval on a checkpoint, the projection picture, bad input."""
from __future__ import annotations

import json

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
    assert metrics["samples"] == 8 and "view_top1" in metrics


def test_points_project_picture_from_files(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from unireplknet.data.pointcloud import shape_mesh
    from unireplknet.modalities.pointcloud import write_off

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
    from unireplknet.tasks.pointcloud_cli import projection_picture

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

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
    from unireplknet.data.pointcloud.modelnet import write_off

    write_off(tmp_path / "torus.off", *shape_mesh("torus"))
    np.savetxt(tmp_path / "pts.txt", np.random.default_rng(0).normal(size=(500, 6)), delimiter=",")
    path = tmp_path / "p.png"
    assert main(["points-project", str(tmp_path / "torus.off"), str(tmp_path / "pts.txt"), "--image-size", "24",
                 "--num-points", "256", "-o", str(path)]) == 0
    assert Image.open(path).size == (4 * 24, 2 * 24)


def test_points_cli_errors(tmp_path, capsys):
    assert main(["points-train", "--data", str(tmp_path / "nothing"), "--epochs", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "flat.off").write_text("OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n")
    assert main(["points-project", str(tmp_path / "flat.off"), "-o", str(tmp_path / "x.png")]) == 2
    assert "surface area" in capsys.readouterr().err

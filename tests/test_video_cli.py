"""The video-* subcommands: train → eval on a checkpoint, the mosaic picture, bad input."""
from __future__ import annotations

import json

import pytest

from unireplknet.cli import main

TINY = '{"depths":[1,1,1,1],"dims":[8,16,32,64],"kernel_sizes":[[3],[7],[3],[3]]}'


def test_video_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["video-train", "--num-frames", "4", "--input-size", "16", "--clips-per-class", "1", "--epochs", "1",
               "--batch-size", "3", "--model-kwargs", TINY, "--output", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "held-out top-1" in text and "chance 16.7%" in text
    rc = main(["video-eval", str(out / "last.pth"), "--clips-per-class", "1", "--json"])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    # the evaluator against a hand count: the checkpoint's model on the same held-out clips, one view each
    import torch

    from unireplknet.data.video import MotionClips
    from unireplknet.modalities.video import ClipEvalTransform
    from unireplknet.tasks.video.task import load_video_classifier

    model, mc = load_video_classifier(str(out / "last.pth"))
    tf = ClipEvalTransform(mc["input_size"], 1)
    clips = MotionClips("val", 1, mc["num_frames"], mc["input_size"], transform=lambda c: tf(c))
    with torch.no_grad():
        correct = sum(int(model(clip[None]).argmax(-1)) == int(label) for clip, label in (clips[i] for i in range(len(clips))))
    assert metrics["samples"] == len(clips) == 6
    assert metrics["top1"] == pytest.approx(100.0 * correct / 6)


def test_video_mosaic_picture(tmp_path, capsys):
    """The written picture holds the mosaic the backbone sees unchanged (3 x 3 frames of 12 px) and, beside it,
    the clip's class and each grid row's frames as text (issue 24, point 10e)."""
    import numpy as np
    from PIL import Image

    from unireplknet.data.video import MotionClips
    from unireplknet.tasks._pictures import label_picture
    from unireplknet.tasks.video.cli import clip_picture

    path = tmp_path / "m.png"
    assert main(["video-mosaic", "--num-frames", "9", "--input-size", "12", "-o", str(path)]) == 0
    written = np.asarray(Image.open(path).convert("RGB"))
    clips = MotionClips("val", 1, 9, 12)
    frames, _, label = clips.render(0)
    bare = clip_picture(np.asarray(frames))
    assert bare.size == (36, 36)
    rows = ["frames 1-3", "frames 4-6", "frames 7-9"]
    labelled, layout = label_picture(bare, f"class: {clips.classes[label]} (mosaic)", rows)
    assert written.shape == np.asarray(labelled).shape and written.shape[:2] != (36, 36)
    left, top, right, bottom = layout["content"]
    np.testing.assert_array_equal(written[top:bottom, left:right], np.asarray(bare))
    for box in [layout["title"], *layout["rows"]]:  # text: dark pixels on the white band
        x0, y0, x1, y1 = box
        assert (written[y0:y1, x0:x1] < 128).any(), box
    assert len({np.asarray(labelled)[y0:y1, x0:x1].tobytes() for x0, y0, x1, y1 in layout["rows"]}) == 3


def test_video_cli_errors(tmp_path, capsys):
    assert main(["video-eval", str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["video-train", "--data", str(tmp_path / "nothing"), "--epochs", "1",
                 "--output", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["video-train", "--layout", "tiles"])

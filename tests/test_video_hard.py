"""The hard motion clips (docs/video.md, "hard motion clips"): determinism, disjoint object shapes, each class's
motion measured from the pixels, the data through the video task, and the classical baseline's helpers."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from unireplknet.data.video import HARD_MOTION_CLASS_NAMES, HARD_MOTION_SHAPES, MotionClips, render_hard_motion_clip
from conftest import load_baselines, load_repo_script

video_baselines = load_baselines("video")

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (7,), (3,), (3,)))


# ----------------------------------------------------------------------------------------------- measuring helpers
def _scene_shift(a: np.ndarray, b: np.ndarray, keep: np.ndarray, radius: int = 8) -> np.ndarray:
    """Shift (dx, dy) of frame ``b`` against frame ``a`` (H, W, 3 floats): the least mean squared difference over
    integer shifts, on the pixels of ``a`` where ``keep``, refined by a parabola through the neighbours."""
    h, w = a.shape[:2]
    cost = np.full((2 * radius + 1, 2 * radius + 1), np.inf)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
            yb, xb = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
            m = keep[ys, xs]
            cost[dy + radius, dx + radius] = (((a[ys, xs] - b[yb, xb]) ** 2).sum(-1) * m).sum() / max(m.sum(), 1)
    iy, ix = np.unravel_index(cost.argmin(), cost.shape)

    def refine(c_minus: float, c0: float, c_plus: float) -> float:
        denom = c_minus - 2 * c0 + c_plus
        return 0.5 * (c_minus - c_plus) / denom if denom > 0 else 0.0

    fx = refine(cost[iy, ix - 1], cost[iy, ix], cost[iy, ix + 1]) if 0 < ix < 2 * radius else 0.0
    fy = refine(cost[iy - 1, ix], cost[iy, ix], cost[iy + 1, ix]) if 0 < iy < 2 * radius else 0.0
    return np.array([ix - radius + fx, iy - radius + fy])


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]] + 0.5
    return np.array([(mask * xs).sum(), (mask * ys).sum()]) / mask.sum()


def _turn(a: np.ndarray, b: np.ndarray, bins: int = 90) -> float:
    """Rotation (radians, clockwise on screen positive) from mask ``a`` to mask ``b``: the circular shift that
    best aligns their mass per direction around each centroid."""
    def profile(mask):
        ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]] + 0.5
        c = _centroid(mask)
        ang = np.arctan2(ys - c[1], xs - c[0])
        rad = np.hypot(xs - c[0], ys - c[1])
        return np.histogram(ang, bins=bins, range=(-np.pi, np.pi), weights=mask * rad)[0]

    pa, pb = profile(a), profile(b)
    shifts = np.arange(-bins // 4, bins // 4 + 1)  # up to a quarter turn: more than one frame's spin
    best = max(shifts, key=lambda s: float((np.roll(pa, s) * pb).sum()))
    return best * 2 * math.pi / bins


# ----------------------------------------------------------------------------------------------- the data
def test_hard_clips_are_deterministic_and_the_splits_differ():
    a = MotionClips("train", 2, num_frames=4, size=32, difficulty="hard")
    b = MotionClips("train", 2, num_frames=4, size=32, difficulty="hard")
    assert a.classes == list(HARD_MOTION_CLASS_NAMES) and len(a) == 12
    for i in (0, 7):
        assert torch.equal(a[i][0], b[i][0])
    assert not torch.equal(a[3][0], MotionClips("train", 2, 4, 32, seed=1, difficulty="hard")[3][0])
    assert not torch.equal(a[3][0], MotionClips("val", 2, 4, 32, difficulty="hard")[3][0])
    assert not torch.equal(a[3][0], MotionClips("train", 2, 4, 32)[3][0])  # the easy set is another set
    with pytest.raises(ValueError, match="difficulty"):
        MotionClips("train", 1, difficulty="medium")


def test_object_shapes_of_the_splits_are_disjoint():
    pools = [set(HARD_MOTION_SHAPES[s]) for s in ("train", "val", "test")]
    assert all(not (p & q) for i, p in enumerate(pools) for q in pools[i + 1:])
    for split, pool in zip(("train", "val", "test"), pools):
        seen = {render_hard_motion_clip(i % 6, np.random.default_rng(i), 4, 32, split)[2]["shape"] for i in range(30)}
        assert seen == pool  # every shape of the split is used, and no other
    # the shapes really look different: a held-out shape overlaps no train shape well at any turn and scale
    # (intersection over union of the masks; the same shape turned back scores 1)
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    from unireplknet.data.video.motion import _hard_coverage

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    turns = np.linspace(0, 2 * math.pi, 36, endpoint=False)
    for held in HARD_MOTION_SHAPES["test"] + HARD_MOTION_SHAPES["val"]:
        m = _hard_coverage(held, xx, yy, 16, 16, 8.0, 0.3) > 0.5
        assert max(iou(_hard_coverage(held, xx, yy, 16, 16, 8.0, a) > 0.5, m) for a in turns + 0.3) > 0.99
        for seen_shape in HARD_MOTION_SHAPES["train"]:
            best = max(iou(_hard_coverage(seen_shape, xx, yy, 16, 16, r, a) > 0.5, m) for a in turns for r in (7.0, 8.0, 9.0))
            assert best < 0.8, (held, seen_shape, best)


def test_every_hard_class_moves_as_labelled_measured_from_the_pixels():
    """The camera's shift is measured from the frames (the target left out), the target's position from its
    mask; the class is then checked on the target's motion relative to the scene."""
    checked = {name: 0 for name in HARD_MOTION_CLASS_NAMES}
    for i in range(24):
        label = i % 6
        frames, track, info = render_hard_motion_clip(label, np.random.default_rng([7, i]), 4, 32, "train")
        f = frames.astype(np.float64) / 255.0
        masks = info["target_mask"]
        rel = []
        for t in range(4):
            keep = (masks[0] < 0.01) & (masks[t] < 0.01)
            rel.append(_centroid(masks[t]) - _scene_shift(f[0], f[t], keep))
        rel = np.array(rel)
        name = HARD_MOTION_CLASS_NAMES[label]
        if not name.startswith("spin"):  # (a turning shape's centroid circles its centre a little)
            scene = track - info["camera"]
            np.testing.assert_allclose(rel - rel[0], scene - scene[0], atol=1.0)
        steps = np.linalg.norm(np.diff(rel, axis=0), axis=1)
        total = rel[-1] - rel[0]
        if name == "right":
            assert total[0] > 5.0 and abs(total[1]) < 0.4 * total[0]
        elif name == "left":
            assert total[0] < -5.0 and abs(total[1]) < 0.4 * -total[0]
        elif name.startswith("spin"):
            assert np.linalg.norm(total) < 2.5  # stays in place in the scene (moving classes: over 5 pixels)
            turns = [_turn(masks[t], masks[t + 1]) for t in range(3)]
            assert all((x > 0.2) if name == "spin-clockwise" else (x < -0.2) for x in turns), turns
        elif name == "speeding-up":
            assert steps[-1] > 2.0 * steps[0] and steps[-1] > 2.5
        else:
            assert steps[0] > 2.0 * steps[-1] and steps[0] > 2.5
        checked[name] += 1
    assert all(n == 4 for n in checked.values())


def test_opposite_classes_are_time_reversals_in_distribution():
    """Order-free statistics carry no label: the mean frame-to-frame change is the same for opposite classes."""
    def mean_change(label):
        return np.mean([np.abs(np.diff(render_hard_motion_clip(label, np.random.default_rng([3, i]), 4, 32)[0]
                                       .astype(float), axis=0)).mean() for i in range(40)])

    for a, b in ((0, 1), (2, 3), (4, 5)):
        ma, mb = mean_change(a), mean_change(b)
        assert abs(ma - mb) < 0.15 * (ma + mb) / 2, (a, b, ma, mb)


def test_hard_data_loads_through_the_video_task():
    from unireplknet.tasks.video.task import VideoTrainConfig, build_video_data

    cfg = VideoTrainConfig.with_recipe("motion-hard", clips_per_class=4, input_size=32, output=None)
    assert (cfg.difficulty, cfg.eval_split) == ("hard", "test")
    train, held, classes = build_video_data(cfg)
    assert classes == list(HARD_MOTION_CLASS_NAMES) and len(train) == 24 and len(held) == 6
    clip, label = held[2]
    assert clip.shape == (3, 4, 32, 32) and label == 2
    assert held.split == "test" and train.split == "train"
    with pytest.raises(ValueError, match="eval_split"):
        build_video_data(VideoTrainConfig(eval_split="train"))


def test_hard_demo_trains_and_evaluates_from_the_command_line(tmp_path, capsys):
    import json

    from unireplknet.cli import main

    out = tmp_path / "run"
    kw = json.dumps({k: [list(v) for v in val] if k == "kernel_sizes" else list(val) for k, val in TINY.items()})
    assert main(["video-train", "--recipe", "motion-hard", "--clips-per-class", "1", "--epochs", "1",
                 "--input-size", "16", "--batch-size", "3", "--model-kwargs", kw, "--no-onnx", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hard motion clips (test split held out)" in text and "chance 16.7%" in text
    # the peer benchmark's row for this demo runs the same recipe and reads this very line
    mp = load_repo_script("benchmarks/modality_peers.py")
    demo = mp.DEMOS["video-hard"]
    assert demo["args"].split() == ["--recipe", "motion-hard"]
    assert float(re.search(demo["pattern"], text, re.MULTILINE).group(1)) == pytest.approx(
        json.loads((out / "summary.json").read_text())["train_structure"]["top1"], abs=0.01)
    assert main(["video-eval", str(out / "last.pth"), "--clips-per-class", "1", "--eval-split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 6


# ----------------------------------------------------------------------------------------------- classical helpers
def test_box_sum_equals_the_direct_window_sum():
    values = np.random.default_rng(0).normal(size=(2, 9, 11))
    got = video_baselines.box_sum(values, 3)
    padded = np.pad(values, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    want = np.stack([[[padded[k, y:y + 3, x:x + 3].sum() for x in range(11)] for y in range(9)] for k in range(2)])
    np.testing.assert_allclose(got, want, atol=1e-12)


def _textured_clip(steps, camera, size=32, square=(10, 12)):
    """Frames of a random texture shifted by ``camera`` with a flat 6x6 square moving by ``steps`` on top."""
    rng = np.random.default_rng(0)
    big = np.kron(rng.uniform(0.2, 0.8, (size // 2 + 8, size // 2 + 8, 3)), np.ones((2, 2, 1)))
    pos = np.array(square, float)
    frames = []
    for t in range(len(camera)):
        cx, cy = camera[t]
        f = big[8 - cy:8 - cy + size, 8 - cx:8 - cx + size].copy()
        if t:
            pos = pos + steps[t - 1]
        x, y = int(pos[0] + cx), int(pos[1] + cy)
        f[y:y + 6, x:x + 6] = (1.0, 0.0, 0.0)
        frames.append(f)
    return np.round(np.stack(frames) * 255).astype(np.uint8)


def test_block_matching_finds_the_camera_and_the_object_motion():
    clip = _textured_clip([(3, 0)], [(0, 0), (2, -1)]).astype(np.float64) / 255
    flow, camera, residual = video_baselines.block_matching_flow(clip[0], clip[1])
    np.testing.assert_array_equal(camera, [2, -1])
    edge = flow[12:18, 15]  # the square's right column in frame 0 (x = 10 + 5): moved 3 + 2 right, 1 up
    np.testing.assert_array_equal(np.median(edge, axis=0), [5, -1])
    assert residual[12:18, 10:16].mean() > 10 * np.median(residual)  # changes only where the square moves


def test_motion_features_see_right_from_left_and_speeding_from_slowing():
    camera = [(0, 0), (1, 0), (1, 1), (2, 1)]
    right = video_baselines.motion_features(_textured_clip([(3, 0)] * 3, camera, square=(4, 12)))
    left = video_baselines.motion_features(_textured_clip([(-3, 0)] * 3, camera, square=(20, 12)))
    assert right[0] > 2.0 and left[0] < -2.0  # mean relative dx of the first pair
    fast_later = video_baselines.motion_features(_textured_clip([(1, 0), (2, 0), (4, 0)], camera, square=(4, 12)))
    assert fast_later[-1] > 0.3  # log(speed of the last step / the first) > 0


def test_ablation_switches_turn_off_only_their_part():
    """benchmarks/video_hard_ablation.py: a still camera, a flat background, no distractors; the rest is the same draw."""
    full = render_hard_motion_clip(4, np.random.default_rng(5), 4, 32, "train")
    still = render_hard_motion_clip(4, np.random.default_rng(5), 4, 32, "train", camera_scale=0.0)
    assert np.abs(full[2]["camera"]).max() > 0 and np.abs(still[2]["camera"]).max() == 0
    assert still[2]["shape"] == full[2]["shape"]
    np.testing.assert_allclose(np.diff(still[1], axis=0), np.diff(full[1] - full[2]["camera"], axis=0))  # same path
    frames, _, info = render_hard_motion_clip(4, np.random.default_rng(5), 4, 32, "train", camera_scale=0.0,
                                              texture_scale=0.0, distractors=False)
    outside = frames.astype(float)[info["target_mask"] < 0.01]  # (pixels, 3): flat colour, flicker and noise only
    assert outside.std(0).max() < 0.06 * 255 * 1.5
    assert full[0].astype(float)[full[2]["target_mask"] < 0.01].std(0).max() > outside.std(0).max()
    seen = {render_hard_motion_clip(i % 6, np.random.default_rng(i), 4, 32, "test", shapes=("L", "T"))[2]["shape"]
            for i in range(12)}
    assert seen == {"L", "T"}  # the held-out split drawn with other shapes

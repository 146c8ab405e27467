"""Point clouds: sampling, normalisation, rotations, projections, view-pooling head, files, datasets, loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unireplknet import UniRepLKNet
from unireplknet.data.pointcloud import GeneratedShapes, sample_surface, shape_mesh
from unireplknet.data.pointcloud.modelnet import ModelNet40, read_off, read_points, write_off
from unireplknet.modalities.pointcloud import (DepthProjection, LearnedProjection, PointCloudError, axis_angle_matrix,
                                               eval_rotations, farthest_point_sample, gather_points,
                                               normalize_unit_sphere, rotate, rotation_theta_phi, scale_and_translate,
                                               view_rotations)
from unireplknet.tasks.pointcloud.task import PointCloudClassifier, ViewPoolingHead, smoothed_cross_entropy

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (7,), (3,), (3,)))


def skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.tolist()
    return torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- sampling
def test_fps_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(3, 200, 3))
    idx = farthest_point_sample(torch.from_numpy(pts), 20)
    for b in range(3):
        chosen = [0]
        for _ in range(19):  # the definition: next = argmax over points of the distance to the chosen set
            d = np.min(np.linalg.norm(pts[b][:, None] - pts[b][chosen][None], axis=-1), axis=1)
            chosen.append(int(np.argmax(d)))
        assert idx[b].tolist() == chosen
    assert torch.equal(gather_points(torch.from_numpy(pts[0]), idx[0]), torch.from_numpy(pts[0][idx[0].numpy()]))
    with pytest.raises(PointCloudError, match="cannot pick 300"):
        farthest_point_sample(torch.from_numpy(pts), 300)


def test_unit_sphere_normalisation_and_bad_clouds():
    pts = torch.cat([torch.randn(100, 3) * 5 + 3, torch.randn(100, 3)], dim=1)
    out = normalize_unit_sphere(pts)
    torch.testing.assert_close(out[:, :3].mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    assert out[:, :3].norm(dim=1).max() == pytest.approx(1.0)
    assert torch.equal(out[:, 3:], pts[:, 3:])  # normals untouched
    with pytest.raises(PointCloudError, match="same place"):
        normalize_unit_sphere(torch.ones(10, 3))
    nan = torch.randn(10, 3)
    nan[4, 1] = float("nan")
    with pytest.raises(PointCloudError, match="NaN"):
        normalize_unit_sphere(nan)
    with pytest.raises(PointCloudError, match="no points"):
        normalize_unit_sphere(torch.zeros(0, 3))
    with pytest.raises(PointCloudError, match="shape"):
        normalize_unit_sphere(torch.zeros(10, 2))


# ----------------------------------------------------------------------------------------------- rotations
def test_rotations_match_the_matrix_exponential():
    axis, angle = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), torch.tensor(1.1, dtype=torch.float64)
    unit = axis / axis.norm()
    torch.testing.assert_close(axis_angle_matrix(axis, angle), torch.linalg.matrix_exp(angle * skew(unit)))
    theta, phi = 0.7 * math.pi, -0.3 * math.pi
    v = torch.tensor([math.sin(theta), -math.cos(theta), 0.0], dtype=torch.float64)
    expected = torch.linalg.matrix_exp(-theta * skew(torch.tensor([0.0, 0.0, 1.0]))) @ torch.linalg.matrix_exp(-phi * skew(v))
    torch.testing.assert_close(rotation_theta_phi(torch.tensor(theta), torch.tensor(phi)), expected)
    rots = eval_rotations()
    assert rots.shape == (8, 3, 3)
    torch.testing.assert_close(rots @ rots.transpose(1, 2), torch.eye(3).expand(8, 3, 3), atol=1e-5, rtol=0)
    assert len({tuple(r.flatten().round(decimals=4).tolist()) for r in rots}) == 8


def test_view_rotations_and_rotate():
    views = view_rotations(4)
    # view 0 = Rx(0)·Ry(0)·Rz(π/2): the x axis is seen along y
    torch.testing.assert_close(views[0] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6, rtol=0)
    # view 1 adds Rx(π/2): x → y → z
    torch.testing.assert_close(views[1] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6, rtol=0)
    pts = torch.randn(2, 50, 6)
    out = rotate(pts, views[1])
    torch.testing.assert_close(out[..., :3], pts[..., :3] @ views[1].T)
    torch.testing.assert_close(out[..., 3:], pts[..., 3:] @ views[1].T)  # normals turn with the points
    with pytest.raises(ValueError, match="num_views"):
        view_rotations(11)


def test_scale_and_translate_ranges():
    g = torch.Generator().manual_seed(0)
    pts = torch.ones(64, 10, 3)
    out = scale_and_translate(pts, generator=g)
    per_cloud = out[:, 0]  # all points of a cloud share the transform: 1 * s + t
    assert torch.allclose(out, per_cloud[:, None].expand_as(out))
    assert per_cloud.min() >= 2 / 3 - 0.2 - 1e-6 and per_cloud.max() <= 1.5 + 0.2 + 1e-6
    assert per_cloud.std(0).min() > 0.1  # drawn per axis and cloud


# ----------------------------------------------------------------------------------------------- projections
def _identity_view(proj):
    proj.views = torch.eye(3).expand(proj.num_views, 3, 3).clone()
    return proj


def test_depth_projection_splats_bilinearly():
    proj = _identity_view(DepthProjection(num_views=1, image_size=9, extent=1.0))
    # grid step 2/(9-1) = 0.25: x = 0 is column 4, y = 0 is row 4; a point at x = 0.125 lies half-way to column 5
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.125, 0.5, -0.5]]])
    img = (proj(pts)[0] + 1) / 2  # back to [0, 1]
    occ = img[0]
    assert occ[4, 4] == pytest.approx(1 - math.exp(-1.0), abs=1e-6)
    assert occ[2, 4] == pytest.approx(1 - math.exp(-0.5), abs=1e-6) and occ[2, 5] == pytest.approx(1 - math.exp(-0.5), abs=1e-6)
    assert int((occ > 1e-6).sum()) == 3
    near = img[1] / occ.clamp_min(1e-9)
    assert near[4, 4] == pytest.approx(0.5, abs=1e-6) and near[2, 4] == pytest.approx(0.75, abs=1e-6)
    outside = proj(torch.tensor([[[3.0, 0.0, 0.0]]]))
    assert torch.equal(outside, -torch.ones_like(outside))  # dropped, not clamped onto the border


def test_depth_projection_is_differentiable_in_the_coordinates():
    proj = DepthProjection(num_views=2, image_size=6, extent=1.2).double()
    pts = (torch.rand(1, 5, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: proj(p), (pts,), eps=1e-6, atol=1e-5)


def test_learned_projection_places_and_learns():
    torch.manual_seed(0)
    proj = LearnedProjection(num_views=2, image_size=14, local_size=4).eval()
    pts = torch.randn(2, 40, 3)
    img = proj(pts)
    assert img.shape == (4, 3, 14, 14)
    perm = torch.randperm(40)
    torch.testing.assert_close(proj(pts[:, perm]), img, atol=1e-4, rtol=1e-4)  # a set function of the points
    idx = proj.pixel_index(pts[:, :, :2])
    assert idx.min() >= 0 and idx.max() < 14 * 14
    rows, cols = idx // 14, idx % 14
    assert (rows.amin(1) + rows.amax(1)).float().div(2).sub(6).abs().max() <= 1  # the cloud is centred
    assert (cols.amin(1) + cols.amax(1)).float().div(2).sub(6).abs().max() <= 1
    img.sum().backward()
    assert proj.points.input_trans.weight.grad.abs().sum() > 0 and proj.fuse_down.weight.grad.abs().sum() > 0
    flat = torch.zeros(1, 20, 3)
    flat[0, :, 0] = torch.linspace(-1, 1, 20)  # a line: zero extent in y must not divide by zero
    assert torch.isfinite(proj(flat)).all()


def test_view_pooling_head_concatenates_views():
    torch.manual_seed(0)
    head = ViewPoolingHead(3, 4, 5)
    maps = torch.randn(2 * 3, 4, 2, 2)
    pooled = maps.mean((-2, -1)).view(2, 3 * 4)  # view v of cloud b at row b·V + v → channels v·C … v·C + C − 1
    expected = head.fc(torch.nn.functional.layer_norm(pooled, (12,), head.norm.weight, head.norm.bias, 1e-6))
    torch.testing.assert_close(head(maps), expected)
    with pytest.raises(ValueError, match="views"):
        head(torch.randn(4, 4, 2, 2))


@pytest.mark.parametrize("projection", ["depth", "learned"])
def test_classifier_end_to_end(projection):
    torch.manual_seed(0)
    backbone = UniRepLKNet(in_chans=3, num_classes=0, **TINY)
    kwargs = dict(local_size=4) if projection == "learned" else {}
    model = PointCloudClassifier(backbone, 5, projection, num_views=2, image_size=32, **kwargs).eval()
    pts = torch.randn(3, 64, 3)
    logits = model(pts)
    assert logits.shape == (3, 5)
    expected = model.head(backbone.forward_features(model.projection(pts)))
    torch.testing.assert_close(logits, expected)
    views = model.forward_views(pts, eval_rotations()[:3])
    torch.testing.assert_close(views[:, 1], model(rotate(pts, eval_rotations()[1])))
    bad = pts.clone()
    bad[1, 3, 0] = float("inf")
    with pytest.raises(PointCloudError, match="NaN or infinite"):
        model(bad)


def test_official_label_smoothing():
    logits, target, eps = torch.randn(4, 6), torch.tensor([0, 5, 2, 2]), 0.2
    one_hot = torch.nn.functional.one_hot(target, 6).float()
    soft = one_hot * (1 - eps) + (1 - one_hot) * eps / 5
    expected = -(soft * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(smoothed_cross_entropy(logits, target, eps), expected)


# ----------------------------------------------------------------------------------------------- files and data
def test_off_round_trip_modelnet_header_and_polygons(tmp_path):
    v, f = shape_mesh("box")
    path = write_off(tmp_path / "box.off", v, f)
    rv, rf = read_off(path)
    np.testing.assert_allclose(rv, v, atol=1e-6)
    assert np.array_equal(rf, f)
    (tmp_path / "quad.off").write_text("OFF4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")  # ModelNet glued header
    qv, qf = read_off(tmp_path / "quad.off")
    assert qv.shape == (4, 3) and qf.tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n")
    with pytest.raises(PointCloudError, match="malformed"):
        read_off(tmp_path / "bad.off")
    (tmp_path / "notoff.off").write_text("ply\n")
    with pytest.raises(PointCloudError, match="not an OFF"):
        read_off(tmp_path / "notoff.off")


def test_surface_sampling_is_area_uniform():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [5, 0, 0], [8, 0, 0], [5, 2, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [3, 4, 5]])  # areas 1 and 3
    pts = sample_surface(v, f, 20000, np.random.default_rng(0))
    share = float((pts[:, 0] >= 5).mean())
    assert abs(share - 0.75) < 0.02  # 0.75 ± 3.3 binomial standard deviations
    inside = pts[pts[:, 0] < 5]
    assert np.all(inside[:, 0] / 1 + inside[:, 1] / 2 <= 1 + 1e-9)  # inside the first triangle
    with pytest.raises(ValueError, match="surface area"):
        sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10, np.random.default_rng(0))


def test_modelnet_layouts(tmp_path):
    rng = np.random.default_rng(0)
    resampled = tmp_path / "resampled"
    for c in ("chair", "night_stand"):
        (resampled / c).mkdir(parents=True)
        for i in (1, 2):
            np.savetxt(resampled / c / f"{c}_{i:04d}.txt", rng.normal(size=(300, 6)), delimiter=",", fmt="%.6f")
    (resampled / "modelnet40_shape_names.txt").write_text("chair\nnight_stand\n")
    (resampled / "modelnet40_train.txt").write_text("chair_0001\nnight_stand_0001\nnight_stand_0002\n")
    (resampled / "modelnet40_test.txt").write_text("chair_0002\n")
    ds = ModelNet40(resampled, "train", num_points=128)
    assert len(ds) == 3 and ds.classes == ["chair", "night_stand"] and [s[1] for s in ds.samples] == [0, 1, 1]
    pts, label = ds[1]
    assert pts.shape == (128, 3) and label == 1 and pts.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    assert ModelNet40(resampled, "train", num_points=128, use_normals=True)[0][0].shape == (128, 6)
    over = ModelNet40(resampled, "train", num_points=100, oversample=1.2)
    assert over[0][0].shape == (100, 3)

    meshes = tmp_path / "meshes"
    for c in ("cone", "sphere"):
        (meshes / c / "train").mkdir(parents=True)
        write_off(meshes / c / "train" / f"{c}_0001.off", *shape_mesh(c))
    np.save(meshes / "cone" / "train" / "cone_0002.npy", rng.normal(size=(200, 3)).astype(np.float32))
    write_off(meshes / "sphere" / "train" / "flat_0002.off", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    ds = ModelNet40(meshes, "train", num_points=64, mesh_samples=512)
    assert ds.classes == ["cone", "sphere"] and len(ds) == 4
    assert ds[0][0].shape == (64, 3)
    bad = [i for i, s in enumerate(ds.samples) if "flat" in s[0]][0]
    with pytest.raises(PointCloudError, match="surface area"):
        ds[bad]
    skipping = ModelNet40(meshes, "train", num_points=64, mesh_samples=512, on_error="skip")
    assert skipping[bad][0].shape == (64, 3)
    with pytest.raises(Exception, match="neither"):
        ModelNet40(tmp_path, "test")
    (tmp_path / "x.txt").write_text("1 2\n3 4\n")
    with pytest.raises(PointCloudError, match="x y z"):
        read_points(tmp_path / "x.txt")


def test_generated_shapes_are_deterministic_and_normalised():
    a, b = GeneratedShapes("train", 2, 256), GeneratedShapes("train", 2, 256)
    assert len(a) == 16 and torch.equal(a[3][0], b[3][0]) and a[3][1] == 3
    assert not torch.equal(a[3][0], GeneratedShapes("val", 2, 256)[3][0])
    pts = a[0][0]
    assert pts.shape == (256, 3) and pts.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_shapes_demo_beats_chance():
    """The default small run (see docs/pointcloud.md for the measured number and wall time)."""
    from unireplknet.tasks.pointcloud.task import PointCloudTrainConfig, train_pointcloud

    result = train_pointcloud(PointCloudTrainConfig(output=None))
    assert result.train_structure["top1"] > 2 * 100.0 / 8

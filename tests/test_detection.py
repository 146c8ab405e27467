"""Detection: generated scenes, the FPN backbone adapter, torchvision detectors, weights, re-param, ONNX, COCO mAP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unireplknet import CheckpointMismatchError, UniRepLKNet, reparameterize
from unireplknet.data import scenes
from unireplknet.data.coco import CocoDetectionDataset, DetectionDataError
from unireplknet.tasks.dense import backbone_utils
from unireplknet.tasks.dense import detection as det

from conftest import randomize_bn_and_scales, reference_dir

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13,), (3,)))
SMALL_HEADS = dict(fpn_channels=16, min_size=64, max_size=64, anchor_sizes=(4, 8, 16, 32, 64), box_head_convs=1,
                   box_head_channels=16, representation_size=32)


def tiny_maskrcnn(**kw):
    torch.manual_seed(0)
    return det.maskrcnn("custom", 3, model_kwargs=TINY, mask_head_channels=16, **{**SMALL_HEADS, **kw})


# ----------------------------------------------------------------------------------------------- scenes
def test_scenes_are_deterministic_and_consistent():
    a, b = scenes.make_scene(5, seed=1), scenes.make_scene(5, seed=1)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, scenes.make_scene(6, seed=1).image)
    assert not np.array_equal(a.image, scenes.make_scene(5, seed=1, split="val").image)
    for i in range(20):
        s = scenes.make_scene(i)
        assert len(s.labels) >= 1 and s.image.shape == (64, 64, 3)
        for box, label, mask in zip(s.boxes, s.labels, s.masks):
            ys, xs = np.nonzero(mask)  # the box is the extent of the visible mask
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert np.all(s.semantic[mask] == label)
        union = s.masks.any(0)
        assert np.all(s.semantic[~union] == 0)
        assert s.masks.sum(0).max() <= 1  # visible parts never overlap


def test_rle_matches_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    for i in range(5):
        for m in scenes.make_scene(i).masks:
            rle = scenes.mask_to_rle(m)
            ours = scenes.rle_to_mask(rle)
            theirs = mask_utils.decode(mask_utils.frPyObjects(rle, *rle["size"])).astype(bool)
            assert np.array_equal(ours, m) and np.array_equal(theirs, m)
    full = np.ones((4, 3), bool)  # a mask starting with ones needs a leading zero run
    assert scenes.mask_to_rle(full)["counts"][0] == 0 and scenes.rle_to_mask(scenes.mask_to_rle(full)).all()


# ----------------------------------------------------------------------------------------------- backbone
def test_fpn_body_is_the_official_features_mode():
    torch.manual_seed(0)
    body = randomize_bn_and_scales(backbone_utils.build_backbone("custom", model_kwargs=TINY)).eval()
    with torch.no_grad():  # norm{i}: a LayerNorm over channels of every stage output (torch.nn.functional truth)
        for x in (torch.randn(2, 3, 64, 96),):
            stages = body.forward_stages(x)
            want = [F.layer_norm(s.permute(0, 2, 3, 1), (s.shape[1],), getattr(body, f"norm{i}").weight,
                                 getattr(body, f"norm{i}").bias, 1e-6).permute(0, 3, 1, 2) for i, s in enumerate(stages)]
            got = body(x)
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    fpn = backbone_utils.UniRepLKNetFPN(body, out_channels=16).eval()
    with torch.no_grad():
        out = fpn(torch.randn(1, 3, 64, 96))
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(v.shape[1] == 16 for v in out.values())
    with pytest.raises(TypeError, match="features-mode"):
        backbone_utils.UniRepLKNetFPN(UniRepLKNet(num_classes=5, **TINY))


def test_all_detectors_train_and_predict():
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    targets = [dict(boxes=torch.tensor([[4.0, 4, 30, 30]]), labels=torch.tensor([1]),
                    masks=torch.zeros(1, 64, 64, dtype=torch.uint8)),
               dict(boxes=torch.tensor([[10.0, 10, 40, 40]]), labels=torch.tensor([3]),
                    masks=torch.ones(1, 48, 64, dtype=torch.uint8))]
    for name in det.DETECTORS:
        kw = dict(SMALL_HEADS)
        if name in ("retinanet", "fcos"):
            for k in ("box_head_convs", "box_head_channels", "representation_size"):
                kw.pop(k)
            kw["fpn_channels"] = 32  # FCOS heads use GroupNorm(32)
        if name == "maskrcnn":
            kw["mask_head_channels"] = 16
        torch.manual_seed(0)
        model = det.build_detector(name, "custom", 3, model_kwargs=TINY, **kw).train()
        losses = model(images, targets)
        total = sum(losses.values())
        assert torch.isfinite(total), name
        total.backward()
        stem = model.backbone.body.downsample_layers[0][0].weight
        assert stem.grad is not None and stem.grad.abs().sum() > 0, name
        model.eval()
        with torch.no_grad():
            out = model(images)
        assert len(out) == 2 and out[1]["boxes"].shape[1] == 4
        if name == "maskrcnn" and len(out[0]["boxes"]):
            assert out[0]["masks"].shape[-2:] == (64, 64)


def test_reparameterize_inside_detector_keeps_outputs():
    model = tiny_maskrcnn(box_score_thresh=0.0)
    randomize_bn_and_scales(model.backbone.body, seed=3)
    model.eval()
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        feats_before = model.backbone(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
        before = model(images)[0]
    assert reparameterize(model) is model
    assert model.backbone.body.deploy
    with torch.no_grad():
        feats_after = model.backbone(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
        after = model(images)[0]
    for k in feats_before:
        torch.testing.assert_close(feats_after[k], feats_before[k], atol=1e-4, rtol=1e-4)
    n = min(10, len(before["scores"]), len(after["scores"]))
    assert n > 0
    torch.testing.assert_close(after["scores"][:n], before["scores"][:n], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after["boxes"][:n], before["boxes"][:n], atol=1e-3, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- weights
def _classifier_and_file(tmp_path, layout):
    torch.manual_seed(1)
    clf = randomize_bn_and_scales(UniRepLKNet(num_classes=10, **TINY), seed=1)
    sd = clf.state_dict()
    path = tmp_path / f"{layout}.pth"
    if layout == "classification":
        torch.save({"model": sd}, path)
    else:  # an MMDetection checkpoint: backbone.* plus neck and heads
        full = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith(("head.", "norm."))}
        full.update({f"backbone.norm{i}.weight": torch.rand(TINY["dims"][i]) for i in range(4)})
        full.update({f"backbone.norm{i}.bias": torch.rand(TINY["dims"][i]) for i in range(4)})
        full["neck.lateral_convs.0.conv.weight"] = torch.randn(4, 8, 1, 1)
        full["roi_head.bbox_head.fc_cls.weight"] = torch.randn(4, 4)
        torch.save({"meta": {"epoch": 36}, "state_dict": full}, path)
        sd = {k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}
    return sd, path


@pytest.mark.parametrize("layout", ["classification", "mmdet"])
def test_checkpoints_initialise_the_backbone(tmp_path, layout):
    sd, path = _classifier_and_file(tmp_path, layout)
    model = det.maskrcnn("custom", 3, model_kwargs=TINY, checkpoint=path, mask_head_channels=16, **SMALL_HEADS)
    body = model.backbone.body.state_dict()
    from_file = {k: v for k, v in sd.items() if not k.startswith(("head.", "norm."))}
    for k, v in from_file.items():
        assert torch.equal(body[k], v), k
    # mmdet files carry the features-mode norms; a classifier file has all but norm0..3 (8 tensors, kept fresh)
    assert len(from_file) == len(body) - (8 if layout == "classification" else 0)


def test_wrong_checkpoint_is_refused(tmp_path):
    other = UniRepLKNet(num_classes=10, depths=(1, 1, 1, 1), dims=(8, 16, 32, 48), kernel_sizes=TINY["kernel_sizes"])
    path = tmp_path / "other.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        det.fasterrcnn("custom", 3, model_kwargs=TINY, checkpoint=path, **SMALL_HEADS)


def test_official_reference_checkpoint_loads_into_a_detector():
    ref = reference_dir() / "unireplknet_a.train.safetensors"
    if not ref.exists():
        pytest.skip(f"reference data not found in {ref.parent}")
    from safetensors.torch import load_file

    sd = load_file(str(ref))
    model = det.fasterrcnn("unireplknet_a", 3, checkpoint=ref, fpn_channels=16, min_size=64, max_size=64,
                           box_head_convs=1, box_head_channels=16, representation_size=32)
    body = model.backbone.body.state_dict()
    for k, v in sd.items():
        if not k.startswith(("head.", "norm.")):
            assert torch.equal(body[k], v), k


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="min_size"):
        det.fasterrcnn("custom", 3, model_kwargs=TINY, min_size=16, max_size=64)
    with pytest.raises(ValueError, match="num_classes"):
        det.maskrcnn("custom", 0, model_kwargs=TINY, **SMALL_HEADS)
    with pytest.raises(ValueError, match="unknown detector"):
        det.build_detector("yolo", "custom", 3, model_kwargs=TINY)
    with pytest.raises(ValueError, match="GroupNorm"):
        det.fcos("custom", 3, model_kwargs=TINY, fpn_channels=16, min_size=64, max_size=64)


def _write(tmp_path, data):
    p = tmp_path / "ann.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_bad_coco_files_give_clear_errors(tmp_path):
    pytest.importorskip("pycocotools")
    ann = scenes.write_coco(tmp_path, "train", num_images=3, seed=0)
    good = json.loads(ann.read_text())
    images = tmp_path / "train"
    with pytest.raises(DetectionDataError, match="is empty"):
        CocoDetectionDataset(images, _write(tmp_path, ""))
    with pytest.raises(DetectionDataError, match="lists no images"):
        CocoDetectionDataset(images, _write(tmp_path, {**good, "images": []}))
    with pytest.raises(DetectionDataError, match="no annotations"):
        CocoDetectionDataset(images, _write(tmp_path, {**good, "annotations": []}))
    bad = json.loads(ann.read_text())
    bad["annotations"][0]["category_id"] = 17
    with pytest.raises(DetectionDataError, match="category_id 17"):
        CocoDetectionDataset(images, _write(tmp_path, bad))
    with pytest.raises(DetectionDataError, match="num_classes=2"):
        CocoDetectionDataset(images, ann, num_classes=2)
    bad = json.loads(ann.read_text())
    bad["annotations"][0]["segmentation"] = scenes.mask_to_rle(np.zeros((32, 32), bool))
    ds = CocoDetectionDataset(images, _write(tmp_path, bad))
    index = [im["id"] for im in ds.images].index(bad["annotations"][0]["image_id"])
    with pytest.raises(DetectionDataError, match="masks must have the image's size"):
        ds[index]
    (images / good["images"][0]["file_name"]).unlink()
    with pytest.raises(DetectionDataError, match="does not exist"):
        CocoDetectionDataset(images, ann)[0]
    with pytest.raises(FileNotFoundError):
        CocoDetectionDataset(images, tmp_path / "nope.json")


def test_coco_dataset_reads_what_the_generator_wrote(tmp_path):
    pytest.importorskip("pycocotools")
    ann = scenes.write_coco(tmp_path, "val", num_images=4, seed=2)
    ds = CocoDetectionDataset(tmp_path / "val", ann)
    assert ds.class_names == list(scenes.SCENE_CLASSES) and len(ds) == 4
    for i in range(4):
        image, target = ds[i]
        s = scenes.make_scene(i, seed=2, split="val")
        assert torch.equal((image * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(s.image))
        assert torch.equal(target["boxes"], torch.from_numpy(s.boxes))
        assert torch.equal(target["labels"], torch.from_numpy(s.labels))
        assert torch.equal(target["masks"].bool(), torch.from_numpy(s.masks))
    flipped = CocoDetectionDataset(tmp_path / "val", ann, hflip=1.0)
    image, target = flipped[0]
    s = scenes.make_scene(0, seed=2, split="val")
    assert torch.equal(target["masks"].bool(), torch.from_numpy(s.masks[:, :, ::-1].copy()))
    b = target["boxes"][0]  # the flipped box is the flipped mask's extent
    ys, xs = np.nonzero(s.masks[0][:, ::-1])
    assert b.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


class _Oracle(torch.nn.Module):
    """Returns the ground truth of each image (or nothing): COCO AP must be 100 (or 0)."""

    def __init__(self, ds, empty=False):
        super().__init__()
        self.by_shape = {}
        self.ds, self.empty = ds, empty
        self.calls = 0

    def forward(self, images):
        out = []
        for _ in images:
            _, t = self.ds[self.calls]
            self.calls += 1
            if self.empty:
                t = dict(boxes=t["boxes"][:0], labels=t["labels"][:0], masks=t["masks"][:0])
            out.append(dict(boxes=t["boxes"], labels=t["labels"], scores=torch.ones(len(t["labels"])),
                            masks=t["masks"][:, None].float()))
        return out


def test_coco_evaluate_scores_truth_100_and_nothing_0(tmp_path):
    pytest.importorskip("pycocotools")
    ann = scenes.write_coco(tmp_path, "val", num_images=5, seed=3)
    ds = CocoDetectionDataset(tmp_path / "val", ann)
    perfect = det.coco_evaluate(_Oracle(ds), ds, batch_size=1)
    assert perfect["box_AP"] == pytest.approx(100.0) and perfect["mask_AP"] == pytest.approx(100.0)
    nothing = det.coco_evaluate(_Oracle(ds, empty=True), ds, batch_size=1)
    assert nothing["box_AP"] == 0.0 and nothing["detections"] == 0


# ----------------------------------------------------------------------------------------------- ONNX
def test_detector_exports_to_onnx_after_reparam(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = det.fasterrcnn("custom", 3, model_kwargs=TINY, box_score_thresh=0.0, **SMALL_HEADS)
    randomize_bn_and_scales(model.backbone.body)
    reparameterize(model)
    info = det.export_onnx(model, tmp_path / "det.onnx", image_size=(64, 64))
    assert info["detections"] > 0 and info["max_abs_diff"] < 1e-3

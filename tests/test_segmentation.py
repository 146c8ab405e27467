"""Segmentation: UperNet + FCN heads, padding, re-param, ONNX, the smp route, ADE20K data and mIoU."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unireplknet import reparameterize
from unireplknet.data import scenes
from unireplknet.data.ade20k import ADE20KDataset, IGNORE_INDEX, SegmentationDataError
from unireplknet.tasks.dense import segmentation as seg
from unireplknet.tasks.dense.backbone_utils import build_backbone

from conftest import randomize_bn_and_scales

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13,), (3,)))


def tiny_upernet(num_classes=4, **kw):
    torch.manual_seed(0)
    return seg.upernet("custom", num_classes, model_kwargs=TINY, channels=16, aux_channels=8, **kw)


@pytest.mark.parametrize("size", [(7, 5), (6, 6), (2, 3), (13, 9), (1, 4)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_static_adaptive_pool_equals_torch(size, bins):
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(seg.adaptive_avg_pool2d_static(x, bins), F.adaptive_avg_pool2d(x, bins))


def test_upernet_shapes_padding_and_aux():
    model = tiny_upernet().eval()
    for h, w in [(64, 64), (50, 70), (20, 9), (1, 1)]:  # sizes below 32 and off the stride are padded
        with torch.no_grad():
            assert model(torch.randn(1, 3, h, w)).shape == (1, 4, h, w)
    model.train()
    logits, aux = model(torch.randn(2, 3, 40, 72), with_aux=True)
    assert logits.shape == aux.shape == (2, 4, 40, 72)
    # Padding only appends zeros on the bottom/right: a 64x64 input is unpadded, so the logits are exactly
    # backbone -> head -> bilinear resize.
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.backbone.forward_intermediates(x, intermediates_only=True)
        want = F.interpolate(model.decode_head(feats), size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), want)
        padded = torch.zeros(1, 3, 64, 64)
        padded[..., :50, :40] = x[..., :50, :40]
        full = F.interpolate(model.decode_head(model.backbone.forward_intermediates(padded, intermediates_only=True)),
                             size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x[..., :50, :40]), full[..., :50, :40])


def test_loss_and_label_errors():
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    target[0, 0, 0] = IGNORE_INDEX
    losses = seg.segmentation_loss(logits, target, logits * 2)
    keep = target != IGNORE_INDEX
    want = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
    torch.testing.assert_close(losses["loss_seg"], want)
    with pytest.raises(ValueError, match="out of range"):
        seg.segmentation_loss(logits, torch.full((2, 8, 8), 7))
    with pytest.raises(ValueError, match="image's size"):
        seg.segmentation_loss(logits, torch.zeros(2, 4, 4, dtype=torch.long))


def test_reparameterize_inside_segmenter_and_onnx(tmp_path):
    model = tiny_upernet()
    randomize_bn_and_scales(model.backbone, seed=2)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    reparameterize(model)
    assert model.backbone.deploy
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-4, rtol=1e-4)
    pytest.importorskip("onnxruntime")
    info = seg.export_onnx(model, tmp_path / "seg.onnx", image_size=(64, 64))
    assert info["max_abs_diff"] < 1e-4


def test_segmentation_checkpoint_with_backbone_prefix(tmp_path):
    source = tiny_upernet()
    randomize_bn_and_scales(source.backbone, seed=5)
    path = tmp_path / "upernet.pth"
    torch.save({"state_dict": source.state_dict(), "meta": {"iter": 160000}}, path)  # backbone.* + decode_head.*
    model = seg.upernet("custom", 4, model_kwargs=TINY, channels=16, aux_channels=8, checkpoint=path)
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_smp_timm_universal_encoder_is_our_features_mode():
    smp = pytest.importorskip("segmentation_models_pytorch")
    import unireplknet  # noqa: F401  (registers tu-unireplknet_*)

    torch.manual_seed(0)
    net = seg.smp_upernet("unireplknet_a", num_classes=5, decoder_channels=16, **TINY).eval()
    assert isinstance(net, smp.UPerNet)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert net(x).shape == (1, 5, 64, 64)
        ours = build_backbone("custom", model_kwargs=TINY).eval()
        ours.load_state_dict(net.encoder.model.model.state_dict())
        want = ours(x)
        got = net.encoder(x)[2:]  # smp adds the input and an empty stride-2 level in front
    assert len(got) == 4
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# ----------------------------------------------------------------------------------------------- data
def test_ade20k_layout_round_trip_and_errors(tmp_path):
    scenes.write_ade20k(tmp_path, "train", num_images=3, seed=4)
    ds = ADE20KDataset(tmp_path, "training", num_classes=4)
    assert len(ds) == 3 and ds.class_names == ["background", *scenes.SCENE_CLASSES]
    for i in range(3):
        image, label = ds[i]
        s = scenes.make_scene(i, seed=4, split="train")
        assert torch.equal(label, torch.from_numpy(s.semantic.astype(np.int64)))  # reduce_zero_label undoes the +1
        mean, std = torch.tensor(ds.MEAN).view(3, 1, 1), torch.tensor(ds.STD).view(3, 1, 1)
        back = (image * std + mean) * 255
        assert torch.allclose(back, torch.from_numpy(s.image).permute(2, 0, 1).float(), atol=1e-3)
    worst = max(int(scenes.make_scene(0, seed=4).semantic.max()), 1)  # every scene has a shape (class >= 1)
    with pytest.raises(SegmentationDataError, match=f"holds class {worst} but the model has {worst} classes"):
        ADE20KDataset(tmp_path, "training", num_classes=worst)[0]
    crop = ADE20KDataset(tmp_path, "training", crop_size=80, hflip=1.0)
    image, label = crop[0]  # 64x64 padded to an 80 crop: the padding is ignored
    assert image.shape == (3, 80, 80) and (label == IGNORE_INDEX).sum() == 80 * 80 - 64 * 64
    from PIL import Image

    name = sorted((tmp_path / "annotations" / "training").iterdir())[0]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(name)
    with pytest.raises(SegmentationDataError, match="must have its image's size"):
        ds[0]
    with pytest.raises(SegmentationDataError, match="not a folder"):
        ADE20KDataset(tmp_path, "validation")
    (tmp_path / "empty" / "images" / "training").mkdir(parents=True)
    (tmp_path / "empty" / "annotations" / "training").mkdir(parents=True)
    with pytest.raises(SegmentationDataError, match="no image"):
        ADE20KDataset(tmp_path / "empty", "training")


def test_confusion_matrix_metrics_against_set_arithmetic():
    rng = np.random.default_rng(0)
    k = 4
    target = rng.integers(0, k, size=(3, 9, 9))
    target[0, :2] = IGNORE_INDEX
    pred = np.where(rng.random(target.shape) < 0.6, target % k, rng.integers(0, k, size=target.shape))
    pred[target == 2] = 1  # class 2 never predicted: IoU 0
    cm = seg.ConfusionMatrix(k)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    got = cm.compute()
    valid = target != IGNORE_INDEX
    ious, accs = [], []
    for c in range(k):
        t, p = (target == c) & valid, (pred == c) & valid
        ious.append((t & p).sum() / (t | p).sum())
        accs.append((t & p).sum() / t.sum())
    assert got["mIoU"] == pytest.approx(100 * np.mean(ious))
    assert got["mAcc"] == pytest.approx(100 * np.mean(accs))
    assert got["aAcc"] == pytest.approx(100 * (pred[valid] == target[valid]).mean())
    assert got["IoU"][2] == 0.0


def test_evaluate_miou_of_a_perfect_and_a_constant_model(tmp_path):
    scenes.write_ade20k(tmp_path, "val", num_images=3, seed=6)
    ds = ADE20KDataset(tmp_path, "validation")

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.i = 0

        def forward(self, images):
            labels = torch.stack([ds[self.i + j][1] for j in range(len(images))])
            self.i += len(images)
            return F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float()

    assert seg.evaluate_miou(Oracle(), ds, 4, batch_size=2)["mIoU"] == pytest.approx(100.0)

    class Background(torch.nn.Module):
        def forward(self, images):
            return torch.zeros(len(images), 4, *images.shape[-2:]).index_fill_(1, torch.tensor([0]), 1.0)

    background = seg.evaluate_miou(Background(), ds, 4)
    # everything predicted "background": IoU(background) = background share, the shape classes 0
    labels = torch.stack([ds[i][1] for i in range(3)])
    share = float((labels == 0).float().mean())
    present = sum(1 for c in range(4) if (labels == c).any())
    assert background["mIoU"] == pytest.approx(100 * share / present, rel=1e-6)

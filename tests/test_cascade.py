"""Cascade Mask R-CNN (tasks/dense/cascade.py): sizes against the official README, the cascade's target assignment and
resampling against hand-computed boxes, score averaging, stage isolation of gradients, re-param, ONNX, weights."""
from __future__ import annotations

import math

import pytest
import torch

from unireplknet import reparameterize
from unireplknet.data.coco import DetrStyleCrop
from unireplknet.tasks.dense import cascade
from unireplknet.tasks.dense import detection as det

from conftest import load_repo_script, randomize_bn_and_scales

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13,), (3,)))
SMALL_HEADS = dict(fpn_channels=16, min_size=64, max_size=64, anchor_sizes=(4, 8, 16, 32, 64), box_head_convs=1,
                   box_head_channels=16, representation_size=32, mask_head_channels=16)


def tiny_cascade(**kw):
    torch.manual_seed(0)
    return cascade.cascade_mask_rcnn("custom", 3, model_kwargs=TINY, **{**SMALL_HEADS, **kw})


def features(channels=16, seed=0):
    """FPN-like maps of a 64x64 image: strides 4, 8, 16, 32."""
    g = torch.Generator().manual_seed(seed)
    return {str(i): torch.randn(1, channels, 16 >> i, 16 >> i, generator=g) for i in range(4)}


def set_stage_outputs(stage, cls_bias=None, box_bias=None):
    """Make a stage answer constants: zero predictor weights, the given biases (hand-computable outputs)."""
    with torch.no_grad():
        if cls_bias is not None:
            stage.cls_score.weight.zero_()
            stage.cls_score.bias.copy_(torch.tensor(cls_bias, dtype=torch.float32))
        if box_bias is not None:
            stage.bbox_pred.weight.zero_()
            stage.bbox_pred.bias.copy_(torch.tensor(box_bias, dtype=torch.float32))


# ----------------------------------------------------------------------------------------------- sizes
# Hand-counted heads (independent of the code): the parts every variant shares at 80 classes.
_BOX_STAGE = 4 * 256 * 256 * 9 + 4 * 2 * 256 + (256 * 7 * 7 * 1024 + 1024) + 1025 * 81 + 1025 * 4
_MASK_BRANCH = 4 * (256 * 256 * 9 + 256) + (256 * 256 * 4 + 256) + (256 * 81 + 81)
_RPN = (256 * 256 * 9 + 256) + (256 * 3 + 3) + (256 * 12 + 12)


@pytest.mark.parametrize("variant", list(cascade.OFFICIAL_PARAMS_M))
def test_parameter_counts_match_the_official_readme(variant):
    with torch.device("meta"):  # no memory, no initialisation: only the shapes
        model = cascade.cascade_mask_rcnn(variant, 80)
    count = {name: sum(p.numel() for n, p in model.named_parameters() if n.startswith(name))
             for name in ("backbone.body", "backbone.fpn", "rpn", "roi_heads.stages", "roi_heads.mask_branches")}
    dims = model.backbone.body.dims
    assert count["roi_heads.stages"] == 3 * _BOX_STAGE
    assert count["roi_heads.mask_branches"] == 3 * _MASK_BRANCH
    assert count["rpn"] == _RPN
    assert count["backbone.fpn"] == sum(dims) * 256 + 4 * 256 + 4 * (256 * 256 * 9 + 256)
    total = sum(count.values())
    assert total == sum(p.numel() for p in model.parameters())
    official = cascade.OFFICIAL_PARAMS_M[variant] * 1e6
    # README counts are rounded to 1M; T is 0.87M (1.0 %) below and XL 1.4M (0.3 %) above (docs/dense.md).
    assert abs(total - official) / official < 0.011, (variant, total)


# ----------------------------------------------------------------------------------------------- targets
def test_stage_wise_target_assignment_by_hand():
    heads = tiny_cascade(with_masks=False).roi_heads
    gt = dict(boxes=torch.tensor([[0.0, 0, 10, 10], [30, 30, 50, 50]]), labels=torch.tensor([2, 1]))
    proposals = torch.tensor([
        [0.0, 0, 10, 9],      # IoU 0.90 with gt 0
        [0, 0, 10, 6.2],      # 0.62
        [0, 0, 10, 5.5],      # 0.55
        [0, 0, 10, 4],        # 0.40
        [30, 30, 50, 46],     # 0.80 with gt 1
        [30, 30, 50, 43],     # 0.65
    ])
    expected = {  # per stage IoU threshold: labels of [gt0, gt1, the six proposals]
        0.5: [2, 1, 2, 2, 2, 0, 1, 1],
        0.6: [2, 1, 2, 2, 0, 0, 1, 1],
        0.7: [2, 1, 2, 0, 0, 0, 1, 0],
    }
    assert [s.iou_threshold for s in heads.stages] == [0.5, 0.6, 0.7]
    for stage in heads.stages:
        rois, labels, gt_idx, is_gt, gt_boxes = heads.assign_stage_targets(stage, [proposals], [gt])
        want = expected[stage.iou_threshold]
        assert labels[0].tolist() == want
        assert torch.equal(rois[0], torch.cat([gt["boxes"], proposals]))  # the ground truth is added first
        assert is_gt[0].tolist() == [True, True] + [False] * 6
        assert gt_idx[0].tolist() == [(0 if w == 2 else 1) if w else -1 for w in want]
        pos = labels[0] > 0
        assert torch.equal(gt_boxes[0][pos], gt["boxes"][gt_idx[0][pos]])


def test_box_coder_weights_are_the_cascade_papers():
    heads = tiny_cascade(with_masks=False).roi_heads
    assert [s.box_coder.weights for s in heads.stages] == [(10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)]
    assert [s.loss_weight for s in heads.stages] == [1.0, 0.5, 0.25]
    # A delta of 1 in x moves a 20-pixel box by 20/10, 20/20, 20/30 pixels.
    box = torch.tensor([[10.0, 10, 30, 30]])
    for stage, shift in zip(heads.stages, (2.0, 1.0, 2 / 3)):
        moved = stage.decode(torch.tensor([[1.0, 0, 0, 0]]), box)
        torch.testing.assert_close(moved, box + torch.tensor([[shift, 0, shift, 0]]))


def test_each_stage_resamples_from_the_previous_stages_regressed_boxes():
    model = tiny_cascade(with_masks=False)
    heads = model.roi_heads.train()
    # Stage 0 moves every box left by 0.2 of its width (dx = -2 at weight 10), stage 1 leaves boxes alone.
    set_stage_outputs(heads.stages[0], box_bias=[-2.0, 0, 0, 0])
    set_stage_outputs(heads.stages[1], box_bias=[0.0, 0, 0, 0])
    seen = []
    original = heads.assign_stage_targets

    def spy(stage, proposals, targets):
        out = original(stage, proposals, targets)
        seen.append(([p.clone() for p in proposals], out[1][0].tolist()))
        return out

    heads.assign_stage_targets = spy
    gt = dict(boxes=torch.tensor([[10.0, 10, 30, 30]]), labels=torch.tensor([1]))
    proposals = [torch.tensor([[14.0, 10, 34, 30],     # IoU 0.67: a positive of stage 0 only …
                               [40, 40, 60, 60]])]    # background
    heads(features(), proposals, [(64, 64)], [gt])
    assert len(seen) == 3
    assert seen[0][1] == [1, 1, 0]                     # stage 0 (0.5): gt, 0.67 positive, background
    # … regressed by stage 0 onto the ground truth; the ground-truth RoI itself is not passed on.
    torch.testing.assert_close(seen[1][0][0], torch.tensor([[10.0, 10, 30, 30], [36, 40, 56, 60]]))
    assert seen[1][1] == [1, 1, 0]                     # stage 1 (0.6): the refined box now matches
    torch.testing.assert_close(seen[2][0][0], seen[1][0][0])  # stage 1 did not move the boxes
    assert seen[2][1] == [1, 1, 0]


def test_later_stages_do_not_backpropagate_into_earlier_box_regression():
    model = tiny_cascade(with_masks=False).train()
    heads = model.roi_heads
    gt = dict(boxes=torch.tensor([[10.0, 10, 30, 30], [35, 30, 60, 50]]), labels=torch.tensor([1, 3]))
    proposals = [torch.tensor([[12.0, 11, 31, 29], [36, 30, 58, 52], [0, 0, 20, 20], [40, 5, 60, 25]])]
    losses = heads(features(), proposals, [(64, 64)], [gt])[1]
    stage0 = list(heads.stages[0].parameters())
    later = sum(v for k, v in losses.items() if not k.endswith("_s0"))
    grads = torch.autograd.grad(later, stage0 + list(heads.stages[1].parameters()), allow_unused=True,
                                retain_graph=True)
    assert all(g is None or not g.any() for g in grads[: len(stage0)])
    assert any(g is not None and g.any() for g in grads[len(stage0):])  # the later stage itself learns
    g0 = torch.autograd.grad(losses["loss_box_giou_s0"], heads.stages[0].bbox_pred.weight)[0]
    assert g0.any()  # and stage 0's regression does get its own loss's gradient


# ----------------------------------------------------------------------------------------------- inference
def test_scores_are_the_average_of_the_stages_logits_and_boxes_the_last_regression():
    model = tiny_cascade(with_masks=False, box_score_thresh=0.0)
    heads = model.roi_heads.eval()
    # Each stage is sure of a different class; each moves the box right by 0.1 of its width.
    for t, stage in enumerate(heads.stages):
        logits = [0.0] * 4
        logits[t + 1] = 3.0
        w = stage.box_coder.weights[0]
        set_stage_outputs(stage, cls_bias=logits, box_bias=[0.1 * w, 0, 0, 0])
    with torch.no_grad():
        out = heads(features(), [torch.tensor([[10.0, 10, 30, 30]])], [(64, 64)])[0][0]
    # mean logits (0, 1, 1, 1): every class e / (1 + 3e); the box moved 2 + 2 + 2 pixels.
    want = math.e / (1 + 3 * math.e)
    assert sorted(out["labels"].tolist()) == [1, 2, 3]
    torch.testing.assert_close(out["scores"], torch.full((3,), want))
    torch.testing.assert_close(out["boxes"], torch.tensor([[16.0, 10, 36, 30]] * 3))
    last_only = math.exp(3) / (math.exp(3) + 3)
    assert abs(want - last_only) > 0.5  # the test tells averaging from the last stage alone


def test_mask_probabilities_average_every_stages_mask_head():
    model = tiny_cascade(box_score_thresh=0.0).eval()
    heads = model.roi_heads
    for t, branch in enumerate(heads.mask_branches):
        with torch.no_grad():
            branch.predictor.mask_fcn_logits.weight.zero_()
            branch.predictor.mask_fcn_logits.bias.fill_([-2.0, 0.0, 2.0][t])
    with torch.no_grad():
        out = heads(features(), [torch.tensor([[10.0, 10, 30, 30]])], [(64, 64)])[0][0]
    want = (torch.sigmoid(torch.tensor(-2.0)) + 0.5 + torch.sigmoid(torch.tensor(2.0))) / 3
    assert out["masks"].shape[1:] == (1, 28, 28)
    torch.testing.assert_close(out["masks"], torch.full_like(out["masks"], float(want)))


def test_trains_through_the_detector_registry_with_masks():
    model = det.build_detector("cascade_mask_rcnn", "custom", 3, model_kwargs=TINY, **SMALL_HEADS).train()
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 10:30] = 1
    masks[1, 30:50, 35:60] = 1
    target = dict(boxes=torch.tensor([[10.0, 10, 30, 30], [35, 30, 60, 50]]), labels=torch.tensor([1, 3]),
                  masks=masks)
    losses = model([torch.rand(3, 64, 64)], [target])
    assert {f"loss_{k}_s{t}" for k in ("classifier", "box_giou", "mask") for t in range(3)} <= set(losses)
    sum(losses.values()).backward()
    assert model.backbone.body.downsample_layers[0][0].weight.grad.any()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 48, 80)])[0]
    assert out["masks"].shape[-2:] == (48, 80)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one entry per stage"):
        tiny_cascade(stage_iou_thresholds=(0.5, 0.6))
    with pytest.raises(TypeError, match="rpn_"):
        tiny_cascade(box_head_kernel=3)


def test_reparameterize_inside_the_cascade_keeps_detections():
    model = tiny_cascade(box_score_thresh=0.0)
    randomize_bn_and_scales(model.backbone.body, seed=3)
    model.eval()
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        before = model(images)[0]
        reparameterize(model)
        after = model(images)[0]
    assert model.backbone.body.deploy
    n = min(10, len(before["scores"]), len(after["scores"]))
    assert n > 0
    torch.testing.assert_close(after["scores"][:n], before["scores"][:n], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after["boxes"][:n], before["boxes"][:n], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(after["masks"][:n], before["masks"][:n], atol=1e-3, rtol=1e-4)


def test_onnx_export_matches_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    # A score threshold that the untrained heads' scores straddle: the exported and the checked image (export_onnx
    # draws both from seed 0) give different numbers of detections, so no count may be frozen into the graph.
    model = reparameterize(tiny_cascade(box_score_thresh=0.25, rpn_post_nms_top_n_test=50).eval())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        counts = [len(model([torch.rand(3, 64, 64, generator=g)])[0]["boxes"]) for _ in range(2)]
    assert counts[0] != counts[1] and min(counts) > 0
    info = det.export_onnx(model, tmp_path / "cascade.onnx", image_size=(64, 64))
    assert info["outputs"] == ["boxes", "labels", "scores", "masks"]
    assert info["detections"] == counts[1] and info["max_abs_diff"] < 1e-3


# ----------------------------------------------------------------------------------------------- weights
def _mmdet_names(model):
    """The official (MMDetection 2.x) names of this detector's tensors, written out from mmdet's module names:
    FPN lateral_convs/fpn_convs (ConvModule .conv), RPNHead rpn_conv/rpn_cls/rpn_reg, ConvFCBBoxHead
    shared_convs (.conv/.bn), shared_fcs, fc_cls, fc_reg, FCNMaskHead convs, upsample, conv_logits."""
    names = {}
    for key in model.state_dict():
        parts = key.split(".")
        if key.startswith("backbone.body."):
            names[key] = "backbone." + key[len("backbone.body."):]
        elif key.startswith("backbone.fpn."):
            kind = "lateral_convs" if parts[2] == "inner_blocks" else "fpn_convs"
            names[key] = f"neck.{kind}.{parts[3]}.conv.{parts[-1]}"
        elif key.startswith("rpn.head."):
            mm = {"conv": "rpn_conv", "cls_logits": "rpn_cls", "bbox_pred": "rpn_reg"}[parts[2]]
            names[key] = f"rpn_head.{mm}.{parts[-1]}"
        elif key.startswith("roi_heads.stages."):
            t, rest = parts[2], parts[3:]
            if rest[0] == "head" and len(rest) == 4:
                layer = "conv" if rest[2] == "0" else "bn"
                names[key] = f"roi_head.bbox_head.{t}.shared_convs.{rest[1]}.{layer}.{rest[3]}"
            elif rest[0] == "head":
                names[key] = f"roi_head.bbox_head.{t}.shared_fcs.0.{rest[2]}"
            else:
                names[key] = f"roi_head.bbox_head.{t}.{'fc_cls' if rest[0] == 'cls_score' else 'fc_reg'}.{rest[1]}"
        elif key.startswith("roi_heads.mask_branches."):
            t, rest = parts[2], parts[3:]
            if rest[0] == "head":
                names[key] = f"roi_head.mask_head.{t}.convs.{rest[1]}.conv.{rest[3]}"
            else:
                mm = {"conv5_mask": "upsample", "mask_fcn_logits": "conv_logits"}[rest[1]]
                names[key] = f"roi_head.mask_head.{t}.{mm}.{rest[2]}"
    return names


@pytest.mark.parametrize("convs", [1, 4])
def test_official_head_tensors_convert(convs):
    model = tiny_cascade(box_head_convs=convs)
    names = _mmdet_names(model)
    assert set(names) == set(model.state_dict())  # every tensor of ours has an official name
    g = torch.Generator().manual_seed(0)
    official = {}
    for ours, mm in names.items():
        v = model.state_dict()[ours]
        if mm.endswith(("fc_cls.weight", "fc_cls.bias")):  # mmdet: 3 classes, then background last
            v = torch.randn(v.shape, generator=g)
        elif mm.endswith(("conv_logits.weight", "conv_logits.bias")):  # mmdet: no background mask channel
            v = torch.randn((v.shape[0] - 1,) + v.shape[1:], generator=g)
        elif v.is_floating_point():
            v = torch.randn(v.shape, generator=g)
        official[mm] = v
    official["ema_backbone_stem_0_weight"] = torch.zeros(1)  # mmcv EMAHook buffer: skipped
    converted = cascade.convert_mmdet_cascade_state_dict(official)
    model.load_state_dict(converted, strict=True)
    sd = model.state_dict()
    for ours, mm in names.items():
        if mm.endswith(("fc_cls.weight", "fc_cls.bias")):
            assert torch.equal(sd[ours][0], official[mm][-1]) and torch.equal(sd[ours][1:], official[mm][:-1])
        elif mm.endswith(("conv_logits.weight", "conv_logits.bias")):
            assert torch.equal(sd[ours][1:], official[mm]) and not sd[ours][0].any()
        else:
            assert torch.equal(sd[ours], official[mm]), ours
    with pytest.raises(KeyError, match="no place"):
        cascade.convert_mmdet_cascade_state_dict({**official, "roi_head.semantic_head.conv.weight": torch.zeros(1)})


def test_recipe_presets_follow_the_official_configs():
    t, xl = cascade.cascade_recipe("unireplknet_t"), cascade.cascade_recipe("unireplknet_xl")
    assert (t["drop_path"], t["layer_decay"], xl["drop_path"], xl["layer_decay"]) == (0.3, 0.8, 0.7, 0.7)
    assert t["decay_epochs"] == (27, 33) and t["epochs"] == 36 and t["lr"] == 1e-4 and t["weight_decay"] == 0.05
    sizes = t["head_kwargs"]["train_min_sizes"]
    assert sizes[0] == 480 and sizes[-1] == 800 and len(sizes) == 11 and t["min_size"] == 800
    with pytest.raises(ValueError, match="no Cascade"):
        cascade.cascade_recipe("unireplknet_a")


def test_det_train_on_real_data_takes_the_recipe_of_the_variant():
    from unireplknet.tasks.dense.task import DenseTrainConfig

    cfg = DenseTrainConfig(data="/data/coco", detector="cascade_mask_rcnn", model="unireplknet_l").resolved()
    assert (cfg.drop_path, cfg.layer_decay, cfg.epochs, tuple(cfg.decay_epochs)) == (0.7, 0.7, 36, (27, 33))
    assert cfg.head_kwargs["train_min_sizes"][0] == 480 and cfg.min_size == 800
    mine = DenseTrainConfig(data="/data/coco", detector="cascade_mask_rcnn", model="unireplknet_l",
                            drop_path=0.1).resolved()
    assert mine.drop_path == 0.1  # the command line wins over the preset
    scenes = DenseTrainConfig(detector="cascade_mask_rcnn").resolved()
    assert "train_min_sizes" not in scenes.head_kwargs and scenes.min_size == 64  # the demo keeps its sizes


def test_multi_scale_training_sizes():
    model = tiny_cascade(min_size=64, train_min_sizes=(32, 48, 64))
    assert model.transform.min_size == (32, 48, 64)
    model.eval()
    with torch.no_grad():
        image, _ = model.transform([torch.rand(3, 100, 100)])
    assert image.tensors.shape[-2:] == (64, 64)  # evaluation: the last (test) size


@pytest.mark.slow
def test_flops_at_1280x800_match_the_official_readme():
    size = load_repo_script("benchmarks/cascade_size.py")
    got = size.count("unireplknet_t")["total"]
    assert abs(got - cascade.OFFICIAL_GFLOPS["unireplknet_t"]) / cascade.OFFICIAL_GFLOPS["unireplknet_t"] < 0.01


def test_detr_style_crop_resizes_crops_and_clips_by_hand():
    class One(torch.utils.data.Dataset):
        class_names = ["a", "b"]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            masks = torch.zeros(2, 200, 400, dtype=torch.uint8)
            masks[0, 0:100, 0:100] = 1
            masks[1, 150:200, 350:400] = 1
            return torch.rand(3, 200, 400), dict(boxes=torch.tensor([[0.0, 0, 100, 100], [350, 150, 400, 200]]),
                                                 labels=torch.tensor([1, 2]), masks=masks)

    aug = DetrStyleCrop(One(), p=1.0, resize_min_sizes=(400,), crop_range=(384, 600))
    assert aug.class_names == ["a", "b"] and len(aug) == 1
    for seed in range(5):
        aug._rng = __import__("numpy").random.default_rng(seed)
        image, target = aug[0]
        # shorter side 200 → 400: the image is 400 x 800, boxes x2; the crop is 384 … 400 high, 384 … 600 wide
        h, w = image.shape[-2:]
        assert 384 <= h <= 400 and 384 <= w <= 600
        assert target["masks"].shape[1:] == (h, w) and len(target["masks"]) == len(target["boxes"])
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)  # the clipped box is the cropped mask's extent
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert ((target["boxes"] >= 0).all() and (target["boxes"][:, 2] <= w).all()
                and (target["boxes"][:, 3] <= h).all())
    aug.p = 0.0
    assert aug[0][0].shape[-2:] == (200, 400)


def test_roi_pooling_is_aligned_and_uses_mmdets_levels():
    from torchvision.ops import MultiScaleRoIAlign, roi_align

    feats = features(channels=4)
    small, large = torch.tensor([[3.0, 5, 23, 25]]), torch.tensor([[0.0, 0, 60, 60]])  # sides 20 and 60
    pool = cascade.AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 7)
    got = pool(feats, [torch.cat([small, large])], [(64, 64)])
    # floor(log2(20 / 56)) → level 0 (stride 4), floor(log2(60 / 56)) = 0 as well; 120 would be level 1
    want_small = roi_align(feats["0"], [small], 7, 1 / 4, 0, aligned=True)
    torch.testing.assert_close(got[:1], want_small)
    big = torch.tensor([[0.0, 0, 120, 120]])
    torch.testing.assert_close(pool(feats, [big], [(64, 64)]), roi_align(feats["1"], [big], 7, 1 / 8, 0, aligned=True))
    unaligned = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 0)(feats, [small], [(64, 64)])
    assert not torch.allclose(unaligned, want_small)  # the half-pixel offset matters


def test_det_train_offers_the_cascade_with_the_scene_heads():
    from unireplknet.cli import build_parser
    from unireplknet.tasks.dense import cli as dense_cli, task as dense
    from unireplknet.tasks.dense.task import SCENES_DETECTION

    args = build_parser().parse_args(["det-train", "--detector", "cascade_mask_rcnn"])
    cfg = dense_cli._config(args, "detection").resolved()
    assert cfg.detector == "cascade_mask_rcnn"
    head = dense._head_kwargs_for(cfg.detector, cfg.head_kwargs)
    assert head["mask_head_channels"] == SCENES_DETECTION["head_kwargs"]["mask_head_channels"]  # masks kept
    model = det.build_detector(cfg.detector, cfg.model, 3, model_kwargs=cfg.model_kwargs,
                               min_size=cfg.min_size, max_size=cfg.max_size, **head)
    assert model.roi_heads.has_mask() and len(model.roi_heads.stages) == 3
    assert model.roi_heads.sampler.batch_size_per_image == SCENES_DETECTION["head_kwargs"]["box_batch_size_per_image"]


def test_cascade_recipe_turns_on_syncbn_only_under_torchrun_on_gpus(monkeypatch):
    from unireplknet.tasks.dense.task import DenseTrainConfig

    cfg = dict(data="/data/coco", detector="cascade_mask_rcnn", model="unireplknet_t")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert DenseTrainConfig(**cfg).resolved().sync_bn
    assert not DenseTrainConfig(**{**cfg, "detector": "maskrcnn"}).resolved().sync_bn  # the cascade's recipe only
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not DenseTrainConfig(**cfg).resolved().sync_bn  # torch's SyncBatchNorm has no CPU implementation
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not DenseTrainConfig(**cfg).resolved().sync_bn

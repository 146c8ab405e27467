"""Cascade Mask R-CNN on a UniRepLKNet backbone from torchvision's parts — the paper's COCO detector, no mmcv.

The paper's COCO results (UniRepLKNet, CVPR 2024, Table 6; the official ``detection/`` configs) are Cascade
Mask R-CNN + FPN with the 4conv-1fc box heads and GIoU loss, trained on MMDetection 2.28, whose RoIAlign and NMS
need mmcv's compiled ops. Here the same detector is assembled from torchvision: its ``GeneralizedRCNN``
skeleton, transform, ``FeaturePyramidNetwork`` (256 channels, P2-P6), ``RegionProposalNetwork``, ``BoxCoder``,
``Matcher``, the balanced sampler, ``roi_align`` and ``batched_nms``; the cascade itself is
:class:`CascadeRoIHeads`::

    from unireplknet.tasks.dense import cascade
    model = cascade.cascade_mask_rcnn("unireplknet_t", num_classes=80, checkpoint="unireplknet_t_in1k_224_acc83.21.pth",
                                      drop_path_rate=0.3, with_cp=True)

What the cascade does (Cai & Vasconcelos, "Cascade R-CNN", CVPR 2018, sections 4.2-4.3, and MMDetection's
``CascadeRoIHead`` that the official configs use):

* three box stages trained with IoU thresholds 0.5 / 0.6 / 0.7 and box-coder weights (10, 10, 5, 5),
  (20, 20, 10, 10), (30, 30, 15, 15) (the target standard deviations 0.1/0.2, 0.05/0.1, 0.033/0.067);
* stage t+1 is trained on the boxes stage t regressed from *its* sampled RoIs (the ground-truth boxes added as
  proposals are dropped before refining, and added again by the next stage's sampler); the regressed boxes are
  detached, so a stage's loss never reaches an earlier stage's box regression;
* each stage: 4 conv (3x3, 256, BatchNorm - SyncBatchNorm under DDP through ``nn.SyncBatchNorm
  .convert_sync_batchnorm``) + 1 fc (1024) head, class-agnostic regression, cross-entropy + GIoU loss on the
  decoded boxes (weight 10, averaged over all sampled RoIs as mmdet's ``avg_factor``), the stage's losses
  weighted 1 / 0.5 / 0.25;
* at test time every stage re-classifies the boxes of the stage before; the class logits of the three stages
  are averaged (as mmdet's ``CascadeRoIHead.simple_test``: the mean of the logits, then softmax) and the boxes
  are the last stage's regression;
* RoIAlign 7x7 for boxes, 14x14 for masks, with ``aligned=True`` and adaptive sampling as mmcv's ``RoIAlign``
  in the configs (torchvision's ``MultiScaleRoIAlign`` hard-codes ``aligned=False``; see
  :class:`AlignedMultiScaleRoIAlign`);
* one FCN mask head (4 conv 256 + deconv + 1x1) *per stage*, as mmdet builds it when a config gives a single
  ``mask_head`` dict: each is trained on its stage's positive RoIs, and at test time all three run on the final
  boxes and their mask probabilities are averaged. (The official parameter counts, 89M for T, include the three.)

The recipe of the paper (multi-scale training with DETR-style crops, 3x schedule, AdamW, layer decay and drop path
per variant, gradient checkpointing) is data: :data:`CASCADE_RECIPE` and :func:`cascade_recipe`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...model import UniRepLKNet
from .backbone_utils import (UniRepLKNetFPN, anchor_generator, backbone_body, check_detector_args,
                             require_torchvision)

__all__ = [
    "AlignedMultiScaleRoIAlign",
    "CascadeStage",
    "CascadeRoIHeads",
    "cascade_mask_rcnn",
    "CASCADE_STAGE_IOUS",
    "CASCADE_BOX_WEIGHTS",
    "CASCADE_STAGE_LOSS_WEIGHTS",
    "CASCADE_RECIPE",
    "cascade_recipe",
    "convert_mmdet_cascade_state_dict",
    "OFFICIAL_PARAMS_M",
    "OFFICIAL_GFLOPS",
]

#: IoU thresholds of the three stages (Cascade R-CNN, section 4.2).
CASCADE_STAGE_IOUS: Tuple[float, float, float] = (0.5, 0.6, 0.7)
#: Box-coder weights = 1 / target standard deviations of the three stages (Cascade R-CNN, section 4.2).
CASCADE_BOX_WEIGHTS: Tuple[Tuple[float, float, float, float], ...] = (
    (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))
#: Weights of the stages' losses (Cascade R-CNN, section 4.3).
CASCADE_STAGE_LOSS_WEIGHTS: Tuple[float, float, float] = (1.0, 0.5, 0.25)

#: The official README's parameter counts (millions, 80 classes) and FLOPs at 1280x800 (G) of the COCO models.
OFFICIAL_PARAMS_M = {"unireplknet_t": 89, "unireplknet_s": 113, "unireplknet_b": 155, "unireplknet_l": 276,
                     "unireplknet_xl": 443}
OFFICIAL_GFLOPS = {"unireplknet_t": 749, "unireplknet_s": 835, "unireplknet_b": 978, "unireplknet_l": 1385,
                   "unireplknet_xl": 1952}


# ----------------------------------------------------------------------------------------------- RoI pooling
class AlignedMultiScaleRoIAlign(nn.Module):
    """torchvision's ``MultiScaleRoIAlign`` level assignment with ``roi_align(aligned=True)``.

    The official detector pools with mmcv's ``RoIAlign(aligned=True, sampling_ratio=0)`` (half-pixel box
    offset); torchvision's pooler fixes ``aligned=False``, which shifts every RoI by half a feature pixel against
    the features the official heads were trained on. The level of a box of side s is floor(log2(s / 56))
    clamped to 0..3 in both (mmdet's ``finest_scale=56``; torchvision's 224 at level 4).
    """

    def __init__(self, featmap_names: Sequence[str], output_size: int, sampling_ratio: int = 0):
        super().__init__()
        from torchvision.ops import MultiScaleRoIAlign

        # Only for its feature filtering, scale inference and level mapper (set up on the first call).
        self.levels = MultiScaleRoIAlign(list(featmap_names), output_size, sampling_ratio)
        self.output_size = (int(output_size), int(output_size))
        self.sampling_ratio = sampling_ratio

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        import torchvision
        from torchvision.ops import roi_align
        from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _onnx_merge_levels, _setup_scales

        pool = self.levels
        feats = _filter_input(x, pool.featmap_names)
        if pool.scales is None or pool.map_levels is None:
            pool.scales, pool.map_levels = _setup_scales(feats, image_shapes, pool.canonical_scale,
                                                         pool.canonical_level)
        rois = _convert_to_roi_format(boxes)
        levels = pool.map_levels(boxes)
        tracing = torchvision._is_tracing()
        result = feats[0].new_zeros((0 if tracing else rois.shape[0], feats[0].shape[1]) + self.output_size)
        traced: List[Tensor] = []
        for level, (feat, scale) in enumerate(zip(feats, pool.scales)):
            idx = torch.where(levels == level)[0]
            pooled = roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio, aligned=True)
            if tracing:
                traced.append(pooled.to(result.dtype))
            else:
                result[idx] = pooled.to(result.dtype)
        return _onnx_merge_levels(levels, traced) if tracing else result


# ----------------------------------------------------------------------------------------------- heads
class CascadeStage(nn.Module):
    """One box stage: 4conv-1fc head (mmdet ``ConvFCBBoxHead``), class logits and class-agnostic box deltas."""

    def __init__(self, num_classes: int, in_channels: int = 256, conv_channels: int = 256, num_convs: int = 4,
                 representation_size: int = 1024, roi_size: int = 7,
                 box_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
                 iou_threshold: float = 0.5, loss_weight: float = 1.0):
        super().__init__()
        from torchvision.models.detection._utils import BoxCoder
        from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead

        # conv(no bias) + BN + ReLU x num_convs, flatten, fc + ReLU: mmdet's ConvModule with norm_cfg (bias='auto').
        self.head = FastRCNNConvFCHead((in_channels, roi_size, roi_size), [conv_channels] * num_convs,
                                       [representation_size], norm_layer=nn.BatchNorm2d)
        self.cls_score = nn.Linear(representation_size, num_classes + 1)  # 0 = background (torchvision)
        self.bbox_pred = nn.Linear(representation_size, 4)  # class-agnostic (reg_class_agnostic=True)
        # mmdet's initialisation of the predictors: normal std 0.01 (cls) / 0.001 (reg), zero bias.
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.box_coder = BoxCoder(box_weights)
        self.iou_threshold = float(iou_threshold)
        self.loss_weight = float(loss_weight)

    def forward(self, roi_features: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.head(roi_features)
        return self.cls_score(x), self.bbox_pred(x)

    def decode(self, deltas: Tensor, rois: Tensor) -> Tensor:
        """Boxes (N, 4) from class-agnostic deltas (N, 4) applied to ``rois`` (N, 4)."""
        return self.box_coder.decode_single(deltas, rois)


class _MaskBranch(nn.Module):
    """mmdet's ``FCNMaskHead``: 4 conv 3x3 (with bias, no norm) + ReLU, deconv 2x + ReLU, 1x1 class logits."""

    def __init__(self, num_classes: int, in_channels: int = 256, channels: int = 256, num_convs: int = 4):
        super().__init__()
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        self.head = MaskRCNNHeads(in_channels, [channels] * num_convs, 1)
        self.predictor = MaskRCNNPredictor(channels, channels, num_classes + 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.head(x))


class CascadeRoIHeads(nn.Module):
    """The three-stage cascade of box heads (+ one mask head per stage) on top of torchvision's RPN proposals.

    ``forward(features, proposals, image_shapes, targets)`` returns ``(detections, losses)`` as torchvision's
    ``RoIHeads``: in training the losses ``loss_classifier_s{t}``, ``loss_box_giou_s{t}``, ``loss_mask_s{t}``
    (already multiplied by the stage weight), in evaluation per-image dicts ``boxes``, ``labels``, ``scores``
    (+ ``masks`` probabilities N x 1 x 28 x 28).
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        stages: Sequence[CascadeStage],
        mask_roi_pool: Optional[nn.Module] = None,
        mask_branches: Optional[Sequence[nn.Module]] = None,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        giou_loss_weight: float = 10.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ):
        super().__init__()
        from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

        if len(stages) < 1:
            raise ValueError("a cascade needs at least one box stage")
        if mask_branches is not None and len(mask_branches) != len(stages):
            raise ValueError(f"one mask branch per box stage is needed: {len(mask_branches)} for {len(stages)} stages")
        self.box_roi_pool = box_roi_pool
        self.stages = nn.ModuleList(stages)
        self.mask_roi_pool = mask_roi_pool
        self.mask_branches = nn.ModuleList(mask_branches) if mask_branches is not None else None
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.giou_loss_weight = float(giou_loss_weight)
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    def has_mask(self) -> bool:
        return self.mask_branches is not None

    # ------------------------------------------------------------------ training targets
    def assign_stage_targets(
        self, stage: CascadeStage, proposals: List[Tensor], targets: List[Dict[str, Tensor]]
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor], List[Tensor], List[Tensor]]:
        """Add the ground truth to the proposals, match at the stage's IoU and sample (mmdet's MaxIoUAssigner
        with pos = neg = min_pos IoU threshold and no low-quality matches, RandomSampler with
        ``add_gt_as_proposals``).

        Returns per image: sampled RoIs, class labels (0 = background), matched ground-truth index (-1 for
        background), whether each RoI is a ground-truth box, and the matched ground-truth boxes.
        """
        from torchvision.models.detection._utils import Matcher
        from torchvision.ops import box_iou

        matcher = Matcher(stage.iou_threshold, stage.iou_threshold, allow_low_quality_matches=False)
        rois, all_labels, all_idx, all_is_gt = [], [], [], []
        for props, tgt in zip(proposals, targets):
            gt_boxes, gt_labels = tgt["boxes"], tgt["labels"]
            # mmdet puts the ground truth first (RandomSampler.sample: torch.cat([gt_bboxes, bboxes])).
            props = torch.cat([gt_boxes.to(props.dtype), props])
            is_gt = torch.zeros(len(props), dtype=torch.bool, device=props.device)
            is_gt[: len(gt_boxes)] = True
            if len(gt_boxes) == 0:
                idx = torch.full((len(props),), -1, dtype=torch.int64, device=props.device)
                labels = torch.zeros(len(props), dtype=torch.int64, device=props.device)
            else:
                idx = matcher(box_iou(gt_boxes, props))
                labels = gt_labels[idx.clamp(min=0)].to(torch.int64)
                labels[idx < 0] = 0
            rois.append(props)
            all_labels.append(labels)
            all_idx.append(idx)
            all_is_gt.append(is_gt)
        pos_masks, neg_masks = self.sampler(all_labels)
        out_rois, out_labels, out_idx, out_is_gt, out_gt_boxes = [], [], [], [], []
        for props, labels, idx, is_gt, pos, neg, tgt in zip(rois, all_labels, all_idx, all_is_gt, pos_masks,
                                                             neg_masks, targets):
            keep = torch.where(pos | neg)[0]
            out_rois.append(props[keep])
            out_labels.append(labels[keep])
            out_idx.append(idx[keep])
            out_is_gt.append(is_gt[keep])
            gt = tgt["boxes"]
            out_gt_boxes.append(gt[idx[keep].clamp(min=0)] if len(gt) else props[keep])
        return out_rois, out_labels, out_idx, out_is_gt, out_gt_boxes

    def _stage_loss(self, stage: CascadeStage, logits: Tensor, deltas: Tensor, rois: Tensor, labels: Tensor,
                    gt_boxes: Tensor) -> Tuple[Tensor, Tensor]:
        from torchvision.ops import generalized_box_iou_loss

        loss_cls = F.cross_entropy(logits, labels)
        pos = torch.where(labels > 0)[0]
        # GIoU on the decoded boxes (reg_decoded_bbox=True), summed over positives and divided by all sampled
        # RoIs (mmdet's avg_factor=bbox_targets.size(0)), weight 10.
        decoded = stage.decode(deltas[pos], rois[pos])
        loss_box = generalized_box_iou_loss(decoded, gt_boxes[pos], reduction="sum") / max(len(labels), 1)
        return loss_cls, loss_box * self.giou_loss_weight

    @staticmethod
    def _clip(boxes: Tensor, shape: Tuple[int, int]) -> Tensor:
        from torchvision.ops import boxes as box_ops

        return box_ops.clip_boxes_to_image(boxes, shape)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        features: Dict[str, Tensor],
        proposals: List[Tensor],
        image_shapes: List[Tuple[int, int]],
        targets: Optional[List[Dict[str, Tensor]]] = None,
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("CascadeRoIHeads needs targets in training mode")
            return [], self._forward_train(features, proposals, image_shapes, targets)
        return self._forward_test(features, proposals, image_shapes), {}

    def _forward_train(self, features, proposals, image_shapes, targets) -> Dict[str, Tensor]:
        from torchvision.models.detection.roi_heads import maskrcnn_loss

        losses: Dict[str, Tensor] = {}
        proposals = [p.detach() for p in proposals]
        for t, stage in enumerate(self.stages):
            rois, labels, gt_idx, is_gt, gt_boxes = self.assign_stage_targets(stage, proposals, targets)
            counts = [len(r) for r in rois]
            logits, deltas = stage(self.box_roi_pool(features, rois, image_shapes))
            loss_cls, loss_box = self._stage_loss(stage, logits, deltas, torch.cat(rois), torch.cat(labels),
                                                  torch.cat(gt_boxes))
            losses[f"loss_classifier_s{t}"] = stage.loss_weight * loss_cls
            losses[f"loss_box_giou_s{t}"] = stage.loss_weight * loss_box
            if self.mask_branches is not None:
                pos = [torch.where(lab > 0)[0] for lab in labels]
                mask_rois = [r[p] for r, p in zip(rois, pos)]
                if sum(len(r) for r in mask_rois) == 0:  # no positive: a zero loss that keeps the graph
                    losses[f"loss_mask_s{t}"] = sum(p.sum() for p in self.mask_branches[t].parameters()) * 0.0
                else:
                    mask_logits = self.mask_branches[t](self.mask_roi_pool(features, mask_rois, image_shapes))
                    loss_mask = maskrcnn_loss(mask_logits, mask_rois, [tg["masks"] for tg in targets],
                                              [lab[p] for lab, p in zip(labels, pos)],
                                              [i[p] for i, p in zip(gt_idx, pos)])
                    losses[f"loss_mask_s{t}"] = stage.loss_weight * loss_mask
            if t + 1 < len(self.stages):
                # The next stage's proposals: this stage's regression of its sampled RoIs, without the
                # ground-truth RoIs, detached (mmdet refine_bboxes under torch.no_grad()).
                with torch.no_grad():
                    refined = stage.decode(deltas.detach(), torch.cat(rois)).split(counts)
                    proposals = [self._clip(b[~g], shape) for b, g, shape in zip(refined, is_gt, image_shapes)]
        return losses

    def stage_predictions(self, features, proposals, image_shapes) -> Tuple[List[Tensor], List[Tensor]]:
        """Every stage's class logits on the boxes of the stage before, and the last stage's boxes.

        Returns (logits of stage 0 … T-1, each (sum N_i, C+1)), and the final boxes split per image.
        """
        counts = [p.shape[0] for p in proposals]  # shape, not len(): traced as dynamic sizes in ONNX export
        rois = torch.cat(proposals)
        all_logits: List[Tensor] = []
        boxes = rois
        for stage in self.stages:
            logits, deltas = stage(self.box_roi_pool(features, list(rois.split(counts)), image_shapes))
            all_logits.append(logits)
            boxes = torch.cat([self._clip(b, s) for b, s in
                               zip(stage.decode(deltas, rois).split(counts), image_shapes)])
            rois = boxes
        return all_logits, list(boxes.split(counts))

    def _forward_test(self, features, proposals, image_shapes) -> List[Dict[str, Tensor]]:
        from torchvision.ops import boxes as box_ops

        all_logits, final_boxes = self.stage_predictions(features, proposals, image_shapes)
        # The test-time ensemble of the stages' classifiers: mean of the logits, then softmax (mmdet).
        scores = F.softmax(torch.stack(all_logits).mean(0), -1).split([b.shape[0] for b in final_boxes])
        results: List[Dict[str, Tensor]] = []
        for boxes, score in zip(final_boxes, scores):
            num_classes = score.shape[1]
            labels = torch.arange(num_classes, device=score.device).view(1, -1).expand_as(score)
            boxes = boxes[:, None, :].expand(-1, num_classes, 4)[:, 1:].reshape(-1, 4)
            score, labels = score[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(score > self.score_thresh)[0]
            boxes, score, labels = boxes[keep], score[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, score, labels = boxes[keep], score[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, score, labels, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "scores": score[keep], "labels": labels[keep]})
        if self.mask_branches is not None:
            mask_rois = [r["boxes"] for r in results]
            feats = self.mask_roi_pool(features, mask_rois, image_shapes)
            # Every stage's mask head on the final boxes, probabilities averaged (mmdet merge_aug_masks).
            probs = torch.stack([branch(feats).sigmoid() for branch in self.mask_branches]).mean(0)
            labels = torch.cat([r["labels"] for r in results])
            probs = probs[torch.arange(labels.shape[0], device=labels.device), labels][:, None]
            for r, p in zip(results, probs.split([b.shape[0] for b in mask_rois])):
                r["masks"] = p
        return results


# ----------------------------------------------------------------------------------------------- detector
def cascade_mask_rcnn(
    model: Union[str, UniRepLKNet] = "unireplknet_t",
    num_classes: int = 80,
    *,
    checkpoint: Optional[Any] = None,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    drop_path_rate: float = 0.0,
    with_cp: bool = False,
    deploy: bool = False,
    fpn_channels: int = 256,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    box_head_convs: int = 4,
    box_head_channels: int = 256,
    representation_size: int = 1024,
    mask_head_channels: int = 256,
    with_masks: bool = True,
    min_size: int = 800,
    max_size: int = 1333,
    train_min_sizes: Optional[Sequence[int]] = None,
    stage_iou_thresholds: Sequence[float] = CASCADE_STAGE_IOUS,
    stage_box_weights: Sequence[Sequence[float]] = CASCADE_BOX_WEIGHTS,
    stage_loss_weights: Sequence[float] = CASCADE_STAGE_LOSS_WEIGHTS,
    giou_loss_weight: float = 10.0,
    box_batch_size_per_image: int = 512,
    box_positive_fraction: float = 0.25,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    **rpn_kwargs: Any,
) -> nn.Module:
    """Cascade Mask R-CNN + FPN (P2-P6, 256 channels) on a UniRepLKNet: the paper's COCO detector.

    Backbone keywords as :func:`unireplknet.tasks.dense.detection.maskrcnn` (``checkpoint``, ``model_kwargs``,
    ``drop_path_rate``, ``with_cp``, ``deploy``); head sizes ``fpn_channels``, ``anchor_sizes``,
    ``box_head_convs``, ``box_head_channels``, ``representation_size``, ``mask_head_channels``; the cascade
    ``stage_iou_thresholds``, ``stage_box_weights``, ``stage_loss_weights``, ``giou_loss_weight``; RoI sampling
    and test ``box_*``; ``min_size`` is the shorter side at test time and ``train_min_sizes`` (optional) the
    shorter sides training draws from, one per batch (the recipe's multi-scale training, 480 … 800; torchvision's
    transform picks a random entry in training and the last one, ``min_size``, in evaluation). Other keywords
    starting with ``rpn_`` go to torchvision's RPN. ``with_masks=False`` gives Cascade R-CNN (boxes only).

    The result is torchvision's ``GeneralizedRCNN`` (transform, backbone, ``rpn``, ``roi_heads`` =
    :class:`CascadeRoIHeads`): its ``forward``, resizing and post-processing (box rescaling, mask pasting) are
    torchvision's.
    """
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    require_torchvision()
    sizes = tuple(sorted({int(s) for s in (train_min_sizes or ())} - {int(min_size)})) + (int(min_size),)
    check_detector_args(num_classes, min(sizes), max_size, anchor_sizes, "P2-P6")
    n = len(stage_iou_thresholds)
    if not (len(stage_box_weights) == len(stage_loss_weights) == n) or n < 1:
        raise ValueError(f"stage_iou_thresholds, stage_box_weights and stage_loss_weights need one entry per stage; "
                         f"got {n}, {len(stage_box_weights)}, {len(stage_loss_weights)}")
    unknown = [k for k in rpn_kwargs if not k.startswith("rpn_")]
    if unknown:
        raise TypeError(f"cascade_mask_rcnn got unknown keywords {unknown}; the cascade's own options are "
                        "listed in its docstring, and torchvision RPN options start with 'rpn_'")
    backbone = UniRepLKNetFPN(backbone_body(model, checkpoint, model_kwargs, drop_path_rate, with_cp, deploy),
                              fpn_channels, (0, 1, 2, 3), "maxpool")
    anchors = anchor_generator(anchor_sizes, octave_scales=False)
    rpn_opts = dict(rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_train=2000,
                    rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
                    rpn_batch_size_per_image=256, rpn_positive_fraction=0.5, rpn_score_thresh=0.0)
    rpn_opts.update(rpn_kwargs)
    rpn = RegionProposalNetwork(
        anchors, RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
        rpn_opts["rpn_fg_iou_thresh"], rpn_opts["rpn_bg_iou_thresh"], rpn_opts["rpn_batch_size_per_image"],
        rpn_opts["rpn_positive_fraction"],
        dict(training=rpn_opts["rpn_pre_nms_top_n_train"], testing=rpn_opts["rpn_pre_nms_top_n_test"]),
        dict(training=rpn_opts["rpn_post_nms_top_n_train"], testing=rpn_opts["rpn_post_nms_top_n_test"]),
        rpn_opts["rpn_nms_thresh"], score_thresh=rpn_opts["rpn_score_thresh"])
    stages = [CascadeStage(num_classes, fpn_channels, box_head_channels, box_head_convs, representation_size, 7,
                           tuple(float(w) for w in weights), iou, loss_w)
              for iou, weights, loss_w in zip(stage_iou_thresholds, stage_box_weights, stage_loss_weights)]
    levels = ["0", "1", "2", "3"]
    heads = CascadeRoIHeads(
        AlignedMultiScaleRoIAlign(levels, 7), stages,
        AlignedMultiScaleRoIAlign(levels, 14) if with_masks else None,
        [_MaskBranch(num_classes, fpn_channels, mask_head_channels) for _ in stages] if with_masks else None,
        box_batch_size_per_image, box_positive_fraction, giou_loss_weight, box_score_thresh, box_nms_thresh,
        box_detections_per_img)
    transform = GeneralizedRCNNTransform(sizes, max_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return GeneralizedRCNN(backbone, rpn, heads, transform)


# ----------------------------------------------------------------------------------------------- the recipe
#: The paper's COCO recipe (official ``detection/configs/coco/casc_mask_rcnn_unireplknet_*_fpn_3x_coco.py``):
#: per variant the initialisation, drop path and layer decay, and the shared optimisation/augmentation.
CASCADE_RECIPE: Dict[str, Any] = dict(
    epochs=36, step_epochs=(27, 33), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, warmup_iters=500,
    warmup_ratio=1e-3, schedule="step", batch_size=2, total_batch_size=16, num_layers=12, decay_type="layer_wise",
    with_cp=True, sync_bn=True, hflip=0.5,
    # DETR-style augmentation (mmdet AutoAugment): either multi-scale, or resize + absolute crop + multi-scale.
    train_min_sizes=tuple(range(480, 801, 32)), max_size=1333, test_min_size=800,
    crop_branch=dict(resize_min_sizes=(400, 500, 600), crop_range=(384, 600)),
    variants={
        "unireplknet_t": dict(drop_path=0.3, layer_decay=0.8, init="in1k", ema=None),
        "unireplknet_s": dict(drop_path=0.5, layer_decay=0.8, init="in1k", ema=None),
        "unireplknet_s_22k": dict(drop_path=0.5, layer_decay=0.8, init="in22k", ema=1e-4),
        "unireplknet_b": dict(drop_path=0.6, layer_decay=0.8, init="in22k", ema=1e-4),
        "unireplknet_l": dict(drop_path=0.7, layer_decay=0.7, init="in22k", ema=1e-4),
        "unireplknet_xl": dict(drop_path=0.7, layer_decay=0.7, init="in22k", ema=1e-4),
    },
)


def cascade_recipe(model: str = "unireplknet_t") -> Dict[str, Any]:
    """The recipe for one variant as ``det-train`` (``DenseTrainConfig``) defaults: ``drop_path``,
    ``layer_decay``, ``epochs``, ``decay_epochs``, ``lr`` …, and ``head_kwargs`` with the multi-scale training
    sizes. A custom backbone gets the shared part with the T row's drop path and layer decay."""
    variants = CASCADE_RECIPE["variants"]
    if model not in variants and model != "custom":
        raise ValueError(f"no Cascade Mask R-CNN recipe for {model!r}; the paper trains {', '.join(variants)} "
                         "(or pass --drop-path and --layer-decay yourself with a custom backbone)")
    r = CASCADE_RECIPE
    # The official config's names -> the engine's option names (docs/cli/engine.md).
    names = dict(epochs="epochs", step_epochs="decay_epochs", lr="lr", weight_decay="weight_decay",
                 warmup_iters="warmup_steps", warmup_ratio="warmup_ratio", schedule="sched", batch_size="batch_size",
                 max_size="max_size")
    out = {ours: r[official] for official, ours in names.items()}
    row = variants.get(model, variants["unireplknet_t"])
    out.update(drop_path=row["drop_path"], layer_decay=row["layer_decay"], min_size=r["test_min_size"],
               head_kwargs=dict(train_min_sizes=r["train_min_sizes"]))
    return out


# ----------------------------------------------------------------------------------------------- checkpoints
def convert_mmdet_cascade_state_dict(state_dict: Mapping[str, Tensor], num_stages: int = 3) -> Dict[str, Tensor]:
    """An official (MMDetection 2.x) Cascade Mask R-CNN ``state_dict`` → this detector's keys.

    Every tensor has a counterpart of the same shape but two: mmdet's classifiers put background *last*
    (81 = 80 + 1) where torchvision puts it first (rows rotated), and mmdet's mask logits have 80 channels where
    ours have 81 (a zero background channel is added; it is never read). mmcv ``EMAHook`` buffers (``ema_*``)
    are skipped. See docs/dense.md for the table.
    Raises ``KeyError`` naming any official tensor without a place here.
    """
    import re

    out: Dict[str, Tensor] = {}
    unmapped: List[str] = []
    convs = {m[1] for k in state_dict if (m := re.match(r"roi_head\.bbox_head\.0\.shared_convs\.(\d+)\.", k))}
    for key, value in state_dict.items():
        if key.startswith("ema_"):
            continue  # mmcv EMAHook's shadow copies (22K rows); the regular tensors are the ones loaded
        new = _map_mmdet_key(key, num_stages, len(convs))
        if new is None:
            unmapped.append(key)
            continue
        if new.endswith(("cls_score.weight", "cls_score.bias")):
            value = torch.cat([value[-1:], value[:-1]])  # background last → first
        if ".predictor.mask_fcn_logits." in new:
            value = torch.cat([torch.zeros_like(value[:1]), value])
        out[new] = value
    if unmapped:
        raise KeyError(f"{len(unmapped)} tensors of the official checkpoint have no place in this detector: "
                       f"{unmapped[:8]}{' …' if len(unmapped) > 8 else ''}")
    return out


def _map_mmdet_key(key: str, num_stages: int, num_convs: int = 4) -> Optional[str]:
    import re

    if key.startswith("backbone."):
        return "backbone.body." + key[len("backbone."):]
    m = re.fullmatch(r"neck\.(lateral|fpn)_convs\.(\d)\.conv\.(weight|bias)", key)
    if m:
        return f"backbone.fpn.{'inner' if m[1] == 'lateral' else 'layer'}_blocks.{m[2]}.0.{m[3]}"
    rpn = {"rpn_head.rpn_conv": "rpn.head.conv.0.0", "rpn_head.rpn_cls": "rpn.head.cls_logits",
           "rpn_head.rpn_reg": "rpn.head.bbox_pred"}
    for old, new in rpn.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    m = re.fullmatch(r"roi_head\.bbox_head\.(\d+)\.(.+)", key)
    if m and int(m[1]) < num_stages:
        t, rest = m[1], m[2]
        c = re.fullmatch(r"shared_convs\.(\d+)\.(conv|bn)\.(.+)", rest)
        if c:  # FastRCNNConvFCHead: head.<i> = Conv2dNormActivation(conv 0, bn 1)
            return f"roi_heads.stages.{t}.head.{c[1]}.{0 if c[2] == 'conv' else 1}.{c[3]}"
        f = re.fullmatch(r"shared_fcs\.0\.(weight|bias)", rest)
        if f:  # FastRCNNConvFCHead: the conv blocks 0 … n-1, Flatten (n), Linear (n + 1), ReLU
            return f"roi_heads.stages.{t}.head.{num_convs + 1}.{f[1]}"
        f = re.fullmatch(r"fc_(cls|reg)\.(weight|bias)", rest)
        if f:
            return f"roi_heads.stages.{t}.{'cls_score' if f[1] == 'cls' else 'bbox_pred'}.{f[2]}"
    m = re.fullmatch(r"roi_head\.mask_head\.(\d+)\.(.+)", key)
    if m and int(m[1]) < num_stages:
        t, rest = m[1], m[2]
        c = re.fullmatch(r"convs\.(\d+)\.conv\.(weight|bias)", rest)
        if c:
            return f"roi_heads.mask_branches.{t}.head.{c[1]}.0.{c[2]}"
        if rest.startswith("upsample."):
            return f"roi_heads.mask_branches.{t}.predictor.conv5_mask.{rest.split('.', 1)[1]}"
        if rest.startswith("conv_logits."):
            return f"roi_heads.mask_branches.{t}.predictor.mask_fcn_logits.{rest.split('.', 1)[1]}"
    return None

"""UniRepLKNet for semantic segmentation: the recipe's UperNet head plus FCN auxiliary head, mIoU.

::

    from unireplknet.tasks.dense import segmentation
    model = segmentation.upernet("unireplknet_t", num_classes=150, checkpoint="unireplknet_t_in1k_224_acc83.21.pth")
    logits = model(images)          # (N, 150, H, W) at the input resolution

The head follows the official configuration (mmseg ``UPerHead``: pyramid pooling at scales 1, 2, 3, 6 on the
last stage, FPN fusion of all four stages, 512 channels, dropout 0.1; ``FCNHead`` on stage 3 with 256 channels
and loss weight 0.4). Inputs of any size ≥ 1 pixel are padded on the bottom/right to a multiple of 32
(and at least 32) and the logits cropped back, so the stride-32 backbone never refuses an image.

The other route, segmentation_models_pytorch's timm-universal encoder, needs no code of ours::

    import unireplknet, segmentation_models_pytorch as smp
    smp.UPerNet(encoder_name="tu-unireplknet_t", encoder_weights=None, classes=150)

(:func:`smp_upernet` builds it and loads an official checkpoint into the encoder).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...data.ade20k import IGNORE_INDEX, segmentation_collate
from ...model import UniRepLKNet
from .backbone_utils import TimmFeatureBackbone, build_backbone, check_dense_backbone, dense_backbone_strides

__all__ = [
    "adaptive_avg_pool2d_static",
    "ConvBNReLU",
    "UPerHead",
    "FCNHead",
    "UniRepLKNetSegmenter",
    "upernet",
    "smp_upernet",
    "segmentation_loss",
    "ConfusionMatrix",
    "evaluate_miou",
    "export_onnx",
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------------------------- head
def _pool_matrix(size: int, bins: int, device, dtype) -> torch.Tensor:
    """(bins, size) averaging matrix of adaptive average pooling along one axis (PyTorch's bin edges)."""
    m = torch.zeros(bins, size, device=device, dtype=dtype)
    for i in range(bins):
        start = (i * size) // bins
        end = -((-(i + 1) * size) // bins)  # ceil((i+1)·size/bins)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool2d_static(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)`` written as two matrix products.

    Same numbers, but it exports to ONNX for every input size (ONNX has no adaptive pooling; the exporter
    refuses sizes that ``bins`` does not divide, e.g. the 2×2 last stage of a 64×64 image at scale 3 or 6).
    """
    h, w = x.shape[-2:]
    ph = _pool_matrix(int(h), bins, x.device, x.dtype)
    pw = _pool_matrix(int(w), bins, x.device, x.dtype)
    return torch.matmul(torch.matmul(ph, x), pw.t())


class ConvBNReLU(nn.Sequential):
    """conv (no bias) → BatchNorm → ReLU: mmcv's ``ConvModule`` with the recipe's (Sync)BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UPerHead(nn.Module):
    """Unified Perceptual Parsing head (mmseg ``UPerHead``): PPM on the last map, top-down FPN, fused 3×3 conv."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.ppm = nn.ModuleList(ConvBNReLU(in_channels[-1], channels, 1) for _ in self.pool_scales)
        self.bottleneck = ConvBNReLU(in_channels[-1] + len(self.pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def _psp(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for scale, conv in zip(self.pool_scales, self.ppm):
            pooled = conv(adaptive_avg_pool2d_static(x, scale))
            outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[:-1])]
        laterals.append(self._psp(feats[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add the upsampled coarser level
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False)
        outs = [conv(l) for conv, l in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.conv_seg(self.dropout(self.fpn_bottleneck(torch.cat(outs, dim=1))))


class FCNHead(nn.Module):
    """The auxiliary head of the recipe (mmseg ``FCNHead``, one 3×3 conv, no input concat)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1,
                 dropout: float = 0.1):
        super().__init__()
        layers = [ConvBNReLU(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


class UniRepLKNetSegmenter(nn.Module):
    """Encoder–decoder: features-mode UniRepLKNet (or a timm peer backbone, :class:`TimmFeatureBackbone`) →
    UPerHead (+ FCN auxiliary head while training); the head's input channels are the backbone's ``dims``.

    ``forward(x)`` returns logits (N, num_classes, H, W) at the input size; ``forward(x, with_aux=True)``
    returns ``(logits, aux_logits)`` (the auxiliary head is only used for the loss).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, channels: int = 512, aux_channels: int = 256,
                 aux_stage: Optional[int] = 2, pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        check_dense_backbone(backbone, "the segmenter")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.pad_multiple = max(dense_backbone_strides(backbone))  # 32 for UniRepLKNet
        self.decode_head = UPerHead(backbone.dims, num_classes, channels, pool_scales, dropout)
        self.aux_stage = aux_stage
        self.auxiliary_head = (FCNHead(backbone.dims[aux_stage], num_classes, aux_channels, dropout=dropout)
                               if aux_stage is not None else None)

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        if x.dim() != 4:
            raise ValueError(f"expected a (batch, channels, height, width) tensor, got shape {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        # Pad bottom/right to a multiple of the last stride (32; at least one stride): the backbone then takes any size.
        m = self.pad_multiple
        ph, pw = max(m, math.ceil(h / m) * m) - h, max(m, math.ceil(w / m) * m) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.backbone.forward_intermediates(x, intermediates_only=True)
        logits = self.decode_head(feats)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
        if not with_aux:
            return logits
        if self.auxiliary_head is None:
            raise ValueError("this segmenter was built without an auxiliary head (aux_stage=None)")
        aux = self.auxiliary_head(feats[self.aux_stage])
        aux = F.interpolate(aux, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
        return logits, aux


def upernet(
    model: Union[str, UniRepLKNet] = "unireplknet_t",
    num_classes: int = 150,
    *,
    checkpoint: Optional[PathLike] = None,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    drop_path_rate: float = 0.0,
    with_cp: bool = False,
    deploy: bool = False,
    channels: int = 512,
    aux_channels: int = 256,
    aux_stage: Optional[int] = 2,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout: float = 0.1,
) -> UniRepLKNetSegmenter:
    """UperNet (+ FCN auxiliary head on stage 3) on a UniRepLKNet: the official ADE20K model.

    ``checkpoint`` initialises the backbone: an official classification file (classifier dropped, everything
    else strict) or an official segmentation file (``state_dict`` with ``backbone.`` prefix). ``model`` may
    also name another timm model (a peer backbone, e.g. ``convnext_atto``; see
    :func:`unireplknet.tasks.dense.backbone_utils.build_backbone`): the same heads on its last four feature levels.
    """
    if isinstance(model, (UniRepLKNet, TimmFeatureBackbone)):
        backbone = model
        if checkpoint is not None:
            raise ValueError("pass either a built backbone or a checkpoint to build it from, not both")
    else:
        backbone = build_backbone(model, checkpoint=checkpoint, model_kwargs=model_kwargs,
                                  drop_path_rate=drop_path_rate, with_cp=with_cp, deploy=deploy)
    return UniRepLKNetSegmenter(backbone, num_classes, channels, aux_channels, aux_stage, pool_scales, dropout)


def smp_upernet(model: str = "unireplknet_t", num_classes: int = 150, checkpoint: Optional[PathLike] = None,
                **kwargs: Any) -> nn.Module:
    """segmentation_models_pytorch's UPerNet on the timm-universal encoder ``tu-<model>`` (pip extra ``segmentation``).

    ``kwargs`` go to ``smp.UPerNet`` (unknown ones reach ``timm.create_model``, e.g. depths/dims/kernel_sizes).
    The encoder is the same features-mode UniRepLKNet; ``checkpoint`` loads into it like :func:`upernet`'s.
    """
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ImportError("the segmentation_models_pytorch route needs: pip install 'unireplknet[segmentation]'") from None
    from ... import zoo  # noqa: F401  (registers the variants with timm)

    name = model if model.startswith("unireplknet_") else f"unireplknet_{model}"
    net = smp.UPerNet(encoder_name=f"tu-{name}", encoder_weights=None, classes=num_classes, **kwargs)
    if checkpoint is not None:
        from ...checkpoint import load_checkpoint

        body = net.encoder.model
        target = getattr(body, "model", body)  # timm's FeatureGetterNet wraps the UniRepLKNet
        load_checkpoint(target, checkpoint, drop_head=True)
    return net


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, aux_logits: Optional[torch.Tensor] = None,
                      aux_weight: float = 0.4) -> Dict[str, torch.Tensor]:
    """Cross-entropy (pixels labelled 255 ignored) of the decode head, plus ``aux_weight`` × the auxiliary one."""
    if target.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"label maps are {tuple(target.shape[-2:])} but the logits {tuple(logits.shape[-2:])}; "
                         "labels must have the image's size")
    valid = target[target != IGNORE_INDEX]
    if valid.numel() and int(valid.max()) >= logits.shape[1]:
        raise ValueError(f"label {int(valid.max())} is out of range for {logits.shape[1]} classes "
                         f"(labels must be 0 … {logits.shape[1] - 1} or {IGNORE_INDEX} = ignore)")
    losses = {"loss_seg": F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)}
    if aux_logits is not None:
        losses["loss_aux"] = aux_weight * F.cross_entropy(aux_logits, target, ignore_index=IGNORE_INDEX)
    return losses


# ----------------------------------------------------------------------------------------------- mIoU
class ConfusionMatrix:
    """Pixel confusion matrix (rows: truth, columns: prediction) and the metrics mmseg reports."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.float64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != IGNORE_INDEX
        t, p = target[keep].long().cpu(), pred[keep].long().cpu()
        if t.numel() and int(t.max()) >= self.num_classes:
            raise ValueError(f"label {int(t.max())} is out of range for {self.num_classes} classes")
        idx = t * self.num_classes + p
        self.matrix += torch.bincount(idx, minlength=self.num_classes ** 2).view(self.num_classes, -1).double()

    def compute(self) -> Dict[str, Any]:
        """mIoU, mAcc (mean class accuracy), aAcc (pixel accuracy), in percent; classes absent from both truth
        and prediction are left out of the means (mmseg's NaN-mean)."""
        m = self.matrix
        tp = m.diag()
        gt, pred = m.sum(1), m.sum(0)
        union = gt + pred - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
        present = ~torch.isnan(iou)
        return dict(
            mIoU=float(iou[present].mean() * 100) if present.any() else 0.0,
            mAcc=float(acc[~torch.isnan(acc)].mean() * 100) if (~torch.isnan(acc)).any() else 0.0,
            aAcc=float(tp.sum() / m.sum().clamp(min=1) * 100),
            IoU=[None if math.isnan(v) else v * 100 for v in iou.tolist()],
        )


@torch.no_grad()
def evaluate_miou(model: nn.Module, dataset: torch.utils.data.Dataset, num_classes: int, batch_size: int = 8,
                  device: Union[str, torch.device] = "cpu", dist_info: Any = None) -> Dict[str, Any]:
    """mIoU / mAcc / aAcc (%) of ``model`` (logits at input size) over ``dataset``, summed over torchrun ranks."""
    from ...engine.distributed import all_reduce_sum

    rank, world = (dist_info.rank, dist_info.world_size) if dist_info is not None else (0, 1)
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes)
    indices = list(range(rank, len(dataset), world))
    for start in range(0, len(indices), batch_size):
        images, labels = segmentation_collate([dataset[i] for i in indices[start:start + batch_size]])
        logits = model(images.to(device))
        cm.update(logits.argmax(1).cpu(), labels)
    model.train(was_training)
    flat = all_reduce_sum(cm.matrix.flatten().tolist(), torch.device(device))
    cm.matrix = torch.tensor(flat, dtype=torch.float64).view(num_classes, num_classes)
    return cm.compute()


# ----------------------------------------------------------------------------------------------- ONNX
def export_onnx(model: nn.Module, path: PathLike, image_size: Tuple[int, int] = (512, 512), opset: int = 17,
                verify: bool = True, atol: float = 1e-3) -> Dict[str, Any]:
    """Export a segmenter to ONNX with the package's one exporter (:func:`unireplknet.export.export_onnx`):
    input ``images`` (dynamic batch, fixed H×W as the official static 512×512 deploy config), output ``logits``;
    verified with onnxruntime on a batch of 3 (RuntimeError above ``atol``). Re-parameterize first for the
    deploy graph."""
    from ...export import export_onnx as export_model

    return export_model(model, path, (3, *image_size), opset=opset, verify=verify, atol=atol, exporter="torchscript")

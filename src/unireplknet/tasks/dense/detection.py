"""UniRepLKNet as an object-detection / instance-segmentation backbone for torchvision's detectors.

One call builds a detector on the official features mode (four stage maps, strides 4–32, each through its
own channels-first LayerNorm ``norm{i}``) and a feature pyramid::

    from unireplknet.tasks.dense import detection
    model = detection.maskrcnn("unireplknet_t", num_classes=80, checkpoint="unireplknet_t_in1k_224_acc83.21.pth")

``num_classes`` counts object categories *without* background; labels are 1 … num_classes (torchvision's
convention, 0 is background). The builders accept an official classification checkpoint (classifier dropped,
everything else strict) or an MMDetection/MMSegmentation checkpoint (``state_dict`` with ``backbone.``
prefix, only the backbone kept). :func:`unireplknet.reparameterize` fuses the backbone inside a built
detector in one call.

Also here: COCO box/mask AP through pycocotools (pip extra ``detection``); the COCO-format dataset is
:mod:`unireplknet.data.coco`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ...data.coco import CocoDetectionDataset, require_pycocotools
from ...model import UniRepLKNet
from .backbone_utils import (UniRepLKNetFPN, anchor_generator, backbone_body, check_detector_args,
                             require_torchvision)

__all__ = [
    "fasterrcnn",
    "maskrcnn",
    "retinanet",
    "fcos",
    "build_detector",
    "DETECTORS",
    "coco_evaluate",
    "export_onnx",
    "verify_onnx",
    "predict_coco",
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def _rcnn(
    kind: str,
    model: Union[str, UniRepLKNet],
    num_classes: int,
    *,
    checkpoint: Optional[PathLike] = None,
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
    min_size: int = 800,
    max_size: int = 1333,
    **detector_kwargs: Any,
) -> nn.Module:
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
    from torchvision.ops import MultiScaleRoIAlign

    check_detector_args(num_classes, min_size, max_size, anchor_sizes, "P2-P6")
    backbone = UniRepLKNetFPN(backbone_body(model, checkpoint, model_kwargs, drop_path_rate, with_cp, deploy),
                              fpn_channels, (0, 1, 2, 3), "maxpool")
    # The recipe's 4conv-1fc box head with normalisation (ConvFCBBoxHead; torchvision's "v2" head).
    box_head = FastRCNNConvFCHead((fpn_channels, 7, 7), [box_head_channels] * box_head_convs, [representation_size],
                                  norm_layer=nn.BatchNorm2d)
    common = dict(
        num_classes=None, min_size=min_size, max_size=max_size,
        rpn_anchor_generator=anchor_generator(anchor_sizes, octave_scales=False),
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2),
        box_head=box_head, box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
    )
    common.update(detector_kwargs)
    if kind == "faster":
        return FasterRCNN(backbone, **common)
    mask_head = MaskRCNNHeads(fpn_channels, [mask_head_channels] * 4, 1, norm_layer=nn.BatchNorm2d)
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    return MaskRCNN(backbone, mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2), mask_head=mask_head,
                    mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes + 1),
                    **common)


def fasterrcnn(model: Union[str, UniRepLKNet] = "unireplknet_t", num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """Faster R-CNN + FPN (P2–P6, 4conv-1fc box head) on a UniRepLKNet.

    Keywords: ``checkpoint``, ``model_kwargs``, ``drop_path_rate``, ``with_cp``, ``deploy`` (backbone);
    ``fpn_channels``, ``anchor_sizes`` (five base sizes), ``box_head_convs``, ``box_head_channels``,
    ``representation_size``, ``min_size``, ``max_size``; anything else goes to torchvision's ``FasterRCNN``.
    """
    require_torchvision()
    return _rcnn("faster", model, num_classes, **kwargs)


def maskrcnn(model: Union[str, UniRepLKNet] = "unireplknet_t", num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """Mask R-CNN + FPN on a UniRepLKNet (keywords as :func:`fasterrcnn`, plus ``mask_head_channels``)."""
    require_torchvision()
    return _rcnn("mask", model, num_classes, **kwargs)


def _single_stage(
    kind: str,
    model: Union[str, UniRepLKNet],
    num_classes: int,
    *,
    checkpoint: Optional[PathLike] = None,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    drop_path_rate: float = 0.0,
    with_cp: bool = False,
    deploy: bool = False,
    fpn_channels: int = 256,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    min_size: int = 800,
    max_size: int = 1333,
    **detector_kwargs: Any,
) -> nn.Module:
    from torchvision.models.detection import FCOS, RetinaNet

    check_detector_args(num_classes, min_size, max_size, anchor_sizes, "P3-P7")
    # P3–P7: stages 1–3 (strides 8–32) and two extra levels from P5, as torchvision's own RetinaNet/FCOS.
    backbone = UniRepLKNetFPN(backbone_body(model, checkpoint, model_kwargs, drop_path_rate, with_cp, deploy),
                              fpn_channels, (1, 2, 3), "p6p7")
    if kind == "retina":
        return RetinaNet(backbone, num_classes + 1, min_size=min_size, max_size=max_size,
                         anchor_generator=anchor_generator(anchor_sizes, octave_scales=True), **detector_kwargs)
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if fpn_channels % 32:
        raise ValueError(f"FCOS heads use GroupNorm with 32 groups: fpn_channels must be a multiple of 32, got {fpn_channels}")
    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((1.0,),) * len(anchor_sizes))
    return FCOS(backbone, num_classes + 1, min_size=min_size, max_size=max_size, anchor_generator=anchors,
                **detector_kwargs)


def retinanet(model: Union[str, UniRepLKNet] = "unireplknet_t", num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """RetinaNet + FPN (P3–P7) on a UniRepLKNet (keywords as :func:`fasterrcnn`, minus the R-CNN heads)."""
    require_torchvision()
    return _single_stage("retina", model, num_classes, **kwargs)


def fcos(model: Union[str, UniRepLKNet] = "unireplknet_t", num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """FCOS + FPN (P3–P7) on a UniRepLKNet (keywords as :func:`retinanet`)."""
    require_torchvision()
    return _single_stage("fcos", model, num_classes, **kwargs)


def cascade_mask_rcnn(model: Union[str, UniRepLKNet] = "unireplknet_t", num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """Cascade Mask R-CNN, the paper's COCO detector (:func:`unireplknet.tasks.dense.cascade.cascade_mask_rcnn`)."""
    from .cascade import cascade_mask_rcnn as build

    return build(model, num_classes, **kwargs)


#: Detector builders by name (the ``--detector`` choices of the command line).
DETECTORS = {"fasterrcnn": fasterrcnn, "maskrcnn": maskrcnn, "retinanet": retinanet, "fcos": fcos,
             "cascade_mask_rcnn": cascade_mask_rcnn}
#: The detectors that predict (and train on) instance masks.
MASK_DETECTORS = ("maskrcnn", "cascade_mask_rcnn")


def build_detector(name: str, model: Union[str, UniRepLKNet], num_classes: int, **kwargs: Any) -> nn.Module:
    """A detector by name: ``fasterrcnn``, ``maskrcnn``, ``retinanet``, ``fcos`` or ``cascade_mask_rcnn``."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name](model, num_classes, **kwargs)


# ----------------------------------------------------------------------------------------------- COCO mAP
@torch.no_grad()
def predict_coco(
    model: nn.Module,
    dataset: CocoDetectionDataset,
    indices: Optional[Sequence[int]] = None,
    batch_size: int = 4,
    device: Union[str, torch.device] = "cpu",
    mask_threshold: float = 0.5,
) -> List[Dict[str, Any]]:
    """COCO result entries (bbox x y w h, score, category_id, segmentation RLE when the model gives masks)."""
    require_pycocotools()
    from pycocotools import mask as mask_utils

    was_training = model.training
    model.eval()
    indices = list(range(len(dataset))) if indices is None else list(indices)
    results: List[Dict[str, Any]] = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        images = [dataset.load_image(i).to(device) for i in chunk]
        outputs = model(images)
        for i, out in zip(chunk, outputs):
            image_id = int(dataset.images[i]["id"])
            boxes = out["boxes"].cpu().numpy()
            scores = out["scores"].cpu().numpy()
            labels = out["labels"].cpu().numpy()
            masks = out.get("masks")
            if masks is not None:
                masks = (masks[:, 0] > mask_threshold).cpu().numpy()
            for k in range(len(boxes)):
                label = int(labels[k])
                if label < 1 or label > len(dataset.cat_ids):
                    continue  # a background / unused class index
                x0, y0, x1, y1 = (float(v) for v in boxes[k])
                entry = {"image_id": image_id, "category_id": dataset.cat_ids[label - 1],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[k])}
                if masks is not None:
                    rle = mask_utils.encode(np.asfortranarray(masks[k].astype(np.uint8)))
                    rle["counts"] = rle["counts"].decode("ascii")
                    entry["segmentation"] = rle
                results.append(entry)
    model.train(was_training)
    return results


def coco_evaluate(
    model: nn.Module,
    dataset: CocoDetectionDataset,
    batch_size: int = 4,
    device: Union[str, torch.device] = "cpu",
    dist_info: Any = None,
) -> Dict[str, float]:
    """COCO box (and mask, for Mask R-CNN) AP / AP50 / AP75 in percent over ``dataset``, via pycocotools.

    Under torchrun every rank predicts its share of the images and rank 0 scores them all (the others get the
    same numbers through a broadcast).
    """
    from ...engine.distributed import all_gather_object

    rank, world = (dist_info.rank, dist_info.world_size) if dist_info is not None else (0, 1)
    mine = predict_coco(model, dataset, range(rank, len(dataset), world), batch_size, device)
    results = [r for part in all_gather_object(mine) for r in part]
    heads = getattr(model, "roi_heads", None)
    with_masks = heads is not None and hasattr(heads, "has_mask") and heads.has_mask()
    metrics = _score(dataset, results, with_masks)
    return metrics


def _score(dataset: CocoDetectionDataset, results: List[Dict[str, Any]], with_masks: bool = False
           ) -> Dict[str, float]:
    """COCO metrics of ``results``; mask AP too when they carry masks or ``with_masks`` (a mask model that
    detected nothing scores mask AP 0, not no mask AP)."""
    import contextlib
    import io

    require_pycocotools()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints; the library stays quiet
        gt = COCO(str(dataset.ann_file))
    metrics: Dict[str, float] = {"detections": float(len(results))}
    iou_types = ["bbox"] + (["segm"] if with_masks or (results and "segmentation" in results[0]) else [])
    for iou_type in iou_types:
        prefix = "box" if iou_type == "bbox" else "mask"
        if not results:
            metrics.update({f"{prefix}_AP": 0.0, f"{prefix}_AP50": 0.0, f"{prefix}_AP75": 0.0})
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(results)
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [max(float(s), 0.0) * 100 for s in ev.stats]  # -1 (no ground truth of a size) counts as 0
        metrics.update({f"{prefix}_AP": stats[0], f"{prefix}_AP50": stats[1], f"{prefix}_AP75": stats[2],
                        f"{prefix}_APs": stats[3], f"{prefix}_APm": stats[4], f"{prefix}_APl": stats[5]})
    return metrics


# ----------------------------------------------------------------------------------------------- ONNX
def export_onnx(
    model: nn.Module,
    path: PathLike,
    image_size: Tuple[int, int] = (800, 1333),
    opset: int = 17,
    verify: bool = True,
    atol: float = 1e-3,
) -> Dict[str, Any]:
    """Export a torchvision detector (one image per call: ``image`` C×H×W in [0, 1]) to ONNX and check it.

    Re-parameterize first (:func:`unireplknet.reparameterize`) for the deploy graph. Outputs are ``boxes``,
    ``labels``, ``scores`` (+ ``masks`` for Mask R-CNN) after the detector's own NMS. With ``verify`` a second
    random image of the same size is run through onnxruntime and PyTorch and the largest box difference is
    returned (RuntimeError above ``atol``, or if the detection counts differ).
    """
    import warnings as _warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu")
    h, w = image_size
    outputs = ["boxes", "labels", "scores"] + (["masks"] if getattr(model, "roi_heads", None) is not None
                                               and model.roi_heads.has_mask() else [])
    g = torch.Generator().manual_seed(0)
    example = torch.rand(3, h, w, generator=g)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # tracer warnings of torchvision's detection code are expected
        torch.onnx.export(model, ([example],), str(path), opset_version=opset, dynamo=False,
                          input_names=["image"], output_names=outputs)
    info: Dict[str, Any] = dict(path=path, opset=opset, outputs=outputs, max_abs_diff=None)
    if verify:
        info.update(verify_onnx(path, model, torch.rand(3, h, w, generator=g), atol))
    return info


def verify_onnx(path: PathLike, model: nn.Module, image: torch.Tensor, atol: float = 1e-3) -> Dict[str, Any]:
    """Run ``image`` through the ONNX file (onnxruntime) and the PyTorch detector; compare the detections."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("ONNX verification needs onnxruntime: pip install 'unireplknet[onnx]'") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # shape warnings of data-dependent outputs are expected
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    with torch.no_grad():
        want = model.eval()([image])[0]
    if got[0].shape != tuple(want["boxes"].shape):
        raise RuntimeError(f"ONNX detector {path} returned {got[0].shape[0]} boxes, PyTorch {len(want['boxes'])}")
    diff = float(np.abs(got[0] - want["boxes"].numpy()).max()) if len(got[0]) else 0.0
    if diff > atol:
        raise RuntimeError(f"ONNX detector {path} differs from PyTorch by {diff:.3g} (> {atol})")
    return dict(max_abs_diff=diff, detections=int(got[0].shape[0]))

"""A timm model as the backbone of det-train / seg-train (issue 16: a peer backbone through the same pipeline):
feature channels and strides from timm's feature_info reach the neck and heads, one training step through each
dense task, the command line end to end, and the refusals."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("torchvision")

from unireplknet.cli import main  # noqa: E402
from unireplknet.tasks.dense import backbone_utils
from unireplknet.tasks.dense import detection as det  # noqa: E402
from unireplknet.tasks.dense import segmentation as seg  # noqa: E402

# the small heads of the dense tasks' own tests, so both files train the same heads
from test_detection_train import DET_HEADS, SEG_HEADS  # noqa: E402

# timm's ConvNeXt at the scene demo's depths and widths (the peer of benchmarks/dense_peers.py)
PEER = "convnext_atto"
PEER_KWARGS = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}


def _timm_features(name, **kwargs):
    import timm

    return timm.create_model(name, features_only=True, **kwargs).feature_info


@pytest.mark.parametrize("name, kwargs", [(PEER, PEER_KWARGS), ("resnet18", {})])
def test_feature_channels_and_strides_reach_the_neck_and_heads(name, kwargs):
    info = _timm_features(name, **kwargs)
    # the last four levels: for resnet18 the stride-2 stem level is left out
    want_dims, want_strides = info.channels()[-4:], info.reduction()[-4:]
    assert want_strides == [4, 8, 16, 32]
    body = backbone_utils.build_backbone(name, model_kwargs=kwargs)
    assert isinstance(body, backbone_utils.TimmFeatureBackbone)
    assert list(body.dims) == want_dims and list(body.strides) == want_strides

    x = torch.rand(2, 3, 64, 96)
    feats = body.forward_intermediates(x)
    assert [f.shape[1] for f in feats] == want_dims
    assert [(f.shape[2], f.shape[3]) for f in feats] == [(64 // s, 96 // s) for s in want_strides]

    model = det.maskrcnn(name, num_classes=3, model_kwargs=kwargs, fpn_channels=16, min_size=64, max_size=96)
    fpn = model.backbone.fpn
    assert [blk[0].in_channels for blk in fpn.inner_blocks] == want_dims  # one lateral conv per timm level
    pyramid = model.backbone(x)
    levels = [tuple(p.shape[-2:]) for k, p in pyramid.items() if k != "pool"]
    assert levels == [(64 // s, 96 // s) for s in want_strides]
    single = det.retinanet(name, num_classes=3, model_kwargs=kwargs, fpn_channels=16, min_size=64, max_size=96)
    assert [blk[0].in_channels for blk in single.backbone.fpn.inner_blocks] == want_dims[1:]  # P3-P5 from levels 1-3

    segmenter = seg.upernet(name, 4, model_kwargs=kwargs, channels=16, aux_channels=8)
    assert [c[0].in_channels for c in segmenter.decode_head.lateral_convs] == want_dims[:-1]
    assert segmenter.auxiliary_head.convs[0][0].in_channels == want_dims[2]  # the FCN head on the third level
    logits, aux = segmenter(torch.rand(2, 3, 50, 70), with_aux=True)
    assert logits.shape == aux.shape == (2, 4, 50, 70)


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_one_training_step_through_each_dense_task(tmp_path, task):
    from unireplknet.engine.task import StepContext
    from unireplknet.tasks.dense.task import DenseTrainConfig, dense_task

    heads = json.loads(DET_HEADS if task == "detection" else SEG_HEADS)
    cfg = DenseTrainConfig(task=task, model=PEER, model_kwargs=PEER_KWARGS, head_kwargs=heads, scenes_train=2,
                           scenes_val=2, batch_size=2, output=str(tmp_path)).resolved()
    assert cfg.layer_decay == 1.0  # layer decay follows UniRepLKNet's blocks: a peer trains at one rate
    t = dense_task(cfg)
    data = t.build_data(cfg, 0)
    model = t.build_model(cfg, data, pretrained=False)
    body = model.backbone.body if task == "detection" else model.backbone
    assert isinstance(body, backbone_utils.TimmFeatureBackbone)
    model.train()
    batch = data.train_collate([data.train[i] for i in range(2)])
    before = {k: v.clone() for k, v in body.state_dict().items() if v.dtype.is_floating_point}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = t.training_loss(model, batch, StepContext(device=torch.device("cpu")))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    opt.step()
    changed = [k for k, v in body.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert changed, "the loss gave the timm backbone no gradient"


def test_command_line_end_to_end_with_a_timm_backbone(tmp_path, capsys):
    run = tmp_path / "det"
    assert main(["det-train", "--model", "resnet18", "--head-kwargs", DET_HEADS, "--output", str(run),
                 "--batch-size", "2", "--scenes-train", "2", "--scenes-val", "2", "--epochs", "1", "--no-onnx"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    # the re-parameterized copy (nothing to fuse in a ResNet) scores what the trained one does
    assert summary["deploy_structure"]["box_AP"] == pytest.approx(summary["train_structure"]["box_AP"], abs=1e-6)
    capsys.readouterr()
    # det-eval rebuilds the ResNet detector from the run's own config and loads its weights strictly
    assert main(["det-eval", str(run / "deploy.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["box_AP"] == pytest.approx(summary["deploy_structure"]["box_AP"])
    run = tmp_path / "seg"
    assert main(["seg-train", "--model", PEER, "--model-kwargs", json.dumps(PEER_KWARGS), "--head-kwargs", SEG_HEADS,
                 "--output", str(run), "--batch-size", "2", "--scenes-train", "2", "--scenes-val", "2",
                 "--epochs", "1", "--no-onnx"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["seg-eval", str(run / "last.pth"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mIoU"] == pytest.approx(summary["train_structure"]["mIoU"])


def test_timm_checkpoint_loads_into_the_peer_backbone(tmp_path):
    import timm
    from safetensors.torch import save_file

    full = timm.create_model(PEER, **PEER_KWARGS)  # a classifier checkpoint of the same model
    path = tmp_path / "peer.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    body = backbone_utils.build_backbone(PEER, model_kwargs=PEER_KWARGS, checkpoint=path)
    x = torch.rand(1, 3, 64, 64)
    full.eval(), body.eval()
    want = full.forward_intermediates(x, indices=4, intermediates_only=True)
    for got, ref in zip(body.forward_intermediates(x), want):
        torch.testing.assert_close(got, ref)


class _Linear(torch.nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_path_rate: float = 0.0):
        super().__init__()
        self.fc = torch.nn.Linear(in_chans, num_classes)


def dense_peers_no_features_model(pretrained: bool = False, **kwargs):
    """A timm entry point (registered by the test below) whose model has no feature extraction at all."""
    return _Linear(**kwargs)


_NO_FEATURES = dense_peers_no_features_model


def test_refusals_name_the_problem_and_the_fix(tmp_path):
    import timm
    from timm.models import register_model

    # a plain ViT: every timm feature level has stride 16, no pyramid
    with pytest.raises(ValueError, match=r"strides \[16, 16, 16, 16\].*hierarchical backbone"):
        backbone_utils.build_backbone("vit_tiny_patch16_224", model_kwargs={"depth": 4, "embed_dim": 32, "num_heads": 2})

    # a timm model whose constructor knows nothing of features_only
    if not timm.is_model(_NO_FEATURES.__name__):
        register_model(_NO_FEATURES)
    with pytest.raises(ValueError, match="features_only support"):
        backbone_utils.build_backbone(_NO_FEATURES.__name__)

    from unireplknet.tasks.dense.task import DenseTrainConfig

    with pytest.raises(ValueError, match="layer-decay.*timm model"):
        DenseTrainConfig(task="detection", model=PEER, layer_decay=0.8).resolved()

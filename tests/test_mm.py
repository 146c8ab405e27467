"""OpenMMLab integration: the lr-decay rule (no MM needed), and registration/building where mmengine is installed.

With mmengine (the test extra): the official backbone config keys through mmengine's MODELS, checked against
the official reference data, and the lr-decay optimizer constructor through OPTIM_WRAPPER_CONSTRUCTORS /
build_optim_wrapper. With MMSegmentation 1.x importable (a separate environment here, see docs/dense.md):
the registration in mmseg's MODELS and the recipe's EncoderDecoder + UPerHead + FCNHead on our backbone.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from unireplknet.tasks.dense import mm

from conftest import randomize_bn_and_scales, rel_err

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13,), (3,)))

# The official layer ids (the official `detection/` and `segmentation/` configs, docs/dense.md): stem 0, stage0 1, ds1/stage1 2, ds2 3, stage2 block j 3 + j//3,
# ds3/stage3 num_layers, everything else num_layers + 1.
OFFICIAL_LAYER_WISE = {
    "backbone.downsample_layers.0.0.weight": 0,
    "backbone.downsample_layers.0.4.bias": 0,
    "backbone.stages.0.2.pwconv1.1.weight": 1,
    "backbone.downsample_layers.1.0.weight": 2,
    "backbone.stages.1.0.dwconv.lk_origin.weight": 2,
    "backbone.downsample_layers.2.1.weight": 3,
    "backbone.stages.2.0.gamma": 3,
    "backbone.stages.2.2.gamma": 3,
    "backbone.stages.2.3.gamma": 4,
    "backbone.stages.2.17.norm.weight": 8,
    "backbone.stages.2.26.norm.weight": 11,
    "backbone.downsample_layers.3.0.weight": 12,
    "backbone.stages.3.2.se.down.weight": 12,
    "backbone.norm3.weight": 13,
    "neck.fpn_convs.0.conv.weight": 13,
    "decode_head.conv_seg.weight": 13,
}
OFFICIAL_STAGE_WISE = {
    "backbone.downsample_layers.0.0.weight": 0,
    "backbone.downsample_layers.3.0.weight": 0,
    "backbone.stages.0.0.gamma": 1,
    "backbone.stages.2.20.gamma": 3,
    "backbone.stages.3.1.gamma": 4,
    "rpn_head.rpn_conv.weight": 13,
}


def test_layer_ids_follow_the_official_rule():
    for name, want in OFFICIAL_LAYER_WISE.items():
        assert mm.get_layer_id(name, 12, "layer_wise") == want, name
    for name, want in OFFICIAL_STAGE_WISE.items():
        assert mm.get_layer_id(name, 12, "stage_wise") == want, name
    assert mm.get_layer_id("backbone.body.stages.2.5.gamma", 12, prefix="backbone.body.") == 4  # torchvision
    with pytest.raises(ValueError, match="decay_type"):
        mm.get_layer_id("backbone.stages.0.0.gamma", 12, "block_wise")


class _Segmentor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = mm.UniRepLKNetBackbone(**TINY, use_sync_bn=False)
        self.decode_head = nn.Conv2d(64, 4, 1)


def test_param_groups_scales_and_weight_decay():
    model = _Segmentor()
    groups = mm.layer_decay_param_groups(model, lr=1e-4, weight_decay=0.05, decay_rate=0.9, num_layers=12)
    seen = set()
    for g in groups:
        for name, p in zip(g["param_names"], g["params"]):
            seen.add(name)
            layer = mm.get_layer_id(name, 12)
            assert g["lr_scale"] == pytest.approx(0.9 ** (13 - layer))
            assert g["lr"] == pytest.approx(1e-4 * 0.9 ** (13 - layer))
            no_wd = p.ndim == 1 or name.endswith(".bias")  # the recipe: 1-D params and biases
            assert g["weight_decay"] == (0.0 if no_wd else 0.05), name
    assert seen == {n for n, _ in model.named_parameters()}
    head = next(g for g in groups if "decode_head.conv_seg.weight" in g["param_names"] or
                "decode_head.weight" in g["param_names"])
    assert head["lr_scale"] == 1.0
    dw = mm.layer_decay_param_groups(model, 1e-4, 0.05, 0.9, 12, dw_scale=0.5)
    for g in dw:
        if any("dwconv" in n for n in g["param_names"]):
            assert all("dwconv" in n for n in g["param_names"]) and g["group_name"].endswith("_dw")


def test_backbone_has_the_official_interface(tmp_path):
    b = mm.UniRepLKNetBackbone(**TINY, drop_path_rate=0.1, with_cp=True, deploy=False, init_cfg=None).eval()
    assert all(isinstance(m, nn.SyncBatchNorm) for m in b.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    out = b(torch.randn(1, 3, 64, 64))
    assert isinstance(out, tuple) and [o.shape[-1] for o in out] == [16, 8, 4, 2]
    randomize_bn_and_scales(b)
    path = tmp_path / "det.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in b.state_dict().items()}}, path)
    loaded = mm.UniRepLKNetBackbone(**TINY, init_cfg=dict(type="Pretrained", checkpoint=str(path))).eval()
    assert not loaded.is_init  # the constructor only builds modules
    assert not all(torch.equal(loaded.state_dict()[k], v) for k, v in b.state_dict().items())
    loaded.init_weights()  # what MMEngine's runner calls
    assert loaded.is_init
    for k, v in b.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(ValueError, match="Pretrained"):
        mm.UniRepLKNetBackbone(**TINY, init_cfg=dict(type="Kaiming"))


def test_registration_and_optimizer_constructor_with_mmengine():
    pytest.importorskip("mmengine")
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    assert MODELS.module_dict["UniRepLKNetBackbone"] is mm.UniRepLKNetBackbone
    cfg = dict(type="UniRepLKNetBackbone", depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], drop_path_rate=0.3,
               kernel_sizes=[[3], [13], [13], [3]], deploy=False, with_cp=False, init_cfg=None)
    backbone = MODELS.build(cfg)
    assert isinstance(backbone, mm.UniRepLKNetBackbone) and backbone.drop_path_rate == 0.3
    assert "UniRepLKNetLearningRateDecayOptimizerConstructor" in OPTIM_WRAPPER_CONSTRUCTORS.module_dict

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.neck = nn.Conv2d(64, 8, 1)

    model = Detector()
    wrapper = build_optim_wrapper(model, dict(
        type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
        constructor="UniRepLKNetLearningRateDecayOptimizerConstructor",
        paramwise_cfg=dict(decay_rate=0.8, decay_type="layer_wise", num_layers=12)))
    names = {id(p): n for n, p in model.named_parameters()}
    for g in wrapper.optimizer.param_groups:
        for p in g["params"]:
            layer = mm.get_layer_id(names[id(p)], 12)
            assert g["lr"] == pytest.approx(1e-4 * 0.8 ** (13 - layer))
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)


@pytest.mark.parametrize("package", ["mmdet", "mmseg"])
def test_registered_in_the_framework_registries(package):
    registry = pytest.importorskip(f"{package}.registry")
    assert registry.MODELS.module_dict["UniRepLKNetBackbone"] is mm.UniRepLKNetBackbone
    assert mm.REGISTERED[f"{package}.MODELS:UniRepLKNetBackbone"] == "UniRepLKNetBackbone"


def _official_features(io, i: int) -> torch.Tensor:
    """The official stage output, through the features mode's LayerNorm (fresh: weight 1, bias 0, eps 1e-6)."""
    x = io[f"stage{i}_train"]
    return torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


def test_official_config_keys_through_the_mmengine_registry(reference):
    """An official-style backbone config built by mmengine's MODELS: every key takes effect, and init_cfg loads
    the official checkpoint so the four outputs are the official stage outputs (reference data)."""
    pytest.importorskip("mmengine")
    from mmengine.registry import MODELS

    kw = reference["kwargs"]
    ckpt = str(reference["dir"] / "unireplknet_a.train.safetensors")
    cfg = dict(type="UniRepLKNetBackbone", depths=kw["depths"], dims=kw["dims"], drop_path_rate=0.3,
               kernel_sizes=None, deploy=False, with_cp=True, attempt_use_lk_impl=False, use_sync_bn=False,
               init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    backbone = MODELS.build(cfg)
    backbone.init_weights()  # what mmengine's runner calls: it loads init_cfg['checkpoint']
    # kernel_sizes=None: the official default, read off the official state-dict shapes of UniRepLKNet-A
    shapes = dict(reference["keys"]["unireplknet_a"]["train"])
    for i, depth in enumerate(kw["depths"]):
        for j in range(depth):
            block = backbone.stages[i][j]
            key = f"stages.{i}.{j}.dwconv." + ("lk_origin.weight" if f"stages.{i}.{j}.dwconv.lk_origin.weight"
                                                 in shapes else "weight")
            assert block.kernel_size == shapes[key][-1], key
            assert block.with_cp  # with_cp reaches every block
    # drop_path_rate: linearly increasing from 0 over all blocks (the official rule)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in backbone.stages for b in s]
    assert rates == pytest.approx(torch.linspace(0, 0.3, sum(kw["depths"])).tolist())
    # init_cfg: every official tensor but the classifier's is loaded
    sd = backbone.state_dict()
    for k, v in reference["train"].items():
        if not k.startswith(("head.", "norm.")):
            assert torch.equal(sd[k], v), k
    with torch.no_grad():
        out = backbone.eval()(reference["io"]["input"])
    assert isinstance(out, tuple) and len(out) == 4
    for i in range(4):
        assert rel_err(out[i], _official_features(reference["io"], i)) < 1e-5, i
    # with_cp in training: checkpointed blocks give the gradients of plain ones
    x = reference["io"]["input"][:1, :, :64, :64]
    plain = MODELS.build({**cfg, "with_cp": False, "drop_path_rate": 0.0})
    cp = MODELS.build({**cfg, "drop_path_rate": 0.0})
    plain.init_weights(), cp.init_weights()  # both from the official checkpoint
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    grads = []
    for model in (plain, cp):
        model.train()
        torch.utils.checkpoint.checkpoint = counting
        try:
            sum(o.square().mean() for o in model(x.clone().requires_grad_(True))).backward()
        finally:
            torch.utils.checkpoint.checkpoint = original
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert len(calls) == sum(kw["depths"])  # only the with_cp model checkpoints, every block once
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-7), n


def test_deploy_key_builds_the_fused_structure(reference):
    """deploy=True + init_cfg with the training-layout checkpoint: the fused model gives the official outputs."""
    pytest.importorskip("mmengine")
    from mmengine.registry import MODELS

    kw = reference["kwargs"]
    backbone = MODELS.build(dict(type="UniRepLKNet", depths=kw["depths"], dims=kw["dims"], deploy=True,
                                 use_sync_bn=False, init_cfg=dict(
                                     type="Pretrained", checkpoint=str(reference["dir"] / "unireplknet_a.train.safetensors"))))
    backbone.init_weights()  # what MMEngine's runner calls after building the model
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())
    with torch.no_grad():
        out = backbone.eval()(reference["io"]["input"])
    for i in range(4):
        assert rel_err(out[i], _official_features(reference["io"], i)) < 1e-4, i


def test_optimizer_constructor_from_mmengine_registry():
    """The constructor as mmengine finds it (OPTIM_WRAPPER_CONSTRUCTORS, build_optim_wrapper) with the official
    paramwise_cfg: lr and weight decay of named parameters from the official rule's table, a working step."""
    pytest.importorskip("mmengine")
    from mmengine.optim import OptimWrapper, build_optim_wrapper
    from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    class Segmentor(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = MODELS.build(dict(type="UniRepLKNetBackbone", depths=[1, 1, 4, 1], dims=[8, 16, 32, 64],
                                              kernel_sizes=[[3], [13], [13, 3, 3, 3], [3]], use_sync_bn=False))
            self.decode_head = nn.Conv2d(64, 4, 1)

        def forward(self, x):
            return self.decode_head(self.backbone(x)[-1])

    model = Segmentor()
    names = {id(p): n for n, p in model.named_parameters()}
    optim_cfg = dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    paramwise = dict(decay_rate=0.8, decay_type="layer_wise", num_layers=12)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="UniRepLKNetLearningRateDecayOptimizerConstructor",
        optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=optim_cfg), paramwise_cfg=paramwise))
    assert type(constructor).__name__ == "UniRepLKNetLearningRateDecayOptimizerConstructor"
    # the official layer ids (stem 0, stage 0 → 1, stage 2 block j → 3 + j // 3, stage 3 → 12, rest 13)
    want = {"backbone.downsample_layers.0.0.weight": (0, 0.05), "backbone.downsample_layers.0.0.bias": (0, 0.0),
            "backbone.stages.0.0.pwconv1.1.weight": (1, 0.05), "backbone.stages.1.0.gamma": (2, 0.0),
            "backbone.stages.2.2.pwconv2.0.weight": (3, 0.05), "backbone.stages.2.3.pwconv2.0.weight": (4, 0.05),
            "backbone.downsample_layers.3.0.weight": (12, 0.05), "backbone.norm3.weight": (13, 0.0),
            "decode_head.weight": (13, 0.05), "decode_head.bias": (13, 0.0)}
    for wrapper in (constructor(model), build_optim_wrapper(model, dict(
            type="OptimWrapper", optimizer=optim_cfg, constructor="UniRepLKNetLearningRateDecayOptimizerConstructor",
            paramwise_cfg=paramwise))):
        assert isinstance(wrapper, OptimWrapper) and isinstance(wrapper.optimizer, torch.optim.AdamW)
        found = {}
        for g in wrapper.optimizer.param_groups:
            for p in g["params"]:
                found[names[id(p)]] = (g["lr"], g["weight_decay"])
        assert set(found) == set(names.values())  # every parameter exactly in one group
        assert sum(len(g["params"]) for g in wrapper.optimizer.param_groups) == len(names)
        for name, (layer, wd) in want.items():
            assert name in found, (name, sorted(found)[:8])
            assert found[name][0] == pytest.approx(1e-4 * 0.8 ** (13 - layer)), name
            assert found[name][1] == wd, name
        before = model.decode_head.weight.detach().clone()
        wrapper.update_params(model(torch.randn(2, 3, 64, 64)).square().mean())
        assert not torch.equal(before, model.decode_head.weight)


def _import_mmseg_models():
    """``mmseg.models``, or skip. With mmcv-lite (mmcv built with MMCV_WITH_OPS=0) ``mmseg.models`` cannot import:
    ``mmseg.utils.mask_classification`` imports ``mmcv.ops``, which loads the compiled ``mmcv._ext`` at import.
    UperNet and the FCN head never call a compiled op, so there the missing module is replaced by a stub whose
    every op raises — a call would fail this test, not pass silently."""
    import importlib.util
    import sys
    import types

    pytest.importorskip("mmseg")
    pytest.importorskip("mmcv")
    if importlib.util.find_spec("mmcv._ext") is None and "mmcv._ext" not in sys.modules:
        stub = types.ModuleType("mmcv._ext")

        def missing(name: str):
            if name.startswith("__"):
                raise AttributeError(name)

            def op(*args, **kwargs):
                raise RuntimeError(f"compiled mmcv op {name} called, but mmcv was built without ops")

            return op

        stub.__getattr__ = missing  # type: ignore[attr-defined]
        sys.modules["mmcv._ext"] = stub
    return pytest.importorskip("mmseg.models")


def test_mmseg_encoder_decoder_with_upernet_on_our_backbone():
    """MMSegmentation 1.x: the recipe's EncoderDecoder (UPerHead + FCNHead aux) on the registered backbone,
    built from a config: forward, loss (and a backward) and predict."""
    _import_mmseg_models()
    from mmengine.config import ConfigDict
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules()
    mm.register_all()
    norm_cfg = dict(type="BN", requires_grad=True)
    dims = [16, 32, 64, 128]
    cfg = ConfigDict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64)),
        backbone=dict(type="UniRepLKNetBackbone", depths=[1, 1, 2, 1], dims=dims, drop_path_rate=0.1,
                      kernel_sizes=[[7], [7], [5, 5], [3]], deploy=False, with_cp=False, use_sync_bn=False),
        decode_head=dict(type="UPerHead", in_channels=dims, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=32, dropout_ratio=0.1, num_classes=4, norm_cfg=norm_cfg, align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(type="FCNHead", in_channels=dims[2], in_index=2, channels=16, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=4, norm_cfg=norm_cfg,
                            align_corners=False,
                            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode="whole"))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    assert isinstance(model.backbone, mm.UniRepLKNetBackbone)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 64, 64)))
        s.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(s)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    feats = model.extract_feat(data["inputs"])
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    losses = model(**data, mode="loss")
    assert {"decode.loss_ce", "aux.loss_ce"} <= set(losses)
    # an untrained 4-class head: cross-entropy near ln 4; the aux loss carries the recipe's weight 0.4
    assert 0.5 < float(losses["decode.loss_ce"]) < 3.0
    assert 0.2 < float(losses["aux.loss_ce"]) < 1.2
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert model.backbone.stages[0][0].pwconv1[1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(**model.data_preprocessor(dict(inputs=images, data_samples=samples), False), mode="predict")
    assert out[0].pred_sem_seg.data.shape == (1, 64, 64)

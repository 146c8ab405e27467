"""OpenMMLab integration: the lr-decay rule (no MM needed), and registration/building where mmengine is installed.

MMDetection 3.x / MMSegmentation 1.x need mmcv's compiled ops to build detectors or segmentors; where only
mmengine (+ mmcv-lite, mmdet, mmseg) is installed, these tests check the registries, building the backbone
from an official-style config, and the optimizer constructor through mmengine.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from unireplknet.tasks import mm

from conftest import randomize_bn_and_scales

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13,), (3,)))

# The official layer ids (SPEC section 5): stem 0, stage0 1, ds1/stage1 2, ds2 3, stage2 block j 3 + j//3,
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

"""The timm model API: creation by name, heads, features, checkpointing, layer groups, pretrained configs."""
from __future__ import annotations

import copy
import warnings

import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay
from timm.utils import reparameterize_model

import unireplknet
from unireplknet import UniRepLKNet
from conftest import randomize_bn_and_scales, rel_err, tiny_model


def test_every_variant_is_registered_with_official_pretrained_configs():
    names = timm.list_models("unireplknet_*")
    assert names == sorted(f"unireplknet_{v}" for v in unireplknet.VARIANTS)
    tags = set(timm.list_pretrained("unireplknet_*"))
    for v in "afpnts":
        assert f"unireplknet_{v}.in1k" in tags
    for v in ("s", "b", "l", "xl"):
        assert {f"unireplknet_{v}.in22k", f"unireplknet_{v}.in22k_ft_in1k_384"} <= tags


@pytest.mark.parametrize(
    "name, filename, size, crop, classes",
    [
        ("unireplknet_a.in1k", "unireplknet_a_in1k_224_acc77.03.pth", 224, 0.875, 1000),
        ("unireplknet_t.in1k", "unireplknet_t_in1k_224_acc83.21.pth", 224, 0.875, 1000),
        ("unireplknet_s.in22k_ft_in1k_384", "unireplknet_s_in22k_to_in1k_384_acc86.44.pth", 384, 1.0, 1000),
        ("unireplknet_xl.in22k", "unireplknet_xl_in22k_pretrain.pth", 192, 0.875, 21841),
    ],
)
def test_pretrained_cfg(name, filename, size, crop, classes):
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg.hf_hub_id == "DingXiaoH/UniRepLKNet" and cfg.hf_hub_filename == filename
    assert cfg.input_size == (3, size, size) and cfg.crop_pct == crop and cfg.num_classes == classes
    assert cfg.interpolation == "bicubic" and cfg.mean == (0.485, 0.456, 0.406)
    with torch.device("meta"):  # the config, not the weights, is under test
        model = timm.create_model(name.split(".")[0], pretrained_cfg=name.split(".")[1])
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, size, size)


def test_forward_features_head_and_classifier():
    model = tiny_model().eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 32, 2, 2)
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, 32)
    assert torch.allclose(model.forward_head(feats), model.head(pre))
    assert model.get_classifier() is model.head
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    assert torch.allclose(model(x), pre)  # num_classes=0: the pooled, normalised features


def test_num_classes_zero_from_timm():
    model = timm.create_model("unireplknet_a", num_classes=0).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 320)
    assert model.num_features == 320


def test_features_only():
    model = timm.create_model("unireplknet_a", features_only=True, out_indices=(0, 1, 2, 3)).eval()
    assert model.feature_info.channels() == [40, 80, 160, 320]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    x = torch.randn(1, 3, 96, 96)
    outs = model(x)
    assert [o.shape[-1] for o in outs] == [24, 12, 6, 3]
    # each map is its stage output through the stage's own channels-first LayerNorm (official features mode)
    inner = model.model
    stages = inner.forward_stages(x)
    for i, (o, s) in enumerate(zip(outs, stages)):
        u = s.mean(1, keepdim=True)
        var = (s - u).pow(2).mean(1, keepdim=True)
        expected = (s - u) / torch.sqrt(var + 1e-6)
        w, b = getattr(inner, f"norm{i}").weight, getattr(inner, f"norm{i}").bias
        assert torch.allclose(o, expected * w[:, None, None] + b[:, None, None], atol=1e-5)
    sub = timm.create_model("unireplknet_a", features_only=True, out_indices=(1, 3))
    assert sub.feature_info.channels() == [80, 320] and len(sub(x)) == 2


def test_forward_intermediates():
    model = tiny_model().eval()
    x = torch.randn(1, 3, 64, 64)
    final, inter = model.forward_intermediates(x)
    assert [t.shape[1] for t in inter] == [8, 16, 24, 32]
    assert torch.equal(final, model.forward_features(x))
    only = model.forward_intermediates(x, indices=[0, 2], intermediates_only=True, stop_early=True)
    assert len(only) == 2 and torch.equal(only[1], inter[2])


def test_official_features_mode_via_num_classes_none():
    model = tiny_model(num_classes=None).eval()
    assert not hasattr(model, "head") and hasattr(model, "norm3")
    outs = model(torch.randn(1, 3, 64, 64))
    assert isinstance(outs, list) and len(outs) == 4


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tiny_model(drop_path_rate=0.0)
    model2 = copy.deepcopy(model)
    model2.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    model2(x).sum().backward()
    for (n, p), p2 in zip(model.named_parameters(), model2.parameters()):
        assert torch.allclose(p.grad, p2.grad, atol=1e-6), n


def test_group_matcher_drives_layer_decay():
    model = timm.create_model("unireplknet_t")
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.8)
    scales = {g["lr_scale"] for g in groups}
    assert len(scales) > 10 and max(scales) == 1.0
    by_param = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    stem = by_param[id(model.downsample_layers[0][0].weight)]
    head = by_param[id(model.head.weight)]
    last_block = by_param[id(model.stages[3][2].pwconv1[1].weight)]
    assert stem < by_param[id(model.stages[1][0].pwconv1[1].weight)] < last_block < head == 1.0
    coarse = timm.models.group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == 6  # stem, 4 stages, then final norm + head


@torch.no_grad()
def test_timm_reparameterize_on_a_tiny_model_with_every_block_kind():
    model = randomize_bn_and_scales(tiny_model()).eval()
    x = torch.randn(2, 3, 64, 64)
    fused = reparameterize_model(model)
    assert fused.deploy and not model.deploy
    assert rel_err(fused(x), model(x)) < 1e-5
    deploy = tiny_model(deploy=True)
    deploy.load_state_dict(fused.state_dict(), strict=True)
    assert rel_err(deploy.eval()(x), model(x)) < 1e-5


@torch.no_grad()
def test_reparameterize_in_float64_is_exact_to_rounding():
    model = randomize_bn_and_scales(tiny_model()).double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    assert rel_err(unireplknet.reparameterize(model, inplace=False)(x), model(x)) < 1e-12


def test_different_num_classes_drops_head_with_warning_and_loads_the_rest(reference, tmp_path):
    path = tmp_path / "a.pth"
    torch.save({"model": reference["train"]}, path)
    with pytest.warns(UserWarning, match="head"):
        model = timm.create_model(
            "unireplknet_a", pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=str(path))
        )
    sd = model.state_dict()
    assert sd["head.weight"].shape == (10, 320)
    for k, v in reference["train"].items():
        if not k.startswith("head."):
            assert torch.equal(sd[k], v), k
    # the same file into a backbone: every key except the classifier loads, the stage norms stay fresh
    feats = timm.create_model("unireplknet_a", pretrained=True, features_only=True,
                              pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(feats.model.stages[2][0].pwconv1[1].weight, reference["train"]["stages.2.0.pwconv1.1.weight"])


def test_official_pretrained_flags_select_the_official_file(reference, tmp_path, monkeypatch):
    """in_1k_pretrained / in_22k_to_1k pick the official tag; offline, the error names the file to pass."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(unireplknet.PretrainedWeightsUnavailableError) as info:
        timm.create_model("unireplknet_a", in_1k_pretrained=True)
    msg = str(info.value)
    assert "unireplknet_a_in1k_224_acc77.03.pth" in msg and "pretrained_cfg_overlay" in msg
    with pytest.raises(unireplknet.PretrainedWeightsUnavailableError, match="unireplknet_s_in22k_to_in1k_384"):
        with torch.device("meta"):
            timm.create_model("unireplknet_s", in_22k_to_1k=True)
    with pytest.raises(ValueError, match="no official in22k checkpoint for unireplknet_a"):
        timm.create_model("unireplknet_a", in_22k_pretrained=True)
    # with a local file the flag loads it (the head of the in1k tag is 1000 classes)
    path = tmp_path / "unireplknet_a_in1k_224_acc77.03.pth"
    torch.save(reference["train"], path)
    model = timm.create_model("unireplknet_a", in_1k_pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(model.state_dict()["head.weight"], reference["train"]["head.weight"])


def test_official_constructor_arguments_are_accepted():
    model = UniRepLKNet(
        in_chans=1, num_classes=3, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), drop_path_rate=0.1,
        layer_scale_init_value=None, head_init_scale=0.001, kernel_sizes=((3,), (13,), (13,), (3,)),
        deploy=False, with_cp=True, use_sync_bn=False, attempt_use_lk_impl=False, disable_iGEMM=True,
    )
    assert model.stages[0][0].gamma is None and model.head.weight.abs().max() < 0.001
    sync = UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,), (13,), (13,), (3,)),
                       use_sync_bn=True)
    assert isinstance(sync.stages[1][0].norm, torch.nn.SyncBatchNorm)
    with pytest.raises(TypeError, match="unexpected keyword"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,),) * 4, dropout=0.1)


def test_every_depthwise_conv_is_a_plain_conv2d():
    """Plain nn.Conv2d (exact type, for type-keyed counters); the blocks dispatch them through unireplknet.ops
    (tests/test_tools_compat.py::test_depthwise_convs_are_plain_conv2d_and_still_run_through_ops)."""
    model = tiny_model()
    for fused in (model, unireplknet.reparameterize(copy.deepcopy(model))):
        dw = [m for m in fused.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
        assert dw and all(type(m) is torch.nn.Conv2d for m in dw)


def test_pretrained_true_asks_the_hub_for_the_official_file(reference, monkeypatch):
    """The download path: timm asks Hugging Face for DingXiaoH/UniRepLKNet/<official file>, and what comes back
    (an official pickle, tensors under `model`) loads strictly. The hub itself is replaced by the reference file."""
    import timm.models._builder as builder

    asked = []

    def fake_hub(repo_id, filename=None, **kwargs):
        asked.append((repo_id, filename))
        return {"model": dict(reference["train"])}

    monkeypatch.setattr(builder, "load_state_dict_from_hf", fake_hub)
    model = timm.create_model("unireplknet_a", pretrained=True).eval()
    assert asked == [("DingXiaoH/UniRepLKNet", "unireplknet_a_in1k_224_acc77.03.pth")]
    with torch.no_grad():
        assert rel_err(model(reference["io"]["input"]), reference["io"]["logits_train"]) < 1e-5


@pytest.mark.parametrize("in_chans", [1, 2])
def test_pretrained_with_other_input_channels_adapts_the_stem(reference, monkeypatch, in_chans):
    """Grey (or other-channel) fine-tuning from the RGB official weights: timm's first_conv rule applies — one channel
    gets the sum over RGB, others the RGB weights repeated and scaled by 3/in_chans — everything else loads unchanged."""
    import timm.models._builder as builder

    monkeypatch.setattr(builder, "load_state_dict_from_hf", lambda *a, **k: {"model": dict(reference["train"])})
    with pytest.warns(UserWarning, match="1000-class head does not fit the model's 10 classes"):
        model = timm.create_model("unireplknet_a", pretrained=True, in_chans=in_chans, num_classes=10)
    sd, rgb = model.state_dict(), reference["train"]["downsample_layers.0.0.weight"]
    want = rgb.sum(1, keepdim=True) if in_chans == 1 else rgb[:, :in_chans] * (3 / in_chans)
    torch.testing.assert_close(sd["downsample_layers.0.0.weight"], want, rtol=0, atol=1e-7)
    for k, v in reference["train"].items():
        if not k.startswith(("head.", "downsample_layers.0.0.weight")):
            assert torch.equal(sd[k], v), k
    assert sd["head.weight"].shape == (10, 320)

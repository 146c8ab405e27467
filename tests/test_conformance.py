"""Fidelity to the official implementation, proven on its reference data.

Every test runs on the repository's fixture (tests/data/reference, see its README) and, when the complete
official data is present (../shared/reference or UNIREPLKNET_REFERENCE_DIR), on that as well.
"""
from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.utils import reparameterize_model

import unireplknet
from unireplknet import UniRepLKNet
from conftest import load_reference, reference_dirs, rel_err

TOL = 1e-5  # relative to the largest reference logit; the official deploy/train pair agree to 3.4e-7


@pytest.fixture(scope="module", params=reference_dirs(), ids=lambda d: d.parent.name + "/" + d.name)
def reference(request):
    """Overrides the session fixture: each reference source the machine has (the fixture always)."""
    return load_reference(request.param)


def official_deploy_state_dict(reference, train_model):
    """A complete deploy state dict: the official deploy tensors the source has, the rest converted here.

    The fixture holds the official tensors of the stem and stages 0-1; the complete data all of them.
    """
    sd = unireplknet.reparameterize(train_model, inplace=False).state_dict()
    assert set(reference["deploy"]) <= set(sd)
    sd.update(reference["deploy"])
    return sd


def _train_model(reference, **kwargs):
    model = UniRepLKNet(**reference["kwargs"], **kwargs).eval()
    model.load_state_dict(reference["train"], strict=True)
    return model


@pytest.fixture(scope="module")
def train_model(reference):
    return _train_model(reference)


@torch.no_grad()
def test_training_structure_logits_and_stages(reference, train_model):
    io = reference["io"]
    assert rel_err(train_model(io["input"]), io["logits_train"]) < TOL
    for i, out in enumerate(train_model.forward_stages(io["input"])):
        assert rel_err(out, io[f"stage{i}_train"]) < TOL, f"stage {i}"


@torch.no_grad()
def test_channels_last_matches(reference, train_model):
    io = reference["io"]
    model = copy.deepcopy(train_model).to(memory_format=torch.channels_last)
    x = io["input"].contiguous(memory_format=torch.channels_last)
    out = model.forward_features(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(model.forward_head(out), io["logits_train"]) < TOL


@torch.no_grad()
def test_official_deploy_checkpoint(reference, train_model):
    model = UniRepLKNet(**reference["kwargs"], deploy=True).eval()
    model.load_state_dict(official_deploy_state_dict(reference, train_model), strict=True)
    io = reference["io"]
    assert rel_err(model(io["input"]), io["logits_deploy"]) < TOL
    # the official deploy tensors alone, stage by stage, against the official stage outputs: exact up to
    # float noise, as re-parameterization is an identity (the official pair agree to 3.4e-7)
    official_stages = {int(k.split(".")[1]) for k in reference["deploy"] if k.startswith("stages.")}
    assert official_stages >= {0, 1}
    outs = model.forward_intermediates(io["input"], indices=sorted(official_stages), intermediates_only=True)
    for i, out in zip(sorted(official_stages), outs):
        assert rel_err(out, io[f"stage{i}_train"]) < TOL, f"stage {i}"


@pytest.mark.parametrize("how", ["method", "function", "timm"])
@torch.no_grad()
def test_reparameterize_equals_official_deploy(reference, train_model, how):
    model = copy.deepcopy(train_model)
    if how == "method":
        model.reparameterize_unireplknet()
    elif how == "function":
        model = unireplknet.reparameterize(model)
    else:
        model = reparameterize_model(model)
    assert model.deploy
    io = reference["io"]
    assert rel_err(model(io["input"]), io["logits_deploy"]) < TOL
    assert rel_err(model(io["input"]), io["logits_train"]) < TOL
    # same structure as the official deploy model: its state dict loads strictly into deploy=True …
    sd = model.state_dict()
    assert set(sd) == set(reference["deploy_keys"])
    fresh = UniRepLKNet(**reference["kwargs"], deploy=True)
    fresh.load_state_dict(sd, strict=True)
    # … and holds the same numbers as the official conversion
    for k, v in reference["deploy"].items():
        assert torch.allclose(sd[k].double(), v.double(), rtol=1e-4, atol=1e-6), k


def test_reparameterize_is_idempotent_and_copy_mode(reference, train_model):
    copied = unireplknet.reparameterize(train_model, inplace=False)
    assert copied is not train_model and not train_model.deploy and copied.deploy
    again = unireplknet.reparameterize(copied)
    assert set(again.state_dict()) == set(reference["deploy_keys"])


def _save_official(tmp_path, sd, layout):
    """Write the reference weights the way the official repositories publish them."""
    path = tmp_path / f"official_{layout}.pth"
    if layout == "top":
        obj = dict(sd)
    elif layout == "model":
        obj = {"model": dict(sd), "epoch": 299}
    else:  # MMDet / MMSeg: under state_dict with a backbone. prefix, next to neck and head tensors
        obj = {"state_dict": {f"backbone.{k}": v for k, v in sd.items()}, "meta": {"epoch": 36}}
        obj["state_dict"]["neck.lateral_convs.0.conv.weight"] = torch.zeros(1)
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("layout", ["top", "model", "backbone"])
@torch.no_grad()
def test_official_file_layouts_load_everywhere(reference, tmp_path, layout):
    io = reference["io"]
    path = _save_official(tmp_path, reference["train"], layout)

    # 1. the package's own loader, with and without naming the variant
    model = unireplknet.create_model("unireplknet_a", checkpoint_path=str(path)).eval()
    assert rel_err(model(io["input"]), io["logits_train"]) < TOL
    assert rel_err(unireplknet.load_model(path)(io["input"]), io["logits_train"]) < TOL
    # 2. timm's checkpoint_path (unwraps `model` / `state_dict`; our hook strips `backbone.`)
    model = timm.create_model("unireplknet_a", checkpoint_path=str(path)).eval()
    assert rel_err(model(io["input"]), io["logits_train"]) < TOL
    # 3. timm's pretrained path with a local file
    model = timm.create_model("unireplknet_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert rel_err(model(io["input"]), io["logits_train"]) < TOL
    # 4. plain load_state_dict of the dict inside
    inner = torch.load(path, weights_only=True)
    inner = inner.get("model", inner.get("state_dict", inner))
    if layout == "backbone":
        inner = {k: v for k, v in inner.items() if k.startswith("backbone.")}
    model = UniRepLKNet(**reference["kwargs"]).eval()
    model.load_state_dict(inner, strict=True)
    assert rel_err(model(io["input"]), io["logits_train"]) < TOL


@torch.no_grad()
def test_deploy_layout_file_and_structure_conversion(reference, train_model, tmp_path):
    io = reference["io"]
    path = tmp_path / "deploy.pth"
    deploy_sd = official_deploy_state_dict(reference, train_model)
    torch.save({"model": deploy_sd}, path)
    # a deploy file builds a deploy model by itself …
    model = unireplknet.load_model(path)
    assert model.deploy and rel_err(model(io["input"]), io["logits_deploy"]) < TOL
    # … converts a training-structure model on load …
    model = unireplknet.create_model("unireplknet_a", checkpoint_path=str(path)).eval()
    assert model.deploy and rel_err(model(io["input"]), io["logits_deploy"]) < TOL
    # … and a training file loads into a deploy=True model by re-parameterizing on the fly
    train_path = _save_official(tmp_path, reference["train"], "model")
    model = timm.create_model(
        "unireplknet_a", deploy=True, pretrained=True, pretrained_cfg_overlay=dict(file=str(train_path))
    ).eval()
    assert model.deploy and rel_err(model(io["input"]), io["logits_deploy"]) < TOL
    # plain load_state_dict of a deploy dict into a training model explains itself
    with pytest.raises(RuntimeError, match="deploy=True"):
        UniRepLKNet(**reference["kwargs"]).load_state_dict(deploy_sd)


@torch.no_grad()
def test_own_checkpoint_round_trip(reference, train_model, tmp_path):
    io = reference["io"]
    for model in (train_model, unireplknet.reparameterize(train_model, inplace=False)):
        path = unireplknet.save_model(model, tmp_path / "m.safetensors")
        loaded = unireplknet.load_model(path)
        assert loaded.deploy == model.deploy
        assert set(loaded.state_dict()) == set(model.state_dict())
        assert torch.equal(loaded(io["input"]), model(io["input"]))
        via_timm = timm.create_model("unireplknet_a", deploy=model.deploy, checkpoint_path=str(path)).eval()
        assert torch.equal(via_timm(io["input"]), model(io["input"]))
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write leaves no temporary file behind

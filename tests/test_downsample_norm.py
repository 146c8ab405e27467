"""``downsample_norm``: BatchNorm instead of the official LayerNorm in the stem and down-sampling layers.

The truths: the official key list (tests/data/reference) for the default layout; the eval-mode training model
for the deploy structure, the deploy file and the ONNX graph (re-parameterization is an identity); the
constructor's own arguments for what a checkpoint rebuilds.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unireplknet import UniRepLKNet
from unireplknet.checkpoint import CheckpointMismatchError, check_model_config, infer_config, save_model
from unireplknet.factory import build_model
from unireplknet.loading import load_model
from unireplknet.model import reparameterize
from _models import randomise_

SMALL = dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13, 3), (5,)))


def trained_batchnorm_model(seed: int = 0, **overrides) -> UniRepLKNet:
    """A small BN-downsampling model whose every tensor (BN statistics included) is random and non-trivial."""
    torch.manual_seed(seed)
    model = UniRepLKNet(in_chans=2, num_classes=5, downsample_norm="batchnorm", **dict(SMALL, **overrides))
    return randomise_(model)


def test_default_keeps_the_official_state_dict_layout(reference):
    official = {k: tuple(s) for k, s in reference["keys"]["unireplknet_a"]["train"]}
    model = UniRepLKNet(**reference["kwargs"])
    assert model.downsample_norm == "layernorm"
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official
    model.load_state_dict(reference["train"])  # strict: the official file loads unchanged
    assert infer_config(reference["train"])["downsample_norm"] == "layernorm"


def test_batchnorm_replaces_exactly_the_stem_and_downsampling_norms(reference):
    official = {k for k, _ in reference["keys"]["unireplknet_a"]["train"]}
    model = UniRepLKNet(**dict(reference["kwargs"], downsample_norm="batchnorm"))
    norms = {"downsample_layers.0.1", "downsample_layers.0.4", "downsample_layers.1.1", "downsample_layers.2.1",
             "downsample_layers.3.1"}
    for name in norms:
        assert isinstance(model.get_submodule(name), nn.BatchNorm2d)
    keys = set(model.state_dict())
    bn_stats = {f"{n}.{s}" for n in norms for s in ("running_mean", "running_var", "num_batches_tracked")}
    assert keys - official == bn_stats  # the affine weight/bias keep their official names and shapes
    assert official <= keys


def test_deployed_model_equals_the_eval_model_and_fuses_the_batchnorms():
    model = trained_batchnorm_model()
    x = torch.randn(3, 2, 32, 96)
    with torch.no_grad():
        want = model(x)
        deployed = reparameterize(copy.deepcopy(model))
        got = deployed(x)
    assert deployed.deploy and not model.deploy
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.downsample_layers.modules())
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    # a model built with deploy=True has the same structure: the deploy state dict loads strictly
    fresh = UniRepLKNet(in_chans=2, num_classes=5, downsample_norm="batchnorm", deploy=True, **SMALL)
    fresh.load_state_dict(deployed.state_dict(), strict=True)


def test_deploy_file_and_training_checkpoint_rebuild_the_batchnorm_model(tmp_path):
    model = trained_batchnorm_model()
    x = torch.randn(2, 2, 32, 64)
    with torch.no_grad():
        want = model(x)
    torch.save(model.state_dict(), tmp_path / "train.pth")
    deploy_file = save_model(reparameterize(copy.deepcopy(model)), tmp_path / "deploy.safetensors")
    for path, deploy in ((tmp_path / "train.pth", False), (deploy_file, True)):
        loaded = load_model(path)
        assert loaded.downsample_norm == "batchnorm" and loaded.deploy == deploy
        with torch.no_grad():
            assert torch.allclose(loaded(x), want, rtol=1e-4, atol=1e-5)


def test_model_config_and_a_layernorm_model_refuse_batchnorm_weights(tmp_path):
    model = trained_batchnorm_model()
    config = infer_config(model.state_dict())
    stored = dict(name="custom", num_classes=5, in_chans=2, model_kwargs=dict(SMALL, downsample_norm="batchnorm"))
    check_model_config(stored, config, "run.pth")  # the run's own metadata fits
    with pytest.raises(CheckpointMismatchError, match="downsample_norm is 'layernorm'.*'batchnorm'"):
        check_model_config(dict(stored, model_kwargs=SMALL), config, "run.pth")
    from unireplknet.checkpoint import load_checkpoint

    with pytest.raises(CheckpointMismatchError, match="downsample_norm='batchnorm'"):
        load_checkpoint(UniRepLKNet(in_chans=2, num_classes=5, **SMALL), model.state_dict())


def test_factory_and_timm_build_it_and_a_wrong_value_is_named():
    import timm

    import unireplknet.zoo  # noqa: F401  (registers the variants)

    custom = build_model("custom", 4, in_chans=1, model_kwargs=dict(SMALL, downsample_norm="batchnorm"))
    assert isinstance(custom.downsample_layers[1][1], nn.BatchNorm2d)
    variant = timm.create_model("unireplknet_a", num_classes=3, downsample_norm="batchnorm")
    assert isinstance(variant.downsample_layers[0][4], nn.BatchNorm2d)
    synced = UniRepLKNet(num_classes=3, downsample_norm="batchnorm", use_sync_bn=True, **SMALL)
    assert isinstance(synced.downsample_layers[2][1], nn.SyncBatchNorm)
    with pytest.raises(ValueError, match="downsample_norm must be one of 'layernorm', 'batchnorm'"):
        UniRepLKNet(downsample_norm="groupnorm", **SMALL)


def test_onnx_export_of_the_deployed_batchnorm_model_matches_the_eval_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from unireplknet.export import export_onnx

    model = trained_batchnorm_model()
    deployed = reparameterize(copy.deepcopy(model))
    # the legacy exporter: the fast one on CPU (the dynamo exporter is covered by tests/test_deploy.py)
    export_onnx(deployed, tmp_path / "m.onnx", input_size=(2, 32, 64), exporter="torchscript", atol=1e-4)
    x = torch.randn(4, 2, 32, 64)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        want = model(x)  # the training structure in eval mode, not the graph's own source
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)


def test_timm_reparameterize_model_fuses_them_too_and_both_structures_script():
    from timm.utils import reparameterize_model

    model = trained_batchnorm_model(seed=1)
    x = torch.randn(2, 2, 32, 64)
    with torch.no_grad():
        want = model(x)
        fused = reparameterize_model(model)  # timm walks the children: blocks and down-sampling layers
        assert fused.deploy and torch.allclose(fused(x), want, rtol=1e-4, atol=1e-5)
        for net in (model, fused):
            assert torch.allclose(torch.jit.script(net)(x), want, rtol=1e-4, atol=1e-5)

"""timm's own model-test conventions (pytorch-image-models tests/test_models.py), applied to UniRepLKNet.

The checks follow timm's suite — forward, backward, default configs, features, TorchScript, FX, FX-then-script,
intermediates — in our own words, over several variants and in both structures (training and deploy), and add
the creation calls of timm's train.py and benchmark.py. Where timm only checks shapes, these tests also compare
against an independent result: the eager model for scripted and traced graphs, hand-written pooling formulas
for ``global_pool``, the features-mode definition (each stage output through its LayerNorm) for every feature
wrapper.
"""
import copy
import json

import pytest
import timm
import torch
from timm.models import save_for_hf
from timm.models._features_fx import create_feature_extractor, get_graph_node_names

import unireplknet
from conftest import randomize_bn_and_scales, rel_err

# Small inputs keep the suite fast; 64 px is two pixels at the last stage (stride 32).
SIZE = 64
VARIANTS = ["unireplknet_a", "unireplknet_f", "unireplknet_n"]
STRUCTURES = ["train", "deploy"]


def _model(name: str, structure: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A model with non-trivial BN statistics / scales, re-parameterized for the deploy structure."""
    torch.manual_seed(seed)
    model = randomize_bn_and_scales(timm.create_model(name, **kwargs), seed=seed)
    if structure == "deploy":
        unireplknet.reparameterize(model)
    return model


def _input(batch: int = 2, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_model_forward(name, structure):
    model = _model(name, structure).eval()
    with torch.no_grad():
        out = model(_input(batch=1))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", VARIANTS[:2])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_model_backward(name, structure):
    """Every parameter gets a gradient (timm: 'some parameters are missing gradients')."""
    model = _model(name, structure, num_classes=42).train()
    out = model(_input())
    assert out.shape == (2, 42)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", VARIANTS[:2])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_model_default_cfgs(name, structure):
    """forward_features is unpooled at the config's pool_size; reset_classifier(0) pools; (0, '') does not;
    the config's classifier and first_conv name real parameters."""
    model = _model(name, structure).eval()
    cfg = model.pretrained_cfg
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[-2:] == cfg["pool_size"]
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        pooled = model(x)
        assert pooled.shape == (1, model.num_features)
        model.reset_classifier(0, "")
        unpooled = model(x)
        assert unpooled.dim() == 4 and unpooled.shape[-2:] == cfg["pool_size"]
    state = model.state_dict()
    assert cfg["classifier"] + ".weight" in state or isinstance(model.get_classifier(), torch.nn.Identity)
    assert cfg["first_conv"] + ".weight" in state
    # the classifier name holds the classifier when there is one
    full = timm.create_model(name)
    assert full.get_classifier() is full.get_submodule(cfg["classifier"])


# ---------------------------------------------------------------------------------------- pooling and dropout
def _layer_norm(model, pooled):
    return torch.nn.functional.layer_norm(pooled, (pooled.shape[-1],), model.norm.weight, model.norm.bias, 1e-6)


@pytest.mark.parametrize(
    "pool, formula",
    [
        ("avg", lambda f: f.mean((2, 3))),
        ("max", lambda f: f.amax((2, 3))),
        ("avgmax", lambda f: 0.5 * (f.mean((2, 3)) + f.amax((2, 3)))),
    ],
)
def test_global_pool_types_in_constructor_and_reset_classifier(pool, formula):
    model = _model("unireplknet_a", "train", num_classes=0, global_pool=pool).eval()
    x = _input()
    with torch.no_grad():
        feats = model.forward_features(x)
        want = _layer_norm(model, formula(feats))
        assert rel_err(model(x), want) < 1e-5
        other = _model("unireplknet_a", "train", num_classes=0).eval()
        other.reset_classifier(0, pool)
        assert rel_err(other(x), want) < 1e-5


def test_global_pool_none_keeps_the_map_through_the_final_norm():
    model = _model("unireplknet_a", "train", num_classes=0, global_pool="").eval()
    x = _input()
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model(x)
    assert out.shape == feats.shape
    want = _layer_norm(model, feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert rel_err(out, want) < 1e-6
    assert timm.models.get_model_args(model)["global_pool"] == ""


@pytest.mark.parametrize("bad", [dict(global_pool="", num_classes=10), dict(global_pool="catavgmax"),
                                 dict(global_pool="median"), dict(drop_rate=1.0)])
def test_unsupported_head_arguments_are_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="global_pool|drop_rate"):
        timm.create_model("unireplknet_a", **bad)
    model = timm.create_model("unireplknet_a")
    if "global_pool" in bad and "num_classes" not in bad:
        with pytest.raises(ValueError, match="global_pool"):
            model.reset_classifier(0, bad["global_pool"])


def test_drop_rate_is_dropout_before_the_classifier():
    torch.manual_seed(0)
    dropped = timm.create_model("unireplknet_a", num_classes=7, drop_rate=0.5)
    plain = timm.create_model("unireplknet_a", num_classes=7)
    plain.load_state_dict(dropped.state_dict())  # same keys: dropout has no parameters
    x = _input()
    with torch.no_grad():
        assert torch.equal(dropped.eval()(x), plain.eval()(x))  # identity in eval mode
        dropped.train()
        pre = plain.forward_head(plain.forward_features(x), pre_logits=True)
        feats = dropped.forward_features(x)
        torch.manual_seed(3)
        pre_dropped = dropped.forward_head(feats, pre_logits=True)
    zeroed = pre_dropped == 0
    assert 0.3 < zeroed.float().mean() < 0.7
    # the survivors are scaled by 1 / (1 - p) = 2 (inverted dropout)
    assert torch.allclose(pre_dropped[~zeroed], 2 * pre[~zeroed], rtol=1e-4, atol=1e-5)


def test_timm_train_and_benchmark_style_creation():
    """train.py passes these keywords to every model (None ones are dropped by timm.create_model)."""
    model = timm.create_model(
        "unireplknet_a", pretrained=False, in_chans=3, num_classes=10, drop_rate=0.0, drop_path_rate=0.1,
        drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False,
        checkpoint_path=None,
    )
    assert model(_input()).shape == (2, 10)
    # benchmark.py: num_classes / in_chans / drop_rate / global_pool of its own
    bench = timm.create_model("unireplknet_a", num_classes=1000, in_chans=3, pretrained=False, drop_rate=0.0,
                              global_pool="avg")
    assert bench.eval()(_input()).shape == (2, 1000)
    feats = timm.create_model("unireplknet_a", features_only=True, drop_rate=0.0, global_pool="avg")
    assert len(feats(_input())) == 4


# ---------------------------------------------------------------------------------------- TorchScript / FX
@pytest.mark.parametrize("name", ["unireplknet_a"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_torchscript_equals_eager(name, structure):
    model = _model(name, structure).eval()
    with timm.layers.set_layer_config(scriptable=True):
        scripted = torch.jit.script(model)
    x = _input()
    with torch.no_grad():
        assert rel_err(scripted(x), model(x)) < 1e-5
        # channels_last input: the script keeps the layout branch of LayerNorm
        xc = x.contiguous(memory_format=torch.channels_last)
        assert rel_err(scripted(xc), model(x)) < 1e-5


def test_torchscript_fx_and_fx_then_script_of_every_block_kind_and_features_mode(tiny):
    for structure in STRUCTURES:
        for num_classes in (5, None):
            model = copy.deepcopy(tiny(num_classes=num_classes)).eval()
            if structure == "deploy":
                unireplknet.reparameterize(model)
            traced = torch.fx.symbolic_trace(model)
            x = _input()
            for graph in (torch.jit.script(model), traced, torch.jit.script(traced)):
                with torch.no_grad():
                    want, got = model(x), graph(x)
                if num_classes is None:
                    assert len(got) == 4 and all(rel_err(g, w) < 1e-5 for g, w in zip(got, want))
                else:
                    assert rel_err(got, want) < 1e-5


def _fx_model(model: torch.nn.Module) -> torch.nn.Module:
    """What timm's tests trace: the graph up to its last node, through timm's FX feature extractor."""
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert train_nodes[-1] == eval_nodes[-1]
    return create_feature_extractor(model, return_nodes=[eval_nodes[-1]])


@pytest.mark.parametrize("structure", STRUCTURES)
def test_fx_forward_equals_eager(structure):
    model = _model("unireplknet_a", structure).eval()
    x = _input()
    with torch.no_grad():
        want = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert rel_err(traced(x), want) < 1e-5
        fx = _fx_model(model).eval()
        got = fx(x)
        got = got[next(iter(got))] if isinstance(got, dict) else got
        assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize("structure", STRUCTURES)
def test_fx_backward_equals_eager(structure, tiny):
    """Training mode (BatchNorm on batch statistics): forward and every gradient of the traced graph are the
    eager model's. In float64, so that the comparison is not lost in rounding: eager runs the CPU depthwise
    kernels' own backward, the graph PyTorch's."""
    model = tiny(num_classes=7).double()
    if structure == "deploy":
        unireplknet.reparameterize(model)
    model.train()
    traced = torch.fx.symbolic_trace(copy.deepcopy(model)).train()
    x = _input().double()
    losses = []
    for m in (model, traced):
        out = m(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        losses.append(out)
    assert rel_err(losses[1], losses[0]) < 1e-12
    grads = dict(model.named_parameters())
    for n, p in traced.named_parameters():
        assert p.grad is not None, n
        # (GRN's beta feeds a BatchNorm in training mode, which removes it: its gradient is 0 up to rounding,
        # hence an absolute floor far below every real gradient)
        assert torch.allclose(p.grad, grads[n].grad, rtol=1e-8, atol=1e-12), n


@pytest.mark.parametrize("structure", STRUCTURES)
def test_fx_then_torchscript(structure):
    model = _model("unireplknet_a", structure).eval()
    scripted = torch.jit.script(_fx_model(model))
    x = _input()
    with torch.no_grad():
        got = scripted(x)
        got = got[next(iter(got))] if isinstance(got, dict) else got
        assert rel_err(got, model(x)) < 1e-5


def test_traced_graph_holds_no_python_dispatch():
    """The FX graph of a deploy model calls only torch ops and modules: no fused oneDNN op, no input check."""
    model = _model("unireplknet_a", "deploy").eval()
    graph = torch.fx.symbolic_trace(model).graph
    targets = {str(n.target) for n in graph.nodes if n.op in ("call_function", "call_method")}
    assert not any("mkldnn" in t or "check_input" in t for t in targets), targets


# ---------------------------------------------------------------------------------------- features
def _features_definition(model, x):
    """The official features mode: each stage output through that stage's channels-first LayerNorm."""
    outs = []
    for i, stage_out in enumerate(model.forward_stages(x)):
        norm = getattr(model, f"norm{i}")
        u = stage_out.mean(1, keepdim=True)
        s = (stage_out - u).pow(2).mean(1, keepdim=True)
        outs.append(norm.weight[:, None, None] * (stage_out - u) / torch.sqrt(s + norm.eps) + norm.bias[:, None, None])
    return outs


@pytest.mark.parametrize("feature_cls", ["getter", "hook", "dict", "fx"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_features_only_every_feature_class(feature_cls, structure):
    """Every timm feature wrapper returns the features-mode definition, with timm's feature_info."""
    deploy = structure == "deploy"
    torch.manual_seed(0)  # same seed, same weights: the reference model below is this one's twin
    net = timm.create_model("unireplknet_a", features_only=True, feature_cls=feature_cls, out_indices=(0, 2, 3),
                            deploy=deploy).eval()
    torch.manual_seed(0)
    reference = unireplknet.UniRepLKNet(**unireplknet.variant_config("a"), num_classes=None, deploy=deploy).eval()
    assert net.feature_info.channels() == [40, 160, 320] and net.feature_info.reduction() == [4, 16, 32]
    x = _input()
    with torch.no_grad():
        out = net(x)
        if feature_cls == "dict":
            assert list(out) == ["0", "2", "3"]
            out = list(out.values())
        want = _features_definition(reference, x)
    assert len(out) == 3
    for got, ref in zip(out, [want[0], want[2], want[3]]):
        assert rel_err(got, ref) < 1e-5


def test_forward_intermediates_conventions(tiny):
    """timm's forward_intermediates: the final map equals forward_features, intermediates match feature_info,
    indices select, stop_early stops, and prune_intermediate_layers keeps what the indices need."""
    model = tiny().eval()
    x = _input()
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]
        assert [SIZE // t.shape[-1] for t in inter] == [f["reduction"] for f in model.feature_info]
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last_two, inter[2:]))
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        assert torch.equal(early[0], inter[1])
        kept = model.prune_intermediate_layers([0, 1])
        assert kept == [0, 1] and len(model.stages) == 2
        assert all(torch.equal(a, b) for a, b in zip(model.forward_intermediates(x, [0, 1], intermediates_only=True),
                                                     inter[:2]))


# ---------------------------------------------------------------------------------------- save_for_hf
def test_save_for_hf_round_trip_of_a_deploy_model(tmp_path):
    model = _model("unireplknet_a", "deploy", num_classes=10).eval()
    save_for_hf(model, tmp_path, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_args"]["deploy"] is True  # the structure is recorded
    x = _input()
    with torch.no_grad():
        want = model(x)
        # timm's own loader of a saved folder rebuilds the deploy structure from the config …
        local = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
        assert local.deploy and torch.allclose(local(x), want, rtol=0, atol=1e-6)
        # … and a pretrained file given by path converts a training-structure model on load
        overlay = timm.create_model(
            "unireplknet_a", pretrained=True,
            pretrained_cfg_overlay=dict(file=str(tmp_path / "model.safetensors"), num_classes=10), num_classes=10,
        ).eval()
        assert overlay.deploy and torch.allclose(overlay(x), want, rtol=0, atol=1e-6)


@pytest.fixture
def tiny():
    from conftest import tiny_model

    def make(**kwargs):
        torch.manual_seed(0)
        return randomize_bn_and_scales(tiny_model(**kwargs))

    return make


# ---------------------------------------------------------------------------------------- every variant (slow)
ALL_VARIANTS = [f"unireplknet_{v}" for v in unireplknet.VARIANTS]


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_VARIANTS)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_variant_forward_backward_script_fx_features(name, structure):
    """timm's per-model checks on all nine variants (minutes and several GB for L/XL: run with -m slow)."""
    model = _model(name, structure, num_classes=42)
    x = _input(batch=2)
    out = model.train()(x)
    out.mean().backward()
    assert out.shape == (2, 42) and all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        want = model(x)
        assert rel_err(torch.jit.script(model)(x), want) < 1e-5
        assert rel_err(torch.fx.symbolic_trace(model)(x), want) < 1e-5
    feats = timm.create_model(name, features_only=True, deploy=structure == "deploy").eval()
    with torch.no_grad():
        maps = feats(x)
    assert [m.shape[1] for m in maps] == feats.feature_info.channels()

"""The tools users run on the model work unchanged and give exact answers (docs/model.md, "Works with").

Each entry of the list in docs/model.md names the test here (or elsewhere in tests/) that proves it;
``test_works_with_list_names_existing_tests`` checks that every named test exists.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import unireplknet

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------- FLOP counters
COUNTER_CASES = [("a", False), ("a", True), ("t", False), ("t", True)]


def _model(variant: str, deploy: bool) -> nn.Module:
    torch.manual_seed(0)
    return unireplknet.create_model(variant, deploy=deploy).eval()


def _conv_and_linear_macs(model: nn.Module, x: torch.Tensor) -> int:
    """The independent truth: PyTorch's own FlopCounterMode counts every convolution and matmul at the
    operator level, whatever module type issues it (2 flops per multiply-accumulate)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def _bias_adds(model: nn.Module, x: torch.Tensor) -> int:
    """Output elements of every conv / Linear with a bias (ptflops counts one MAC per bias add)."""
    sizes = []
    handles = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel())) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return sum(sizes)


def _leaf_types_except(model: nn.Module, kept: tuple) -> list:
    return sorted({type(m) for m in model.modules() if not list(m.children()) and type(m) not in kept},
                  key=lambda t: t.__name__)


@pytest.mark.parametrize("variant, deploy", COUNTER_CASES)
def test_thop_counts_every_convolution_and_its_parameters(variant, deploy):
    """thop looks modules up by exact type; every depthwise conv must be a plain nn.Conv2d for it to count."""
    thop = pytest.importorskip("thop")
    model = _model(variant, deploy)
    x = torch.randn(1, 3, 224, 224)
    want = _conv_and_linear_macs(model, x)
    # thop's own convention for the few other modules it knows (norms, pooling) is left out: only its
    # convolution and Linear counting is compared with the operator-level truth
    zero = {t: (lambda m, inputs, output: None) for t in _leaf_types_except(model, (nn.Conv2d, nn.Linear))}
    macs, _ = thop.profile(model, inputs=(x,), custom_ops=zero, verbose=False)
    assert int(macs) == want
    # parameters: thop counts those of the module types it knows (conv, linear, batch/layer norm), all of them
    _, params = thop.profile(_model(variant, deploy), inputs=(x,), verbose=False)
    known = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm)
    assert int(params) == sum(p.numel() for m in model.modules() if isinstance(m, known) for p in m.parameters())


@pytest.mark.parametrize("variant, deploy", COUNTER_CASES)
def test_ptflops_counts_every_convolution_and_all_parameters(variant, deploy):
    ptflops = pytest.importorskip("ptflops")
    model = _model(variant, deploy)
    x = torch.randn(1, 3, 224, 224)
    want = _conv_and_linear_macs(model, x) + _bias_adds(model, x)  # ptflops' convention: bias adds count
    macs, params = ptflops.get_model_complexity_info(
        model, (3, 224, 224), as_strings=False, print_per_layer_stat=False, backend="pytorch",
        ignore_modules=_leaf_types_except(model, (nn.Conv2d, nn.Linear)),
        backend_specific_config={"count_functional": False},
    )
    assert macs == want
    assert params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant, deploy", COUNTER_CASES)
def test_fvcore_counts_the_same_convolutions_and_linears(variant, deploy):
    from fvcore.nn import FlopCountAnalysis

    model = _model(variant, deploy)
    x = torch.randn(1, 3, 224, 224)
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    assert sum(by_op.get(op, 0) for op in ("conv", "linear", "addmm", "matmul", "bmm")) == _conv_and_linear_macs(
        model, x
    )


def test_depthwise_convs_are_plain_conv2d_and_still_run_through_ops(monkeypatch):
    """Exact nn.Conv2d type (for type-keyed counters) and the fast implementation where nobody watches."""
    from conftest import tiny_model
    import unireplknet.ops as ops

    model = tiny_model().eval()
    calls = []
    real = ops.depthwise_conv2d
    monkeypatch.setattr(ops, "depthwise_conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    for structure in (model, unireplknet.reparameterize(model, inplace=False)):
        dw = [m for m in structure.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert dw and all(type(m) is nn.Conv2d for m in dw)
        calls.clear()
        with torch.no_grad():
            want = structure(torch.randn(2, 3, 32, 32))
        assert len(calls) == len(dw)
        calls.clear()
        handle = dw[0].register_forward_hook(lambda m, i, o: None)  # a watched module is called itself
        with torch.no_grad():
            structure(torch.randn(2, 3, 32, 32))
        handle.remove()
        assert len(calls) == len(dw) - 1
        assert want.shape[0] == 2


# ------------------------------------------------------------------------- feature maps vs intermediates
def test_forward_intermediates_norm_argument_gives_either_convention():
    """features_only maps go through each stage's LayerNorm (the official features mode); a classifier's
    forward_intermediates gives raw stage outputs; norm=True / norm=False selects either on a features model."""
    import timm

    torch.manual_seed(0)
    classifier = timm.create_model("unireplknet_a").eval()
    features = timm.create_model("unireplknet_a", features_only=True).eval()
    backbone = features.model
    unireplknet.load_checkpoint(backbone, classifier.state_dict())  # same weights; stage norms stay as built
    with torch.no_grad():
        for i in range(4):  # non-trivial stage norms
            getattr(backbone, f"norm{i}").weight.normal_(1.0, 0.2)
            getattr(backbone, f"norm{i}").bias.normal_(0.0, 0.2)
        x = torch.randn(2, 3, 64, 64)
        maps = features(x)
        normed = backbone.forward_intermediates(x, norm=True, intermediates_only=True)
        default = backbone.forward_intermediates(x, intermediates_only=True)
        raw = backbone.forward_intermediates(x, norm=False, intermediates_only=True)
        classifier_raw = classifier.forward_intermediates(x, intermediates_only=True)
    for got_map, got_normed, got_default, got_raw, want_raw, i in zip(maps, normed, default, raw, classifier_raw,
                                                                       range(4)):
        assert torch.equal(got_map, got_normed) and torch.equal(got_map, got_default)
        assert torch.equal(got_raw, want_raw)
        # the features maps are the raw ones through the stage LayerNorm (the mathematical definition)
        mean = want_raw.mean(1, keepdim=True)
        var = want_raw.var(1, unbiased=False, keepdim=True)
        norm = getattr(backbone, f"norm{i}")
        by_definition = (want_raw - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None, None] \
            + norm.bias[:, None, None]
        assert torch.allclose(got_map, by_definition, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(got_map, got_raw, atol=1e-2)
    with pytest.raises(ValueError, match="features_only=True"):
        classifier.forward_intermediates(x, norm=True)


# ------------------------------------------------------------------------------ Hugging Face folders
@pytest.mark.parametrize("structure", ["train", "deploy"])
def test_save_pretrained_folder_loads_in_timm_and_transformers(tmp_path, structure):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("unireplknet_a", num_classes=10).eval()
    with torch.no_grad():
        for p in model.parameters():  # a model that differs from any freshly built one
            p.add_(torch.randn_like(p) * 0.01)
    if structure == "deploy":
        unireplknet.reparameterize(model)
    folder = unireplknet.save_pretrained(model, tmp_path / "hf")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        local = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        assert local.deploy == (structure == "deploy")
        assert torch.allclose(local(x), want, rtol=0, atol=1e-5)
        by_file = timm.create_model("unireplknet_a", pretrained=True, num_classes=10,
                                    pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"),
                                                                num_classes=10)).eval()
        assert torch.allclose(by_file(x), want, rtol=0, atol=1e-5)
    transformers = pytest.importorskip("transformers")
    classifier = transformers.TimmWrapperForImageClassification.from_pretrained(folder).eval()
    backbone = transformers.TimmWrapperModel.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.allclose(classifier(pixel_values=x).logits, want, rtol=0, atol=1e-5)
        pooled = backbone(pixel_values=x).pooler_output
        assert torch.allclose(pooled, model.forward_head(model.forward_features(x), pre_logits=True), atol=1e-5)
    assert classifier.config.num_labels == 10


# ------------------------------------------------------------------------- timm's scripts, unchanged
TIMM_STYLE_SCRIPT = '''
import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--num-classes", type=int, default=None)
args = parser.parse_args()
assert "unireplknet" not in sys.modules
import timm
model = timm.create_model(args.model, num_classes=args.num_classes)
print(type(model).__name__, model.num_classes, sorted(m for m in sys.modules if m.startswith("unireplknet.")))
'''


def _pth_line() -> str:
    """The line setup.py installs as unireplknet_timm.pth (read from setup.py, not copied)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PTH_LINE":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no PTH_LINE")


def _run_with_site_dir(tmp_path, code_or_script: str, *args: str, script: bool = False):
    """Run Python with ``tmp_path/site`` processed as a site-packages folder (its .pth files run exactly as
    the interpreter runs those of site-packages), in a process that never imports unireplknet itself."""
    import os
    import subprocess
    import sys

    site_dir = tmp_path / "site"
    site_dir.mkdir(exist_ok=True)
    (site_dir / "unireplknet_timm.pth").write_text(_pth_line())
    target = tmp_path / "script.py"
    target.write_text(code_or_script)
    runner = ("import runpy, site, sys; site.addsitedir(sys.argv[1]); sys.argv = sys.argv[2:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", runner, str(site_dir), str(target), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_timm_style_script_finds_the_models_without_importing_unireplknet(tmp_path):
    done = _run_with_site_dir(tmp_path, TIMM_STYLE_SCRIPT, "--model", "unireplknet_a", "--num-classes", "7")
    assert done.returncode == 0, done.stderr
    name, classes, modules = done.stdout.split(" ", 2)
    assert (name, classes) == ("UniRepLKNet", "7")
    # importing timm imports the zoo's registration and what it builds on, not the engine, data, tasks, CLI …
    imported = ast.literal_eval(modules)
    assert "unireplknet.zoo" in imported
    assert not [m for m in imported if m.split(".")[1] in ("engine", "data", "tasks", "cli", "export", "modalities",
                                                           "analysis", "deploy")]


@pytest.mark.parametrize("order", [
    "import timm; import unireplknet",
    "import unireplknet; import timm",
    "import timm.models; import unireplknet.zoo",
    "import unireplknet.zoo; import timm.models",
])
def test_registration_does_not_recurse_or_repeat_in_any_import_order(tmp_path, order):
    code = f"""
import warnings
warnings.simplefilter("error")  # a second registration would warn (timm warns on overwriting a model)
{order}
import sys, timm
assert "unireplknet_xl" in timm.list_models("unireplknet_*")
assert not [f for f in sys.meta_path if type(f).__name__ == "TimmRegistrationFinder"]  # one shot
print("ok")
"""
    done = _run_with_site_dir(tmp_path, code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_setup_py_build_puts_the_pth_at_the_wheel_root(tmp_path):
    """The regular wheel (build_py) carries unireplknet_timm.pth at its root, i.e. site-packages once installed;
    the editable wheel adds it in editable_wheel (checked by hand with `pip install -e .`, docs/model.md)."""
    import shutil
    import subprocess
    import sys

    project = tmp_path / "project"  # a copy: the build writes egg-info next to the sources
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                          cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lib" / "unireplknet_timm.pth").read_text() == _pth_line()
    assert (tmp_path / "lib" / "_unireplknet_timm.py").is_file()


# ------------------------------------------------------------------------------ the documented list
def test_works_with_list_names_existing_tests():
    """Every entry of docs/model.md's "Works with" list names a test, and that test exists."""
    text = (REPO / "docs" / "model.md").read_text()
    section = text.split("### Works with", 1)[1]
    bullets = re.search(r"(?ms)^\* .*?(?=\n\n)", section).group(0)  # the first bullet list of the section
    entries = re.split(r"\n(?=\* )", bullets)
    assert len(entries) >= 10
    for entry in entries:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", entry)
        assert named, f"entry names no test: {entry!r}"
        for path, name in named:
            tree = ast.parse((REPO / path).read_text())
            defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            assert name in defined, f"{path}::{name} (docs/model.md, Works with) does not exist"

"""deploy_model: re-parameterized copy → backend, outputs checked against PyTorch (and the official data)."""
from __future__ import annotations

import importlib
import io

import pytest
import torch

from unireplknet import UniRepLKNet
from unireplknet import deploy as deploy_mod
from unireplknet.deploy import DeployedModel, available_backends, deploy_model
from _models import randomise_



def small_trained_model(seed: int = 0) -> UniRepLKNet:
    """A small training-structure model with non-trivial BN statistics, layer scales and GRN parameters."""
    torch.manual_seed(seed)
    model = UniRepLKNet(
        depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13, 3), (5,)), num_classes=10
    )
    return randomise_(model)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max()).item()


def test_eager_deploy_of_official_training_weights_matches_official_logits(reference):
    model = UniRepLKNet(**reference["kwargs"])
    model.load_state_dict(reference["train"])
    io = reference["io"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = deploy_model(model, "eager", example_input=io["input"])
    assert isinstance(deployed, DeployedModel) and deployed.backend == "eager"
    assert deployed.module.deploy and not model.deploy, "deploys a copy; the caller's model is untouched"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert rel_err(deployed(io["input"]), io["logits_deploy"]) < 1e-5
    assert rel_err(deployed(io["input"]), io["logits_train"]) < 1e-5


@pytest.mark.parametrize(
    "backend",
    [
        "onnxruntime",
        pytest.param(
            "openvino",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("openvino") is None, reason='needs pip install "unireplknet[openvino]"'
            ),
        ),
    ],
)
def test_runtime_backend_matches_pytorch_for_any_batch(backend):
    pytest.importorskip("onnxruntime") if backend == "onnxruntime" else None
    model = small_trained_model()
    example = torch.randn(1, 3, 64, 64)
    deployed = deploy_model(model, backend, example_input=example)
    assert deployed.backend == backend and deployed.max_rel_error < 1e-4
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        want = model(x)  # the training structure in eval mode: an independent path to the same function
    got = deployed(x)
    assert got.shape == (3, 10)
    assert rel_err(got, want) < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason='needs pip install "unireplknet[openvino]"')
@pytest.mark.parametrize("static_shapes", [True, False])
def test_openvino_shape_specialised_models_match_pytorch(monkeypatch, caplog, static_shapes):
    """Per-shape compiled models (and the dynamic one past the shape limit) all give PyTorch's outputs."""
    import logging

    from unireplknet import deploy as deploy_module

    caplog.set_level(logging.INFO, logger="unireplknet.deploy")
    monkeypatch.setattr(deploy_module, "OPENVINO_MAX_STATIC_SHAPES", 2)
    model = small_trained_model()
    deployed = deploy_model(model, "openvino", example_input=torch.randn(1, 3, 64, 64),
                            openvino_static_shapes=static_shapes)
    for batch in (2, 3, 2, 5):  # 1 and 2 fill the two static slots; 3 and 5 run on the dynamic model
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            want = model(x)
        got = deployed(x)
        assert got.shape == (batch, 10)
        assert rel_err(got, want) < 1e-4
    specialised = [r for r in caplog.records if "compiling for input shape" in r.getMessage()]
    assert len(specialised) == (2 if static_shapes else 0)


def test_features_mode_backbone_deploys_to_onnxruntime():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    backbone = UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (3,), (3,)),
                           num_classes=None).eval()
    # the legacy exporter here (5× faster); the default dynamo exporter is covered by the test above
    deployed = deploy_model(
        backbone, "onnxruntime", example_input=torch.randn(1, 3, 64, 64), onnx_exporter="torchscript"
    )
    x = torch.randn(2, 3, 64, 64)
    got = deployed(x)
    with torch.no_grad():
        want = backbone(x)
    assert isinstance(got, list) and len(got) == 4
    for g, w in zip(got, want):
        assert g.shape == w.shape and rel_err(g, w) < 1e-4


@pytest.mark.slow
def test_compile_backend_matches_pytorch():
    model = small_trained_model()
    x = torch.randn(2, 3, 64, 64)
    deployed = deploy_model(model, "compile", example_input=x)
    with torch.no_grad():
        assert rel_err(deployed(x), model(x)) < 1e-4


def test_missing_runtime_names_the_extra(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("openvino", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(deploy_mod.importlib, "import_module", fake_import)
    with pytest.raises(ImportError, match=r'pip install "unireplknet\[openvino\]"'):
        deploy_model(small_trained_model(), "openvino")
    with pytest.raises(ImportError, match=r'pip install "unireplknet\[onnx\]"'):
        deploy_model(small_trained_model(), "onnxruntime")
    assert "openvino" not in available_backends() and "onnxruntime" not in available_backends()
    # auto falls back to what is installed
    assert deploy_model(small_trained_model(), "auto", example_input=torch.randn(1, 3, 64, 64)).backend == "eager"


def test_output_mismatch_at_build_time_raises(monkeypatch):
    def broken_eager(module, *args):
        return lambda x: module(x) * 1.01

    monkeypatch.setattr(deploy_mod, "_eager", broken_eager)
    with pytest.raises(RuntimeError, match="disagrees with PyTorch"):
        deploy_model(small_trained_model(), "eager", example_input=torch.randn(1, 3, 64, 64))


def test_bad_arguments_are_named():
    model = small_trained_model()
    with pytest.raises(ValueError, match="backend must be"):
        deploy_model(model, "tensorrt")
    with pytest.raises(ValueError, match="example_input"):
        deploy_model(model, "eager", example_input=torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="input channels"):
        deploy_model(model, "eager", example_input=torch.randn(1, 4, 64, 64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        deploy_model(model, "eager", example_input=torch.randn(1, 3, 64, 64))([[0.0]])


def test_exporter_output_is_held_back_and_shown_when_the_export_fails(caplog):
    """What exporters log and print during an export reaches neither the console handler nor stdout; it is
    logged at DEBUG afterwards, and at WARNING (before the error) when the export fails (issue 24, point 8b)."""
    import logging

    console = logging.StreamHandler(io.StringIO())
    console.setLevel(logging.INFO)  # the command line's console: INFO and up
    root = logging.getLogger()
    root.addHandler(console)
    chatty = logging.getLogger("onnxscript.optimizer")
    old_level = chatty.level
    chatty.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.DEBUG, logger="unireplknet.deploy"):
            with deploy_mod.exporter_output_held():
                chatty.info("Removed 52 unused nodes")
                print("[torch.onnx] Obtain model graph")
            assert console.stream.getvalue() == ""
            shown = [r for r in caplog.records if r.name == "unireplknet.deploy"]
            assert [r.levelno for r in shown] == [logging.DEBUG]
            assert "Removed 52 unused nodes" in shown[0].getMessage()
            assert "Obtain model graph" in shown[0].getMessage()
            caplog.clear()
            with pytest.raises(RuntimeError, match="unsupported op"):
                with deploy_mod.exporter_output_held():
                    chatty.info("Applied 2 rewrite rules")
                    raise RuntimeError("unsupported op")
            shown = [r for r in caplog.records if r.name == "unireplknet.deploy"]
            assert [r.levelno for r in shown] == [logging.WARNING]
            assert "Applied 2 rewrite rules" in shown[0].getMessage()
        assert console in root.handlers
    finally:
        root.removeHandler(console)
        chatty.setLevel(old_level)


def test_deploy_is_an_attribute_of_the_package_without_its_own_import():
    """`import unireplknet; unireplknet.deploy.available_backends()` in a fresh interpreter (issue 24, point 10c)."""
    import subprocess
    import sys

    probe = ("import sys, unireplknet\n"
             "assert 'unireplknet.deploy' not in sys.modules\n"
             "print(unireplknet.deploy.available_backends())\n"
             "print('DIR', 'deploy' in dir(unireplknet))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.splitlines()
    assert eval(first) == available_backends()
    assert second == "DIR True"

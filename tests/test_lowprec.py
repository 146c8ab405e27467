"""Low-precision deployment: bf16 where the CPU has it (else float32, said), int8 through OpenVINO/NNCF or
ONNX Runtime with its agreement with float32 measured."""
from __future__ import annotations

import warnings

import pytest
import torch

from unireplknet import UniRepLKNet, _runtime
from unireplknet.deploy import deploy_model
from _models import randomise_

BF16_CPU = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
NO_BF16_CPU = frozenset({"avx2", "avx512f", "avx512_vnni"})


def small_model(seed: int = 0) -> UniRepLKNet:
    """A small training-structure model with non-trivial BN statistics, layer scales and GRN parameters."""
    torch.manual_seed(seed)
    model = UniRepLKNet(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13, 3), (5,)),
                        num_classes=10)
    return randomise_(model)


# ------------------------------------------------------------------------------------------ the CPU probe
def test_cpu_probe_reads_model_name_and_flags_from_a_cpuinfo_file(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
                       "model name\t: other\nflags\t\t: fpu\n")
    monkeypatch.setattr(_runtime, "_CPUINFO", str(cpuinfo))
    assert _runtime.cpu_model_name() == "AMD EPYC 9R14"  # the first processor's
    assert _runtime.cpu_flags() == frozenset({"fpu", "sse", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
    assert _runtime.native_bf16_cpu()[0] is True
    cpuinfo2 = tmp_path / "cpuinfo2"
    cpuinfo2.write_text("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_vnni\n")
    monkeypatch.setattr(_runtime, "_CPUINFO", str(cpuinfo2))
    native, why = _runtime.native_bf16_cpu()
    assert native is False and "avx512_bf16" in why
    monkeypatch.setattr(_runtime, "_CPUINFO", str(tmp_path / "absent"))
    assert _runtime.cpu_flags() is None and _runtime.native_bf16_cpu()[0] is False


# ------------------------------------------------------------------------------------------ bf16
def test_bf16_deploy_without_native_bf16_warns_names_the_feature_and_stays_float32(monkeypatch):
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: NO_BF16_CPU)
    model = small_model()
    x = torch.randn(2, 3, 64, 64)
    with pytest.warns(RuntimeWarning, match=r"avx512_bf16.*float32 instead.*int8"):
        deployed = deploy_model(model, "eager", example_input=x, dtype=torch.bfloat16)
    assert deployed.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in deployed.module.parameters())
    # float32 accuracy, not bf16's: the fallback is the float32 deployment itself
    fp32 = deploy_model(model, "eager", example_input=x)
    torch.testing.assert_close(deployed(x), fp32(x), rtol=0, atol=0)


def test_bf16_deploy_with_native_bf16_runs_bf16_weights_within_bf16_tolerance(monkeypatch):
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: BF16_CPU)
    model = small_model()
    x = torch.randn(4, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning where the CPU has bf16
        deployed = deploy_model(model, "eager", example_input=x, dtype=torch.bfloat16)
    assert deployed.dtype == torch.bfloat16
    assert {p.dtype for p in deployed.module.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        want = model(x)
    got = deployed(x)
    assert got.dtype == torch.float32  # back in the input's dtype
    rel = ((got - want).abs().max() / want.abs().max()).item()
    # bf16 rounds at 2^-8 ≈ 0.4 % per op: the logits agree to a few percent, and are not bit-equal to float32's
    assert 0 < rel < 5e-2
    assert deployed.max_rel_error < 5e-2


def test_bf16_refused_for_onnxruntime_and_unknown_dtype(monkeypatch):
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: BF16_CPU)
    with pytest.raises(ValueError, match="bf16.*openvino"):
        deploy_model(small_model(), "onnxruntime", example_input=torch.randn(1, 3, 64, 64), dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32 or torch.bfloat16"):
        deploy_model(small_model(), "eager", example_input=torch.randn(1, 3, 64, 64), dtype=torch.float16)


# ------------------------------------------------------------------------------------------ int8
@pytest.fixture(scope="module")
def digits_probe():
    """The digits recipe's network with random convolutions (layer scales large enough that every block
    counts) and a least-squares head fitted on the training digits: a classifier with real, diverse
    predictions (≈ 95 % held-out accuracy) whose agreement under int8 means something, in a second."""
    from unireplknet.data.digits import DigitsDataset
    from unireplknet.tasks.image.config import DIGITS_MODEL_KWARGS

    torch.manual_seed(0)
    model = UniRepLKNet(in_chans=1, num_classes=10, **DIGITS_MODEL_KWARGS).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.normal_(0.0, 0.5)
        train, val = DigitsDataset("train"), DigitsDataset("val")
        features = model.forward_head(model.forward_features(train.images), pre_logits=True)
        features = torch.cat([features, torch.ones(len(features), 1)], 1)
        targets = torch.nn.functional.one_hot(train.targets, 10).float()
        solution = torch.linalg.solve(features.T @ features + 1e-2 * torch.eye(features.shape[1]),
                                      features.T @ targets)
        model.head.weight.copy_(solution[:-1].T)
        model.head.bias.copy_(solution[-1])
    held_out = [(val.images[i:i + 64], val.targets[i:i + 64]) for i in range(0, len(val), 64)]
    return model, train.images[:64], held_out


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_agrees_with_float32_far_above_a_constant_predictor(digits_probe, backend):
    from unireplknet.export import int8_agreement, quantize_int8

    model, calibration, held_out = digits_probe
    quantized = quantize_int8(model, [calibration], backend=backend, samples=64, threads=1)
    assert quantized.backend == backend and quantized.calibration_images == 64
    if backend == "openvino":  # really quantized: NNCF inserts FakeQuantize nodes that the CPU plugin runs in int8
        assert any(op.get_type_name() == "FakeQuantize" for op in quantized.program.get_ops())
    else:
        import onnx

        assert "QuantizeLinear" in {node.op_type for node in onnx.load_from_string(quantized.program).graph.node}
    report = int8_agreement(model, quantized, held_out)
    assert report["images"] == sum(len(y) for _, y in held_out)
    # the labelled set discriminates: the float32 model is accurate, and its predictions are spread over the
    # classes, so a constant predictor (the control) agrees with it on at most its largest class's share
    assert report["reference_accuracy"] >= 85
    with torch.no_grad():
        predictions = torch.cat([model(x).argmax(-1) for x, _ in held_out])
    control = predictions.bincount().max().item() / len(predictions)
    assert control < 0.2
    assert report["top1_agreement"] >= 0.9
    assert report["accuracy_drop"] <= 3.0
    # the identity check of the measure itself: float32 against itself agrees everywhere, drops nothing
    same = int8_agreement(model, model, held_out)
    assert same["top1_agreement"] == 1.0 and same["accuracy_drop"] == 0.0


def test_int8_agreement_measures_disagreement_and_works_without_labels():
    from unireplknet.export import int8_agreement

    x = torch.randn(8, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    first = lambda t: torch.nn.functional.one_hot(labels, 3).float()  # noqa: E731 — always right
    shifted = lambda t: torch.nn.functional.one_hot((labels + (torch.arange(8) < 2)) % 3, 3).float()  # noqa: E731
    images = x.view(8, 3, 1, 1)
    report = int8_agreement(first, shifted, [(images, labels)])
    assert report["top1_agreement"] == 6 / 8 and report["accuracy_drop"] == pytest.approx(25.0)
    unlabelled = int8_agreement(first, shifted, [images])
    assert unlabelled["top1_agreement"] == 6 / 8 and unlabelled["accuracy_drop"] is None


def test_int8_without_nncf_names_the_extra_and_auto_falls_back_to_onnxruntime(monkeypatch):
    import sys

    from unireplknet import export

    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf → ImportError
    model = small_model()
    with pytest.raises(ImportError, match=r'unireplknet\[int8\].*--format onnx --int8'):
        export.quantize_int8(model, [torch.randn(2, 3, 64, 64)], backend="openvino")
    chosen = []
    monkeypatch.setattr(export, "_quantize_onnxruntime", lambda module, images, exporter: chosen.append(len(images)))
    monkeypatch.setattr(export, "_onnxruntime_runner", lambda program, threads: (lambda x: x))
    assert export.quantize_int8(model, [torch.randn(2, 3, 64, 64)], samples=2).backend == "onnxruntime"
    assert chosen == [2]
    with pytest.raises(ValueError, match="calibration data is empty"):
        export.quantize_int8(model, [], backend="onnxruntime")


def _digits_checkpoint(model, path):
    import json

    from unireplknet.checkpoint import save_model

    data_config = dict(kind="digits", input_size=[1, 32, 32], interpolation="bilinear", crop_pct=1.0)
    save_model(model, path, metadata={"data_config": json.dumps(data_config),
                                      "class_names": json.dumps([str(i) for i in range(10)])})
    return path


def test_export_int8_command_writes_a_quantized_onnx_model_that_keeps_top1(digits_probe, tmp_path, capsys):
    import onnxruntime as ort

    from unireplknet.cli import main
    from unireplknet.data.digits import write_digits_image_folder

    model, _, held_out = digits_probe
    checkpoint = _digits_checkpoint(model, tmp_path / "digits.safetensors")
    calibration = write_digits_image_folder(tmp_path / "calib", "train", limit_per_class=6)
    agreement_data = write_digits_image_folder(tmp_path / "check", "val", limit_per_class=8)
    assert main(["export", str(checkpoint), "--format", "onnx", "--int8", "--calibration", str(calibration),
                 "--agreement-data", str(agreement_data)]) == 0
    printed = capsys.readouterr().out
    assert "int8, onnxruntime, calibrated on 60 images" in printed
    assert "top-1 agreement" in printed and "drop" in printed
    written = tmp_path / "digits_int8.onnx"
    session = ort.InferenceSession(str(written), providers=["CPUExecutionProvider"])
    graph_ops = {node.op_type for node in __import__("onnx").load(str(written)).graph.node}
    assert "QuantizeLinear" in graph_ops and "DequantizeLinear" in graph_ops  # it is really quantized
    images = torch.cat([x for x, _ in held_out])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0]).argmax(-1)
    with torch.no_grad():
        want = model(images).argmax(-1)
    assert (got == want).float().mean().item() >= 0.9


def test_export_int8_command_refuses_incomplete_options(digits_probe, tmp_path, capsys):
    from unireplknet.cli import main

    checkpoint = _digits_checkpoint(digits_probe[0], tmp_path / "digits.safetensors")
    cases = [
        (["--format", "openvino", "--int8"], "needs --calibration DIR"),
        (["--format", "torch-export", "--int8", "--calibration", str(tmp_path)], "ONNX or OpenVINO"),
        (["--calibration", str(tmp_path)], "go with --int8"),
        (["--format", "onnx", "--int8", "--calibration", str(checkpoint)], "not a folder"),
    ]
    for options, message in cases:
        assert main(["export", str(checkpoint)] + options) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.xml"))


def test_calibration_reads_an_idx_folder_train_split_to_calibrate_and_t10k_to_check(tmp_path):
    from _idx_files import write_idx_folder

    from unireplknet.cli import calibration_batches
    from unireplknet.data.build import idx_transform

    root, arrays = write_idx_folder(tmp_path / "idx", n_train=50, n_test=20, classes=3)
    dc = dict(kind="idx", input_size=(1, 32, 32), interpolation="bilinear", mean=(0.3,), std=(0.4,), crop_pct=1.0)
    transform = idx_transform(dc)
    for split, limit, want_count in (("train", 10, 10), ("t10k", 10**9, 20)):
        images, labels = arrays[split]  # the arrays written, not read back: the reader is under test too
        batches = list(calibration_batches(root, dc, 1, None, limit, batch_size=4, idx_split=split))
        got_images = torch.cat([b[0] for b in batches])
        got_labels = torch.cat([b[1] for b in batches])
        assert got_images.shape == (want_count, 1, 32, 32)
        # An even spread over the split, each image through the model's own evaluation transform.
        picks = [int(i * len(labels) / limit) for i in range(limit)] if len(labels) > limit else range(len(labels))
        assert got_labels.tolist() == [int(labels[i]) for i in picks]
        assert torch.equal(got_images, torch.stack([transform(images[i]) for i in picks]))

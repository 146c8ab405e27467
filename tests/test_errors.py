"""Bad input gets an error that names the problem and the fix; nothing is half-loaded silently."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import unireplknet
from unireplknet import CheckpointError, CheckpointMismatchError, UniRepLKNet
from conftest import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model().eval()


def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match=r"3 input channels, got 1.*in_chans=1"):
        model(torch.randn(1, 1, 64, 64))


def test_channels_last_numpy_style_input_gets_a_hint(model):
    with pytest.raises(ValueError, match="permute"):
        model(torch.randn(1, 64, 64, 3))


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 1, 3, 64, 64)])
def test_non_4d_input(model, shape):
    with pytest.raises(ValueError, match="4-D"):
        model(torch.randn(*shape))


def test_image_too_small(model):
    with pytest.raises(ValueError, match="too small.*at least 32x32"):
        model(torch.randn(1, 3, 16, 64))


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown UniRepLKNet variant 'unireplknet_q'.*unireplknet_a"):
        unireplknet.create_model("unireplknet_q")
    with pytest.raises(ValueError, match="unireplknet_xl"):
        unireplknet.variant_config("huge")


def test_unsupported_kernel_size():
    with pytest.raises(ValueError, match="kernel size"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,), (19,), (3,), (3,)))


def _snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _unchanged(m, before):
    return all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_checkpoint_of_the_wrong_variant_names_it(reference, tmp_path):
    path = tmp_path / "a.pth"
    torch.save({"model": reference["train"]}, path)
    model = timm.create_model("unireplknet_f")
    before = _snapshot(model)
    with pytest.raises(CheckpointMismatchError, match="checkpoint is unireplknet_a but the model is unireplknet_f"):
        unireplknet.load_checkpoint(model, path)
    assert _unchanged(model, before)  # nothing half-loaded
    with pytest.raises(CheckpointMismatchError, match="unireplknet_a"):
        timm.create_model("unireplknet_f", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_checkpoint_of_another_class_count(reference, tmp_path):
    path = tmp_path / "a.pth"
    torch.save(reference["train"], path)
    model = timm.create_model("unireplknet_a", num_classes=10)
    before = _snapshot(model)
    with pytest.raises(CheckpointMismatchError, match="1000-class head.*num_classes=1000.*drop_mismatched_head"):
        unireplknet.load_checkpoint(model, path)
    assert _unchanged(model, before)
    with pytest.warns(UserWarning, match="head"):
        unireplknet.load_checkpoint(model, path, drop_mismatched_head=True)
    assert torch.equal(model.state_dict()["stages.3.1.pwconv1.1.weight"], reference["train"]["stages.3.1.pwconv1.1.weight"])


def test_wrong_file_types(tmp_path, model):
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(CheckpointError, match="not a readable checkpoint.*neither a PyTorch.*nor a safetensors"):
        unireplknet.load_checkpoint(model, text)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        unireplknet.load_checkpoint(model, empty)
    with pytest.raises(FileNotFoundError, match="not found"):
        unireplknet.load_checkpoint(model, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="directory"):
        unireplknet.load_checkpoint(model, tmp_path)


def test_truncated_files(tmp_path, model):
    good_pth = tmp_path / "good.pth"
    torch.save(model.state_dict(), good_pth)
    good_st = unireplknet.save_model(model, tmp_path / "good.safetensors")
    for good in (good_pth, good_st):
        data = good.read_bytes()
        cut = tmp_path / f"cut{good.suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated.*corrupt"):
            unireplknet.load_checkpoint(tiny_model(), cut)


def test_exported_programs_are_not_read_as_checkpoints(tmp_path, model):
    """A torch.export archive is a zip like a torch.save file, and an ONNX file is a protobuf; both are named."""
    program = torch.export.export(nn.Conv2d(1, 1, 1).eval(), (torch.zeros(1, 1, 2, 2),))
    pt2 = tmp_path / "model.pth"  # misnamed on purpose: the header decides, not the suffix
    torch.export.save(program, pt2)
    with pytest.raises(CheckpointError, match=r"torch\.export program.*not a checkpoint"):
        unireplknet.load_checkpoint(model, pt2)
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x08\x12\x07pytorch")  # field 1 (ir_version = 8), then producer_name
    with pytest.raises(CheckpointError, match="ONNX model, not a checkpoint"):
        unireplknet.load_checkpoint(model, onnx_file)


def _bad_files(tmp_path):
    """Files named like checkpoints that are none: what a failed download or a mix-up leaves behind."""
    files = {
        "text": b"hello world\nthese are my notes\n",
        "html": b"<!DOCTYPE html><html><head><title>404</title></head><body>Not Found</body></html>",
        "random": bytes((i * 197 + 89) % 256 for i in range(4096)),
        "pickle-like garbage": b"\x80\x02" + bytes((i * 31 + 7) % 256 for i in range(2000)),
    }
    paths = {}
    for name, data in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.pth"
        path.write_bytes(data)
        paths[name] = path
    return paths


@pytest.mark.parametrize("kind", ["text", "html", "random", "pickle-like garbage"])
def test_files_that_are_no_checkpoint_are_called_so(tmp_path, model, kind):
    """A text file renamed .pth used to raise KeyError: 101, HTML or random bytes advice to pass
    weights_only=False; the error says the file is not a readable checkpoint, and never advises unpickling."""
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
        unireplknet.load_checkpoint(tiny_model(), path)
    message = str(info.value)
    assert "weights_only" not in message
    assert str(path) in message
    if kind == "html":
        assert "HTML" in message
    if kind == "text":
        assert "text file" in message
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        unireplknet.load_model(path)


@pytest.mark.parametrize("dtype, fix", [(torch.uint8, r"x\.float\(\) / 255"), (torch.int64, r"x\.float\(\)"),
                                        (torch.float64, r"x\.to\(torch\.float32\)"),
                                        (torch.float16, r"x\.to\(torch\.float32\)")])
def test_input_of_another_dtype_names_the_dtype_and_the_fix(model, dtype, fix):
    x = torch.zeros(1, 3, 64, 64).to(dtype)
    with pytest.raises(TypeError, match=str(dtype).replace(".", r"\.")) as info:
        model(x)
    assert info.match(fix)


def test_autocast_input_of_another_dtype_is_accepted(model):
    """Under autocast the operators choose the compute dtype: a bfloat16 batch into an fp32 model runs."""
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x.bfloat16())
    assert out.shape == (1, 5) and torch.isfinite(out).all()


class UnsafePayload:
    """Any Python object: unpickling it would run code chosen by whoever wrote the file."""


def test_unsafe_pickles_are_refused(tmp_path, model):
    path = tmp_path / "unsafe.pth"
    torch.save({"model": model.state_dict(), "extra": UnsafePayload()}, path)
    with pytest.raises(CheckpointError, match="not unpickled for safety"):
        unireplknet.load_checkpoint(tiny_model(), path)


def test_not_a_unireplknet_state_dict(tmp_path, model):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(CheckpointMismatchError, match="does not look like a UniRepLKNet checkpoint"):
        unireplknet.load_checkpoint(model, path)
    with pytest.raises(CheckpointMismatchError, match="not a UniRepLKNet state dict"):
        unireplknet.load_model(path)


def test_non_tensor_entries(tmp_path, model):
    path = tmp_path / "odd.pth"
    torch.save({"model": {"a": 1}}, path)
    with pytest.raises(CheckpointError, match="not tensors"):
        unireplknet.load_checkpoint(model, path)

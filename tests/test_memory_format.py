"""channels_last end to end: the model itself makes no layout copies (issue: speed-ready structure)."""
from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import unireplknet
from unireplknet import ops
from conftest import tiny_model

_COPY_OPS = ("aten.clone", "aten.copy_", "aten._to_copy", "aten.contiguous")


class _CountCopies(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in _COPY_OPS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def plain_dwconv():
    """The plain PyTorch depthwise conv, so only the model's own structure is under test (the ops dispatcher
    may choose a layout per kernel by measurement; docs/ops.md)."""
    previous = ops.get_default_impl()
    ops.set_default_impl("torch")
    yield
    ops.set_default_impl(previous)


@pytest.mark.parametrize("deploy", [False, True])
def test_channels_last_forward_makes_no_layout_copies(plain_dwconv, deploy):
    model = tiny_model().eval()
    if deploy:
        unireplknet.reparameterize(model)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), _CountCopies() as counter:
        feats = model.forward_features(x)
    assert not counter.counts, f"layout copies in the channels_last forward: {dict(counter.counts)}"
    assert feats.is_contiguous(memory_format=torch.channels_last)


def test_the_counter_sees_copies():
    """The check above can fail: an NCHW model with permuted Linear inputs does copy."""
    model = tiny_model().eval()
    with torch.no_grad(), _CountCopies() as counter:
        model.forward_features(torch.randn(2, 3, 64, 64))
    assert sum(counter.counts.values()) > 0

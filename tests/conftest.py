"""Shared fixtures: the official reference data (../shared/reference) and small models."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    env = os.environ.get("UNIREPLKNET_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference():
    """The official implementation's UniRepLKNet-A data: config, train/deploy state dicts, inputs and outputs."""
    from safetensors.torch import load_file

    ref = reference_dir()
    if not (ref / "unireplknet_a.train.safetensors").exists():
        message = (
            f"reference data not found in {ref}; set UNIREPLKNET_REFERENCE_DIR to the folder holding "
            "unireplknet_a.*.safetensors"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the reference data must be there: a skip would hide a failure
        pytest.skip(message)
    meta = json.loads((ref / "unireplknet_a.json").read_text())
    return dict(
        dir=ref,
        kwargs=meta["constructor_kwargs"],
        train=load_file(str(ref / "unireplknet_a.train.safetensors")),
        deploy=load_file(str(ref / "unireplknet_a.deploy.safetensors")),
        io=load_file(str(ref / "unireplknet_a.io.safetensors")),
        keys=json.loads((ref / "official_state_dict_keys.json").read_text()),
    )


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|: the reference README's measure."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def randomize_bn_and_scales(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, and GRN / layer scale non-zero values,
    so that every fusion step of re-parameterization changes the numbers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "beta")):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def tiny_model(**kwargs):
    """A small UniRepLKNet with every block kind: SmaK 3 and 5, LarK 7 and 13, identity (0)."""
    from unireplknet import UniRepLKNet

    cfg = dict(depths=(1, 2, 2, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,), (13, 5), (7, 0), (9,)), num_classes=5)
    cfg.update(kwargs)
    return UniRepLKNet(**cfg)

"""Shared fixtures: the official reference data (tests/data/reference, made by scripts/make_test_fixtures.py)
and small models."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The trimmed official reference data that ships with the repository (always present).
FIXTURE_DIR = REPO_ROOT / "tests" / "data" / "reference"


def load_repo_script(relative: str) -> types.ModuleType:
    """A script of the repository (``scripts/…``, ``benchmarks/…``: not part of the package) imported by path."""
    path = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_baselines(modality: str) -> types.ModuleType:
    """A module of the classical baselines (``benchmarks/baselines/<modality>.py``, a package outside the library)."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        return importlib.import_module(f"baselines.{modality}")
    finally:
        sys.path.pop(0)


def full_reference_dir() -> Path:
    """Where the complete official reference data may be (``UNIREPLKNET_REFERENCE_DIR`` or ../shared/reference)."""
    env = os.environ.get("UNIREPLKNET_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference"


def reference_dirs() -> List[Path]:
    """The repository's fixture, plus the complete official data when it is present (an extra check, never a skip)."""
    dirs = [FIXTURE_DIR]
    full = full_reference_dir()
    if (full / "unireplknet_a.deploy.safetensors").exists() and full.resolve() != FIXTURE_DIR.resolve():
        dirs.append(full)
    return dirs


def load_reference(ref: Path) -> Dict[str, Any]:
    """The official UniRepLKNet-A data in ``ref``: config, train state dict, official deploy tensors, inputs/outputs.

    ``deploy`` holds the official deploy tensors that folder has (the fixture: stem, stages 0-1; the complete
    data: all); ``deploy_keys`` is the complete official deploy key list.
    """
    from safetensors.torch import load_file

    meta = json.loads((ref / "unireplknet_a.json").read_text())
    keys = json.loads((ref / "official_state_dict_keys.json").read_text())
    full_deploy = ref / "unireplknet_a.deploy.safetensors"
    deploy = load_file(str(full_deploy if full_deploy.exists() else ref / "unireplknet_a.deploy.stages01.safetensors"))
    return dict(
        dir=ref,
        kwargs=meta["constructor_kwargs"],
        train=load_file(str(ref / "unireplknet_a.train.safetensors")),
        deploy=deploy,
        deploy_keys=[k for k, _ in keys["unireplknet_a"]["deploy"]],
        io=load_file(str(ref / "unireplknet_a.io.safetensors")),
        keys=keys,
    )


def reference_dir() -> Path:
    """The folder of the repository's reference fixture (kept for tests that read its files by path)."""
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def reference():
    """The official implementation's UniRepLKNet-A data from the repository's fixture (tests/data/reference)."""
    return load_reference(FIXTURE_DIR)


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


@pytest.fixture(autouse=True)
def _run_in_own_tmp_dir(tmp_path, monkeypatch):
    """Every test runs in its own empty working directory: none may read or write the caller's ``runs/``
    (a documented ``unireplknet train`` from the clone leaves one there) or find files relative to where
    pytest was started. Files of the repository are found from ``REPO_ROOT``."""
    monkeypatch.chdir(tmp_path)

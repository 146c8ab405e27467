"""All nine variants against the official key layout and the paper's table."""
from __future__ import annotations

import pytest
import torch

import unireplknet
from unireplknet import UniRepLKNet, variant_config
from unireplknet.zoo import VARIANTS, count_macs

NAMES = [f"unireplknet_{v}" for v in VARIANTS]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("structure", ["train", "deploy"])
def test_state_dict_layout_equals_official(reference, name, structure):
    official = reference["keys"][name]
    with torch.device("meta"):
        model = UniRepLKNet(**variant_config(name), deploy=structure == "deploy")
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == official[structure]  # same keys, same shapes, same order
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == official[f"params_{structure}"]


@pytest.fixture(scope="module")
def table():
    return {row["name"]: row for row in unireplknet.variants_table(224)}


def _matches_published(value: float, published: float, decimals: int) -> bool:
    """Within 0.5% of the published figure, or equal to it at the precision it was published with."""
    return abs(value - published) / published < 0.005 or round(value, decimals) == published


@pytest.mark.parametrize("name", NAMES)
def test_paper_table_parameters(table, name):
    row = table[name]
    assert _matches_published(row["params_deploy"] / 1e6, row["paper_params_m"], 2)


@pytest.mark.parametrize("name", NAMES[:6])  # the README gives 224×224 MACs for a … s
def test_paper_table_macs_224(table, name):
    row = table[name]
    assert _matches_published(row["gmacs_deploy"], row["paper_gmacs"], 2)


@pytest.mark.parametrize("v", ["s", "b", "l", "xl"])  # and 384×384 MACs for the 22K models s … xl
def test_paper_table_macs_384(v):
    with torch.device("meta"):
        model = UniRepLKNet(**variant_config(v), deploy=True)
    gmacs = count_macs(model, (3, 384, 384)) / 1e9
    assert _matches_published(gmacs, VARIANTS[v].paper_gmacs_384, 0 if v == "xl" else 1)


def test_count_macs_matches_hand_count():
    """MACs of a single 3×3 conv: H·W·C_out·C_in·9 — an independent check of the counter itself."""
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    assert count_macs(conv, (4, 10, 10)) == 10 * 10 * 6 * 4 * 9


def test_kernel_layouts():
    assert variant_config("t")["kernel_sizes"][2] == (13, 3) * 9
    assert variant_config("s")["kernel_sizes"][2] == (13, 3, 3) * 9
    assert variant_config("n")["kernel_sizes"] == ((3, 3), (13, 13), (13,) * 8, (13, 13))


def test_custom_depths_need_kernel_sizes():
    with pytest.raises(ValueError, match="kernel_sizes"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="one kernel size per block"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (3,), (3, 3), (3,)))

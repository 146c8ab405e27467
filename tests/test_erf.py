"""Effective receptive field: closed-form cases, the area-ratio function, invariances, and the command."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from unireplknet.analysis import erf, high_contribution_area, log_scale
from unireplknet.analysis import erf_cli
from unireplknet.model import UniRepLKNet, reparameterize

THRESHOLDS = (0.2, 0.3, 0.5, 0.75, 0.99)


def _smallest_odd_at_least(value: float) -> int:
    s = math.ceil(value - 1e-9)
    return s if s % 2 == 1 else s + 1


def _ones_conv(channels: int, k: int, groups: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, k, padding=k // 2, groups=groups, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def _tiny_unireplknet(**kw) -> UniRepLKNet:
    torch.manual_seed(0)
    model = UniRepLKNet(in_chans=3, num_classes=10, depths=(1, 1, 1, 1), dims=(8, 16, 16, 16),
                        kernel_sizes=((7,), (5,), (3,), (3,)), **kw)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the deploy fusion changes numbers
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if getattr(m, "gamma", None) is not None and isinstance(m.gamma, nn.Parameter):
                m.gamma.uniform_(0.2, 1.0)  # layer scale far from 1e-6: the blocks matter
    return model


# ----------------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("contribution", ["abs", "relu"])
def test_all_ones_depthwise_kxk_is_exactly_a_kxk_square(contribution):
    channels, k, size = 3, 7, 31
    x = torch.rand(2, channels, size, size) + 0.1  # positive: the 'relu' variant's ReLU on the output passes all
    result = erf(_ones_conv(channels, k, groups=channels), x, stage=None, contribution=contribution,
                 ratio_on="linear")
    # d(sum_c out_c[centre]) / dx_c[p] = 1 inside the K×K window for each channel: C after the channel sum.
    expected = np.zeros((size, size))
    c, r = size // 2, k // 2
    expected[c - r:c + r + 1, c - r:c + r + 1] = channels
    np.testing.assert_array_equal(result.scores, expected)
    # A uniform K×K square: a centred s×s square (odd s <= K) holds s²/K² of the score.
    for t in THRESHOLDS:
        side = _smallest_odd_at_least(k * math.sqrt(t))
        assert result.area[t] == (side, pytest.approx(side * side / size**2))


def test_all_ones_square_ratio_is_the_same_on_the_log_scale():
    # log10(x + 1) of a constant is a constant: the papers' log-scaled ratio equals the linear one here.
    x = torch.randn(1, 2, 41, 41)
    conv = _ones_conv(2, 13, groups=2)
    assert erf(conv, x, stage=None, ratio_on="log").area == erf(conv, x, stage=None, ratio_on="linear").area


@pytest.mark.parametrize("n", [1, 2, 4])
def test_stacked_3x3_convs_give_the_trinomial_profile(n):
    size = 2 * n + 15
    stack = nn.Sequential(*[_ones_conv(1, 3, groups=1) for _ in range(n)])
    result = erf(stack, torch.randn(1, 1, size, size), stage=None, ratio_on="linear")
    # Each 3×3 all-ones layer convolves the gradient with [1, 1, 1] ⊗ [1, 1, 1]: after n layers the profile along
    # each axis is the coefficients of (1 + z + z²)^n, the discrete analogue of the binomial/Gaussian ERF.
    profile = np.polynomial.polynomial.polypow([1, 1, 1], n)
    expected = np.zeros((size, size))
    c = size // 2
    expected[c - n:c + n + 1, c - n:c + n + 1] = np.outer(profile, profile)
    np.testing.assert_array_equal(result.scores, expected)
    support = np.argwhere(result.scores > 0)
    assert (support.max(0) - support.min(0) + 1).tolist() == [2 * n + 1, 2 * n + 1]


def test_relu_variant_differs_from_abs_where_channels_cancel():
    # Two output channels +x and -x at each pixel: their sum is 0, so 'abs' (gradient of the channel sum) sees
    # no contribution at all, while 'relu' (RepLKNet's script: ReLU before the sum) keeps the positive channel.
    # The same cancellation makes the channel sum of a freshly initialised LayerNorm output constant.
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    x = torch.rand(1, 1, 9, 9) + 0.5
    with pytest.warns(UserWarning, match="contribution='relu'"):
        flat = erf(conv, x, stage=None, contribution="abs")
    assert not flat.scores.any() and all(math.isnan(r) for r in flat.area_ratios.values())
    expected = np.zeros((9, 9))
    expected[4, 4] = 1.0
    np.testing.assert_array_equal(erf(conv, x, stage=None, contribution="relu").scores, expected)


# ----------------------------------------------------------------------------------------------- area ratios
@pytest.mark.parametrize("k,size", [(21, 101), (9, 64)])
def test_area_ratio_of_a_uniform_square(k, size):
    m = np.zeros((size, size))
    c = size // 2
    m[c - k // 2:c + k // 2 + 1, c - k // 2:c + k // 2 + 1] = 2.5
    got = high_contribution_area(m, THRESHOLDS + (1.0,))
    for t in THRESHOLDS + (1.0,):
        side = _smallest_odd_at_least(k * math.sqrt(t))
        assert got[t][0] == side
        assert got[t][1] == pytest.approx(side**2 / size**2)


@pytest.mark.parametrize("sigma", [6.0, 15.0])
def test_area_ratio_of_a_gaussian_matches_the_analytic_square(sigma):
    size = 301
    yy, xx = np.mgrid[:size, :size] - size // 2
    m = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    got = high_contribution_area(m, THRESHOLDS)
    for t in THRESHOLDS:
        # An isotropic Gaussian puts erf(a / (σ√2))² of its mass in the centred square of half-side a.
        half = sigma * math.sqrt(2) * float(torch.special.erfinv(torch.tensor(math.sqrt(t), dtype=torch.float64)))
        analytic = (2 * half) ** 2 / size**2
        side = got[t][0]
        # The measured square is the smallest odd side holding t, so it lies in [2a, 2a + 2) up to sampling.
        assert 2 * half - 0.2 <= side <= 2 * half + 2.2, (t, side, 2 * half)
        slack = ((2 * half + 2.2) ** 2 - (2 * half) ** 2) / size**2
        assert abs(got[t][1] - analytic) <= slack


def test_whole_image_and_even_sizes_and_bad_maps():
    m = np.ones((10, 16))
    assert high_contribution_area(m, (1.0,))[1.0][1] == 1.0  # the clipped largest square is the whole image
    # Uniform 10×16: an odd square of side s holds s²/160 of the score until it meets the top/bottom border.
    assert high_contribution_area(m, (0.01, 0.5)) == {0.01: (3, 9 / 160), 0.5: (9, 81 / 160)}
    # Side 11 is clipped to 10 rows: 110 of 160 pixels.
    assert high_contribution_area(m, (0.6,))[0.6] == (11, 110 / 160)
    with pytest.raises(ValueError, match="all zeros"):
        high_contribution_area(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="non-negative"):
        high_contribution_area(-np.ones((5, 5)))
    with pytest.raises(ValueError, match="thresholds"):
        high_contribution_area(np.ones((5, 5)), (1.5,))


def test_log_scale_is_log10_plus_one_over_its_max():
    m = np.array([[0.0, 9.0], [99.0, 999.0]])
    np.testing.assert_allclose(log_scale(m), [[0, 1 / 3], [2 / 3, 1]])
    np.testing.assert_array_equal(log_scale(np.zeros((2, 2))), np.zeros((2, 2)))


# ----------------------------------------------------------------------------------------------- invariances
def test_the_map_does_not_depend_on_the_batch_size():
    # float64, so that what is compared is the math (each image's gradient depends on that image alone in eval
    # mode) and not float32 rounding, which differs between batched and single GEMMs.
    model = _tiny_unireplknet().double()
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64)
    one = erf(model, x, stage=4, batch_size=1)
    four = erf(model, x, stage=4, batch_size=4)
    assert one.images == four.images == 4
    np.testing.assert_allclose(one.scores, four.scores, rtol=1e-9, atol=1e-12 * one.scores.max())
    assert one.area == four.area


def test_training_and_deploy_structure_give_the_same_map():
    # float64: the fusion is exact algebra, so the maps agree to rounding of that precision.
    model = _tiny_unireplknet().double()
    deployed = reparameterize(copy.deepcopy(model).eval(), inplace=True)
    assert deployed.deploy and not model.deploy
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    for stage in (1, 4):
        a, b = erf(model, x, stage=stage), erf(deployed, x, stage=stage)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-8, atol=1e-12 * a.scores.max())
        assert a.area == b.area


def test_official_deploy_weights_give_the_training_weights_map(reference):
    # The official re-parameterized state dict, not our fusion, is the truth for the deploy side.
    train = UniRepLKNet(**reference["kwargs"])
    train.load_state_dict(reference["train"])
    deploy = UniRepLKNet(**reference["kwargs"], deploy=True)
    # The repository's fixture holds the official deploy tensors of the stem and stages 1-2 (tests/data/reference),
    # which is everything the output of stage 2 depends on.
    missing = deploy.load_state_dict(reference["deploy"], strict=False).missing_keys
    assert all(k.startswith(("downsample_layers.2", "downsample_layers.3", "stages.2", "stages.3", "norm", "head"))
               for k in missing), missing
    x = reference["io"]["input"][:1, :, :96, :96].contiguous()
    a, b = erf(train, x, stage=2), erf(deploy, x, stage=2)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-3, atol=1e-4 * a.scores.max())


def test_the_model_is_left_as_it_was_found():
    model = _tiny_unireplknet().train()
    erf(model, torch.randn(1, 3, 64, 64), stage=2, grad_checkpointing=True)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not model.grad_checkpointing
    assert all(p.grad is None for p in model.parameters())  # no weight gradients were computed


def test_grad_checkpointing_gives_the_same_map():
    model = _tiny_unireplknet()
    x = torch.randn(1, 3, 64, 64)
    np.testing.assert_allclose(erf(model, x, grad_checkpointing=True).scores, erf(model, x).scores, rtol=1e-5)


# ----------------------------------------------------------------------------------------------- stages
def test_stages_are_found_through_feature_info_in_any_timm_model():
    import timm

    resnet = timm.create_model("resnet18", num_classes=0)
    x = torch.randn(1, 3, 64, 64)
    for stage, module in zip((1, 2, 3, 4), ("layer1", "layer2", "layer3", "layer4")):
        r = erf(resnet, x, stage=stage)
        assert (r.module, r.feature_size) == (module, (64 >> (stage + 1),) * 2)
    assert erf(resnet, x, stage="layer3").feature_size == (4, 4)
    ours = _tiny_unireplknet()
    assert erf(ours, x, stage=3).module == "stages.2"
    with pytest.raises(ValueError, match="stage must be 1, 2, 3 or 4"):
        erf(resnet, x, stage=5)
    with pytest.raises(ValueError, match="no module named"):
        erf(resnet, x, stage="layer9")
    with pytest.raises(ValueError, match="feature_info"):
        erf(nn.Sequential(nn.Conv2d(3, 3, 3)), x, stage=4)


def test_a_later_stage_sees_at_least_as_wide():
    # Stage 1 of a conv stack is a part of stage 4's input path: its 99 % square cannot be larger.
    model = _tiny_unireplknet()
    x = torch.randn(2, 3, 128, 128)
    assert erf(model, x, stage=1).area_ratios[0.99] <= erf(model, x, stage=4).area_ratios[0.99]


# ----------------------------------------------------------------------------------------------- command
def test_command_writes_one_figure_and_one_table(tmp_path, capsys):
    out = tmp_path / "erf.png"
    rc = erf_cli.main(["--model", "unireplknet_t,convnext_tiny", "--input-size", "64", "--images", "1",
                       "--output", str(out), "--no-progress"])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads(out.with_suffix(".json").read_text())
    assert [r["model"] for r in table["models"]] == ["unireplknet_t", "convnext_tiny"]
    assert [r["module"] for r in table["models"]] == ["stages.3", "stages.3"]
    assert set(table["models"][0]["area_ratio"]) == {"0.2", "0.3", "0.5", "0.75", "0.99"}
    csv_lines = out.with_suffix(".csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("model,label,weights,module")
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as maps:
        assert maps["map_0"].shape == (64, 64) and list(maps["labels"]) == ["unireplknet_t", "convnext_tiny"]
    printed = capsys.readouterr().out
    assert "r(50%)" in printed and "convnext_tiny" in printed


def test_command_reads_checkpoints_and_gets_the_in_memory_map(tmp_path):
    import timm
    from safetensors.torch import save_file

    from unireplknet import save_model

    ours = _tiny_unireplknet()
    save_model(ours, tmp_path / "ours.safetensors")
    torch.manual_seed(1)
    theirs = timm.create_model("resnet18", num_classes=10, in_chans=3)
    save_file(theirs.state_dict(), str(tmp_path / "resnet.safetensors"))
    out = tmp_path / "table.json"
    rc = erf_cli.main(["--model", "unireplknet_a,resnet18", "--checkpoint",
                       f"{tmp_path / 'ours.safetensors'},{tmp_path / 'resnet.safetensors'}",
                       "--input-size", "64", "--images", "2", "--output", str(out), "--no-progress"])
    assert rc == 0 and not (tmp_path / "table.png").exists()  # a .json output writes no figure
    images = erf_cli.embedded_images(2, 64, 3)
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as maps:
        np.testing.assert_allclose(maps["map_0"], erf(ours, images).scores, rtol=1e-4)
        np.testing.assert_allclose(maps["map_1"], erf(theirs, images).scores, rtol=1e-4)


def test_command_errors_name_the_problem_and_the_fix(tmp_path, capsys, monkeypatch):
    assert erf_cli.main(["--model", "resnet18,resnet18", "--checkpoint", "a.pth", "--output",
                         str(tmp_path / "e.json")]) == 2
    assert "one per model" in capsys.readouterr().err
    assert erf_cli.main(["--model", "no_such_net", "--output", str(tmp_path / "e.json")]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    assert erf_cli.main(["--model", "resnet18", "--data", str(tmp_path / "missing"), "--input-size", "64",
                         "--output", str(tmp_path / "e.json")]) == 2
    assert "not a folder" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert erf_cli.main(["--model", "resnet18", "--output", str(tmp_path / "e.png")]) == 2
    assert "unireplknet[plot]" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_image_folder_input(tmp_path):
    from unireplknet.data.digits import write_digits_image_folder

    write_digits_image_folder(tmp_path / "imgs", limit_per_class=1)
    out = tmp_path / "r.csv"
    rc = erf_cli.main(["--model", "resnet18", "--data", str(tmp_path / "imgs"), "--images", "3",
                       "--input-size", "64", "--output", str(out), "--no-progress", "--sample", "first"])
    assert rc == 0
    assert json.loads(out.with_suffix(".json").read_text())["models"][0]["images"] == 3


# 11 sorted files: 0…4, the broken one (index 5), 5…9. 'spread' picks indices 0, 5, 10; the broken pick is
# replaced by the first file not picked (level 1).
@pytest.mark.parametrize("how,levels", [("first", [0, 1, 2]), ("spread", [0, 9, 1])])
def test_folder_images_are_picked_first_or_evenly_spread(tmp_path, how, levels):
    import timm
    from PIL import Image

    for i in range(10):  # file i is a flat grey image of level 20·i: its mean identifies it after loading
        (tmp_path / f"c{i}").mkdir()
        Image.new("L", (40, 40), color=20 * i).save(tmp_path / f"c{i}" / f"{i}.png")
    (tmp_path / "c4" / "x_broken.png").write_bytes(b"not an image")
    model = timm.create_model("resnet18", in_chans=1, num_classes=0)
    x = erf_cli.folder_images(str(tmp_path), 3, 32, model, how)
    assert x.shape == (3, 1, 32, 32)
    got = (x.mean((1, 2, 3)) * 0.5 + 0.5) * 255 / 20  # undo the 0.5/0.5 grey normalisation
    np.testing.assert_allclose(got.numpy(), levels, atol=0.05)


def test_command_says_whether_the_weights_are_random_or_trained(tmp_path, capsys, monkeypatch):
    """An untrained network's ERF shows its initialisation: the console, the table and the figure say
    "random weights"; a checkpoint's row says "trained: <file>"."""
    from unireplknet import save_model

    trained = tmp_path / "ours.safetensors"
    save_model(_tiny_unireplknet(), trained)
    drawn = {}
    monkeypatch.setattr(erf_cli, "plot_erf", lambda maps, titles, path, caption="": drawn.update(titles=titles))
    out = tmp_path / "erf.png"
    rc = erf_cli.main(["--model", "unireplknet_a,unireplknet_a", "--checkpoint", f"{trained},none",
                       "--labels", "ours,init", "--input-size", "64", "--images", "1", "--output", str(out),
                       "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    table_lines = printed.splitlines()
    ours_line = next(line for line in table_lines if line.startswith("ours"))
    init_line = next(line for line in table_lines if line.startswith("init"))
    assert f"trained: {trained}" in ours_line and "random weights" not in ours_line
    assert "random weights (seed 0)" in init_line
    assert "random weights (untrained, seed 0): init" in printed
    rows = json.loads(out.with_suffix(".json").read_text())["models"]
    assert [r["weights"] for r in rows] == [f"trained: {trained}", "random weights (seed 0)"]
    csv_rows = out.with_suffix(".csv").read_text().splitlines()
    assert csv_rows[0].split(",")[2] == "weights"
    assert csv_rows[1].split(",")[2] == f"trained: {trained}" and csv_rows[2].split(",")[2] == "random weights (seed 0)"
    assert f"trained: {trained}" in drawn["titles"][0] and "random weights" in drawn["titles"][1]
    assert "random weights" not in drawn["titles"][0]


def test_command_with_only_trained_weights_prints_no_random_weights_note(tmp_path, capsys):
    from unireplknet import save_model

    trained = tmp_path / "ours.safetensors"
    save_model(_tiny_unireplknet(), trained)
    rc = erf_cli.main(["--model", "unireplknet_a", "--checkpoint", str(trained), "--input-size", "64",
                       "--images", "1", "--output", str(tmp_path / "t.json"), "--no-progress"])
    assert rc == 0
    assert "random weights" not in capsys.readouterr().out

"""benchmarks/corrformer_headroom.py: its ridge is the demo's baseline, its residual learner starts exactly at
the ridge, and its neighbour blocks are the adjacent nodes' windows (the first: the western one)."""
import json

import pytest
import torch

from unireplknet.tasks.forecast import corrformer as cf
from unireplknet.data.timeseries import global_weather
from conftest import load_repo_script


hr = load_repo_script("benchmarks/corrformer_headroom.py")
CFG = cf.PRESETS["demo"]


@pytest.fixture(scope="module")
def weather_dir(tmp_path_factory):
    """The demo's generated world (308 stations, node tree 4 × 7), 12 days: about a second to write."""
    return global_weather.write(tmp_path_factory.mktemp("weather"), 308, 12, 0)


@pytest.fixture(scope="module")
def designs(weather_dir):
    windows = {s: cf.global_station_windows(weather_dir, "temp", s, CFG, 1) for s in hr.SPLITS}
    ridge = cf.LinearWindowBaseline(CFG, windows["train"][1])
    return ridge, {s: hr.build_design(w, ridge) for s, (w, _) in windows.items()}


def test_the_ridge_is_the_demos_baseline(weather_dir, designs):
    ridge, d = designs
    windows, _ = cf.global_station_windows(weather_dir, "temp", "train", CFG, 1)
    ridge.fit(windows)
    weight = hr.ridge_solve(d["train"].rows, d["train"].target, ridge.ridge)
    torch.testing.assert_close(weight, ridge.weight, rtol=1e-6, atol=1e-8)
    test, _ = cf.global_station_windows(weather_dir, "temp", "test", CFG, 1)
    reported = cf.evaluate(ridge, test, None, 10.0, batch_size=64)["all"]["mse_physical"]
    assert hr.physical_mse(d["test"].predict(weight), d["test"], 10.0) == pytest.approx(reported, rel=1e-5)


def test_the_residual_learner_starts_exactly_at_the_ridge(designs):
    _, d = designs
    weight = hr.ridge_solve(d["train"].rows, d["train"].target, 1e-3)
    model = hr.RidgeResidual(weight, hidden=16)
    rows = d["val"].rows
    assert torch.equal(model(rows), rows @ weight.float())


def test_the_neighbour_blocks_are_the_adjacent_nodes_of_the_tree(designs):
    _, d = designs
    rows = d["val"].rows
    width = CFG.seq_len * CFG.enc_in
    bands, sectors = CFG.node_list
    got = hr.neighbour_rows(rows, CFG, hr.NEIGHBOURS)
    assert torch.equal(got[:, :rows.shape[1]], rows)
    blocks = got[:, rows.shape[1]:].reshape(-1, CFG.node_num, 4, width)
    per_window = rows.reshape(-1, bands, sectors, rows.shape[1])
    for band in range(bands):
        for sector in range(sectors):
            node = band * sectors + sector
            expected = [per_window[:, band, (sector - 1) % sectors], per_window[:, band, (sector + 1) % sectors],
                        per_window[:, (band - 1) % bands, sector], per_window[:, (band + 1) % bands, sector]]
            for k, want in enumerate(expected):
                assert torch.equal(blocks[:, node, k], want[:, :width])
    assert torch.equal(hr.neighbour_rows(rows, CFG)[:, rows.shape[1]:], got[:, rows.shape[1]:rows.shape[1] + width])


def test_the_script_writes_its_table_and_json(weather_dir, tmp_path, capsys):
    out = tmp_path / "headroom.json"
    assert hr.main([str(weather_dir), "--seeds", "0", "--epochs", "1", "--hidden", "16", "--json", str(out),
                    "--markdown", str(tmp_path / "headroom.md")]) == 0
    result = json.loads(out.read_text())
    assert set(result["ridge"]) == set(hr.SPLITS)
    assert result["ridge + MLP residual"][0]["best_epoch"] == 1
    assert "ridge + MLP residual" in capsys.readouterr().out

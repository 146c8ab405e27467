"""The forecasting peer runner (benchmarks/forecast_peers.py): merging partial runs and the table it writes."""
import json
import statistics

import pytest
from conftest import load_repo_script

fp = load_repo_script("benchmarks/forecast_peers.py")


def _part(tmp_path, name, seeds, mse, extra="--norm node"):
    runs = [dict(seed=s, test_mse=m, test_mae=m / 2, val_loss=m / 10, cpu_s=10.0, params=1000)
            for s, m in zip(seeds, mse)]
    row = dict(label="UniRepLKNet", params=1000, extra=extra, runs=runs,
               **{k: fp.seed_spread([r[k] for r in runs]) for k in ("test_mse", "test_mae", "val_loss")})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(dict(machine="m", cpus=2, seeds=list(seeds), tag=name, extra=extra,
                                    demos={"co2": {"ours": row}})))
    return str(path)


def test_merged_runs_give_the_statistics_of_all_seeds(tmp_path):
    merged = fp.merge([_part(tmp_path, "b", [2, 1], [3.0, 2.0]), _part(tmp_path, "a", [0], [1.5])])
    row = merged["demos"]["co2"]["ours"]
    assert [r["seed"] for r in row["runs"]] == [0, 1, 2] and merged["seeds"] == [0, 1, 2]
    values = [1.5, 2.0, 3.0]
    assert row["test_mse"]["mean"] == pytest.approx(statistics.mean(values))
    assert row["test_mse"]["std"] == pytest.approx(statistics.stdev(values))
    assert row["test_mae"]["mean"] == pytest.approx(statistics.mean(values) / 2)
    table = fp.to_markdown(merged, {"co2": {"ridge_test_mse": 0.9, "ridge_test_mae": 0.7}})
    assert "2.167 ± 0.764" in table and "1.500, 2.000, 3.000" in table
    assert "| co2 | ridge per series (shared map, strength on validation) | | 0.900 | 0.700 |" in table
    assert "joint" not in table  # rows the classical file does not have are left out


def test_runs_made_with_other_options_are_not_merged(tmp_path):
    with pytest.raises(ValueError, match="co2 ours made with --extra ''"):
        fp.merge([_part(tmp_path, "a", [0], [1.0]), _part(tmp_path, "b", [1], [2.0], extra="")])

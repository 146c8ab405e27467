"""benchmarks/fashion_mnist.py on a tiny IDX folder: the rows, --skip-training, the published table's parser and
the deployment agreement (issue 26)."""
import gzip
import json

import pytest

from _idx_files import write_idx_folder
from conftest import load_repo_script

TINY = '{"depths":[1,1,1,1],"dims":[8,16,32,64],"kernel_sizes":[[7],[5],[3],[3]]}'


@pytest.fixture(scope="module")
def bench():
    return load_repo_script("benchmarks/fashion_mnist.py")


def test_published_rows_read_from_the_readme_table(bench, tmp_path):
    readme = tmp_path / "README.md.gz"
    readme.write_bytes(gzip.compress(b"| Classifier | Preprocessing | Fashion test accuracy |\n|---|---|---|\n"
                                     b"|ResNet18 | flips | 0.912 | 0.979 |\n|MobileNet | flips| 0.950|- |\n"))
    rows = {r["method"]: r for r in bench.published_rows(readme)}
    assert rows["ResNet-18"]["top1"] == 91.2 and rows["ResNet-18"]["source"] == str(readme)
    assert rows["WRN-28-10"]["top1"] == 95.9 and rows["WRN-28-10"]["source"].startswith("quoted")
    assert bench.published_rows(tmp_path / "absent.gz")[0]["source"].startswith("quoted")


def test_quick_mode_on_a_tiny_folder(bench, tmp_path):
    root, _ = write_idx_folder(tmp_path / "data", n_train=45, n_test=15, classes=3)
    common = ["--data", str(root), "--runs-dir", str(tmp_path / "runs"), "--models", "custom", "--seeds-quick", "0",
              "--threads", "1", "--results", str(tmp_path / "res" / "fm"), "--figure", str(tmp_path / "cm.png"),
              "--doc", str(tmp_path / "doc.md")]
    result = bench.main(common + ["--train-args", "--epochs", "1", "--batch-size", "8", "--model-kwargs", TINY,
                                  "--class-names", "a,b,c", "--no-onnx"])
    (row,) = result["training"]
    run = row["runs"][0]
    summary = json.loads((tmp_path / "runs" / "quick-custom-seed0" / "summary.json").read_text())
    assert run["test_top1"] == summary["extras"]["test"]["top1"] and run["cpu_s"] is not None
    agreement = result["agreement"]
    eager = agreement["runtimes"][0]
    assert eager["top1"] == pytest.approx(run["test_top1"], abs=0.005)  # the script's own pass over t10k agrees with the run
    for r in agreement["runtimes"]:
        assert r["disagreements"] == 0 and r["max_logit_diff"] < 1e-4
    confusion = agreement["confusion"]
    assert sum(map(sum, confusion)) == 15
    assert [p["top1"] for p in agreement["per_class"]] == [pytest.approx(100 * confusion[i][i] / 5, abs=0.005) for i in range(3)]
    assert (tmp_path / "cm.png").stat().st_size > 0 and result["classical"]["train_images"] == 45
    md = (tmp_path / "res" / "fm.md").read_text()
    assert "| custom | quick | 0 |" in md and "ResNet-18" in md
    assert md.strip() in (tmp_path / "doc.md").read_text()  # the page quotes the results file
    # --skip-training assembles the same rows from the run folders
    again = bench.main(common + ["--skip-training", "--skip-classical", "--skip-agreement"])
    assert again["training"] == result["training"]

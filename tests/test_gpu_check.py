"""benchmarks/gpu_check.py in its --quick CPU mode: every section runs (or, for the GPU-only pytest files,
is collected) and lands in the report, so the script cannot rot before a GPU machine runs it."""
from __future__ import annotations

from conftest import load_repo_script


def test_quick_mode_writes_every_section_into_one_report(tmp_path, capsys):
    check = load_repo_script("benchmarks/gpu_check.py")
    report = tmp_path / "gpu.md"
    code = check.main(["--quick", "--output", str(report)])
    text = report.read_text()
    capsys.readouterr()
    for name in check.SECTIONS:
        assert f"| {name} | ok |" in text, text  # each section ran and passed
        assert f"## {name}: ok" in text
    assert code == 0
    assert "| unireplknet_a | 1 |" in text and "| convnext_atto | 1 |" in text  # throughput rows, ours and peer
    assert "unireplknet_t 1804" in text  # the paper's anchors are in the report
    for task in check.TASKS:
        assert f"| {task} |" in text
    assert "| image | `train` | ok |" in text  # the image task really trained one tiny epoch


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    check = load_repo_script("benchmarks/gpu_check.py")

    def broken(args, budget, section):
        raise RuntimeError("deliberately broken")

    monkeypatch.setitem(check.SECTIONS, "environment", (broken, 0))
    report = tmp_path / "gpu.md"
    assert check.main(["--quick", "--sections", "environment,training-step", "--output", str(report)]) == 1
    text = report.read_text()
    capsys.readouterr()
    assert "| environment | failed |" in text and "deliberately broken" in text
    assert "| training-step | ok |" in text


def test_time_budget_skips_sections_it_cannot_fit(tmp_path, capsys):
    check = load_repo_script("benchmarks/gpu_check.py")
    report = tmp_path / "gpu.md"
    # in --quick a section's minimum is not enforced, so drive the guard through a budget already spent
    assert check.main(["--quick", "--sections", "environment", "--budget-seconds", "-1", "--output",
                       str(report)]) == 1
    assert "skipped" in report.read_text()
    capsys.readouterr()

"""The headline numbers of README.md and docs/*.md are the numbers a benchmark wrote (benchmarks/doc_numbers.py).

Fast: each document shows exactly the value of the results file its entry cites. Slow: each demo command, run
again in a temporary folder, lands within the seed tolerance of the documented number."""
from __future__ import annotations

import subprocess
import sys
from typing import Dict

import pytest

from conftest import REPO_ROOT, load_repo_script

doc_numbers = load_repo_script("benchmarks/doc_numbers.py")
ENTRIES = {f"{e.doc}:{e.demo}:{e.keys[-1]}:{i}": e for i, e in enumerate(doc_numbers.DOC_NUMBERS)}


@pytest.mark.parametrize("name", list(ENTRIES))
def test_documented_number_is_the_results_file_value(name):
    entry = ENTRIES[name]
    shown = entry.documented()
    assert shown, f"{entry.doc} no longer has the phrase {entry.phrase!r}; update benchmarks/doc_numbers.py"
    assert shown == [entry.measured_as_written()] * len(shown), (
        f"{entry.doc} shows {shown}, benchmarks/results/{entry.results} holds {entry.measured():.4f}")


def test_every_demo_headline_is_registered():
    """The demos' pages each have at least one registered headline, and the registry reads real files."""
    docs = {e.doc for e in doc_numbers.DOC_NUMBERS}
    assert {"README.md", "docs/video.md", "docs/pointcloud.md", "docs/audio.md", "docs/timeseries.md"} <= docs
    for e in doc_numbers.DOC_NUMBERS:
        assert (REPO_ROOT / "benchmarks" / "results" / e.results).is_file(), e.results
        # the tolerance is a seed spread, not a licence: well below the number itself
        assert 0 < e.tolerance < 0.5 * e.measured()


def test_a_wrong_number_is_reported(tmp_path, monkeypatch):
    entry = doc_numbers.DOC_NUMBERS[0]
    doc = tmp_path / "README.md"
    doc.write_text((REPO_ROOT / entry.doc).read_text().replace(
        entry.phrase.format(f"{entry.measured_as_written():.{entry.decimals}f}"), entry.phrase.format("12.34")))
    monkeypatch.setattr(doc_numbers, "REPO_ROOT", tmp_path)
    problems = doc_numbers.mismatches([entry])
    assert len(problems) == 1 and "12.34" in problems[0]


def _rerun(demo: str, tmp_path) -> Dict[str, float]:
    """The documented command of ``demo`` once more (seed 0, one thread), in ``tmp_path``."""
    if demo == "forecast":
        data = tmp_path / "global_weather"
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_global_weather.py"), str(data)], check=True)
        demo_script = load_repo_script("benchmarks/corrformer_demo.py")
        run = demo_script.run_one(str(data), [], 0, tmp_path / "run")
        return {"mse_physical": run["test"]["mse_physical"]}
    peers = load_repo_script("benchmarks/modality_peers.py")
    return peers.run_one(demo, False, 0, tmp_path / "runs", [])


@pytest.mark.slow
@pytest.mark.parametrize("demo", sorted({e.demo for e in doc_numbers.DOC_NUMBERS}))
def test_demo_command_reproduces_the_documented_number(demo, tmp_path):
    measured = _rerun(demo, tmp_path)
    for entry in (e for e in doc_numbers.DOC_NUMBERS if e.demo == demo):
        documented = entry.documented()[0]
        assert abs(measured[entry.keys[-1]] - documented) <= entry.tolerance, (entry.doc, entry.phrase, measured)

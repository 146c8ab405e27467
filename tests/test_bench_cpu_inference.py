"""benchmarks/bench_cpu_inference.py runs end to end in its quickest form (a check that it works, not a timing):
thread counts, bf16 rows beside the peer's, the CPU header, the peer-ratio column."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import load_repo_script
from unireplknet import _runtime


def test_quick_run_writes_rows_per_thread_count_with_bf16_and_peer_ratios(tmp_path, monkeypatch, capsys):
    bench = load_repo_script("benchmarks/bench_cpu_inference.py")
    monkeypatch.setattr(bench, "ROOF_SIZE", 64)  # the matmul roof's size: a quick run needs no real roof
    monkeypatch.setattr(bench, "matmul_roof", lambda: 1.0)
    monkeypatch.setattr(bench, "PEERS", {"a": ["convnext_atto"]})
    threads_before = torch.get_num_threads()
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert bench.main(["--sizes", "a", "--batches", "1", "--threads", "1,2", "--rounds", "2", "--min-seconds", "0",
                       "--image-size", "32", "--bf16", "--no-runtimes", "--json", str(out_json),
                       "--markdown", str(out_md)]) == 0
    capsys.readouterr()
    assert torch.get_num_threads() == threads_before  # the run gives the thread count back
    report = json.loads(out_json.read_text())
    rows = report["results"]
    assert {r["threads"] for r in rows} == {1, 2}
    for threads in (1, 2):
        group = {r["variant"]: r for r in rows if r["threads"] == threads}
        assert set(group) == {"official", "plain", "fused", "convnext_atto", "fused bf16-autocast", "bf16-weights",
                              "convnext_atto bf16-autocast", "convnext_atto bf16-weights"}
        # the ratio is against the peer of the same precision, from the same rounds
        for variant, peer in (("fused", "convnext_atto"), ("bf16-weights", "convnext_atto bf16-weights"),
                              ("fused bf16-autocast", "convnext_atto bf16-autocast")):
            assert group[variant]["peer"] == peer
            assert group[variant]["peer_ratio"] == pytest.approx(group[peer]["ms"] / group[variant]["ms"])
        assert group["bf16-weights"]["precision"] == "bf16-weights" and group["fused"]["precision"] == "fp32"
    # the header names the CPU and its low-precision flags, as the one probe reads them
    assert report["machine"]["cpu"] == _runtime.cpu_model_name()
    flags = _runtime.cpu_flags() or frozenset()
    for flag in _runtime.CPU_FLAGS_OF_INTEREST:
        assert (f"+{flag}" if flag in flags else f"-{flag}") in report["machine"]["cpu_flags"]
    markdown = out_md.read_text()
    assert "CPU flags: " in markdown and "batch 1, 2 threads" in markdown and "| × peer |" in markdown
    assert "bf16-weights ≥ 1.6× our fp32" in markdown


def test_interleave_pairs_each_precision_ours_then_peer():
    bench = load_repo_script("benchmarks/bench_cpu_inference.py")
    ours = {"a": ("u", "fp32", None), "b": ("u", "fp32", None), "c": ("u", "bf16", None)}
    peers = {"p": ("c", "fp32", None), "q": ("c", "bf16", None)}
    assert list(bench.interleave(ours, peers)) == ["a", "p", "b", "c", "q"]

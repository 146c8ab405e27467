"""Helpers shared by the benchmark scripts: machine description, timing, matmul peak, variant shapes, running the
command line in a child process, spreads over seeds and atomic result files."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

#: depths and dims of the variants (TPAMI Table 4), kept here so the benchmarks need nothing but the model class.
VARIANTS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    "A": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "F": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "P": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "N": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "T": ((3, 3, 18, 3), (80, 160, 320, 640)),
    "S": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "B": ((3, 3, 27, 3), (128, 256, 512, 1024)),
}


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    isa = ""
    if flags:
        have = set(flags.group(1).split())
        isa = " (" + ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in have) + ")"
    return (match.group(1).strip() if match else "unknown CPU") + isa


def machine_description(device: str = "cpu") -> str:
    parts = [
        f"CPU {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        f"torch {torch.__version__}",
    ]
    try:
        import triton

        parts.append(f"triton {triton.__version__}")
    except ImportError:
        pass
    if device == "cuda" and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    try:  # a shared machine skews timings; say how busy it was
        parts.append("load average %.1f/%.1f/%.1f at start" % os.getloadavg())
    except OSError:
        pass
    parts.append(f"date {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    return "; ".join(parts)


#: The clock the timing helpers read: "wall" (perf_counter) or "cpu" (this process's CPU time, summed over
#: its threads). On a machine shared with other jobs the CPU time of a one-thread run is far less disturbed
#: than wall time, whose 2-thread runs lose whole time slices at every OpenMP barrier when cores are
#: oversubscribed; set with :func:`set_clock` (the scripts' ``--timer`` option).
CLOCK = "wall"


def set_clock(name: str) -> None:
    global CLOCK
    if name not in ("wall", "cpu"):
        raise ValueError(f"timer must be 'wall' or 'cpu', got {name!r}")
    CLOCK = name


def _now() -> float:
    return time.perf_counter() if CLOCK == "wall" else time.process_time()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], reps: int, warmup: int = 1, device: str = "cpu") -> List[float]:
    """Wall-clock times in ms of ``reps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = _now()
        fn()
        _sync(device)
        times.append((_now() - start) * 1e3)
    return times


def interleaved_medians(
    fns: Dict[str, Callable[[], object]], reps: int, warmup: int = 1, device: str = "cpu"
) -> Dict[str, float]:
    """Median ms per candidate, the candidates timed in turn round by round.

    Interleaving spreads any background load (a shared machine) over all candidates alike, so the
    ratios stay fair even when absolute times drift.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = _now()
            fn()
            _sync(device)
            times[name].append((_now() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peak_gflops(device: str = "cpu", dtype: torch.dtype = torch.float32, size: int = 2048, reps: int = 5) -> float:
    """Best achieved GFLOP/s of a square matmul: the machine's practical dense peak, for scale."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = min(time_ms(lambda: a @ b, reps, warmup=2, device=device))
    return 2 * size**3 / (best / 1e3) / 1e9


def replace_doc_section(path: Path, heading: str, body: str) -> None:
    """Replace the text under ``heading`` (up to the next '## ' heading) in a markdown file; other sections stay."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + heading + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[: start + 1]) + "\n" + body.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    path.write_text(new, encoding="utf-8")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def seed_spread(values: Sequence[float]) -> Dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max of one metric over seeds."""
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return dict(mean=mean, std=std, min=min(values), max=max(values))


def write_text_atomic(path: Path, text: str) -> None:
    """Write a result file so that an interrupted sweep leaves the old file or the new one, never half of one."""
    from unireplknet.checkpoint import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass
class CliRun:
    """One finished ``unireplknet`` command: its output, wall seconds and the child's CPU seconds (user + sys)."""

    stdout: str
    wall_s: float
    cpu_s: float


def run_cli(args: Sequence[str], what: str) -> CliRun:
    """Run ``unireplknet ARGS`` (the installed command line) in a child process at one thread.

    At one thread the child's CPU seconds estimate its wall time on an idle core, which is what the docs quote;
    runs are sequential, so the change in this process's children's CPU time is this run's. A failed run
    raises with ``what`` and the tail of its error output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "unireplknet.cli", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}; the last lines of its output:\n"
                           f"{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return CliRun(stdout=proc.stdout, wall_s=round(wall, 1), cpu_s=round(cpu, 1))

"""Run every case of the hostile corpus through its command, each in its own process, and report per case.

    python scripts/sweep_hostile_corpus.py                # the full corpus of issue 29 (GB-sized claims)
    python scripts/sweep_hostile_corpus.py --small        # the same classes at a scale that writes in seconds
    python scripts/sweep_hostile_corpus.py --class sizes  # one class (sizes, decoders, series, …)

Each case is a command of ``unireplknet`` (``scripts/make_hostile_corpus.py``: ``BOUNDS_CASES`` and any other
``*_CASES`` list of the same form) run in a fresh empty working folder. Per case it reports the exit status, the
error line, the peak memory of the process (``wait4``'s maximum resident set), and the time, and checks:

* a refused input ends with exit status 2 and exactly one line ``unireplknet CMD: error: …``, no traceback,
  under 2 GB of peak memory; an input that must be handled ends with exit status 0;
* no file of the corpus (every input, all of which existed before) changed, and nothing was written into the
  working folder: only the case's own ``{out}`` folder may be written;
* no run takes longer than 60 s (it is killed, and fails).

The memory limit is pinned to 16 GB (``UNIREPLKNET_MAX_MEMORY_GB``), so that every machine refuses the same inputs.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import make_hostile_corpus as corpus_module  # noqa: E402

PEAK_LIMIT_BYTES = 2 * 1024 ** 3
TIME_LIMIT_S = 60.0
SWEEP_ENV = {"UNIREPLKNET_MAX_MEMORY_GB": "16", "OMP_NUM_THREADS": "1"}
Case = Tuple[str, str, List[str], str]


def all_cases() -> List[Case]:
    """Every ``*_CASES`` list of the corpus script (``BOUNDS_CASES`` first)."""
    cases: List[Case] = []
    for name in sorted(vars(corpus_module), key=lambda n: (n != "BOUNDS_CASES", n)):
        value = getattr(corpus_module, name)
        if name.endswith("_CASES") and isinstance(value, list):
            cases.extend(c for c in value if isinstance(c, tuple) and len(c) == 4)
    return cases


def _fingerprint(path: Path) -> Tuple[int, int, str]:
    stat = path.stat()
    if stat.st_size > 10_000_000:  # the sparse GB-sized files: size and time of change, not a read of them
        return stat.st_size, stat.st_mtime_ns, ""
    return stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> Dict[Path, Tuple[int, int, str]]:
    return {p: _fingerprint(p) for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _error_lines(err: str, command: str) -> List[str]:
    return [line for line in err.splitlines() if line.startswith(f"unireplknet {command}: error:")]


def run_case(case: Case, paths: Dict[str, Path], workdir: Path, env: Dict[str, str]) -> Dict[str, object]:
    """Run one case in a subprocess; the result dict holds the measurements and ``problems`` (empty: passed)."""
    name, kind, argv, expect = case
    out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
    cwd = Path(tempfile.mkdtemp(prefix="cwd-", dir=workdir))
    try:
        args = [a.format(out=out, **{k: str(v) for k, v in paths.items()}) for a in argv]
    except KeyError as e:
        return dict(name=name, kind=kind, skipped=f"the corpus has no {e.args[0]}", problems=[])
    corpus_root = Path(paths["root"])
    before = _tree(corpus_root)
    stdout, stderr = cwd.parent / f"{cwd.name}.out", cwd.parent / f"{cwd.name}.err"
    start = time.monotonic()
    with open(stdout, "wb") as so, open(stderr, "wb") as se:
        proc = subprocess.Popen([sys.executable, "-m", "unireplknet.cli", *args], cwd=cwd, env=env,
                                stdout=so, stderr=se)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > TIME_LIMIT_S:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    err = stderr.read_bytes().decode(errors="replace")
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    errors = _error_lines(err, args[0])
    problems = []
    if timed_out:
        problems.append(f"ran longer than {TIME_LIMIT_S:.0f} s")
    if "Traceback" in err:
        problems.append("printed a traceback")
    if expect == "refused":
        if proc.returncode != 2 or len(errors) != 1:
            problems.append(f"expected one error line and exit status 2, got {proc.returncode} and {len(errors)}")
        if peak >= PEAK_LIMIT_BYTES:
            problems.append(f"peak memory {peak / 1e9:.2f} GB is not under 2 GB")
    elif proc.returncode != 0:
        problems.append(f"expected exit status 0, got {proc.returncode}")
    changed = [str(p) for p, f in _tree(corpus_root).items() if before.get(p) != f]
    changed += [f"{p} (removed)" for p in before if not p.exists()]
    if changed:
        problems.append(f"changed files outside the destination: {', '.join(changed[:3])}")
    strays = [str(p) for p in cwd.rglob("*")]
    if strays:
        problems.append(f"wrote into the working folder: {', '.join(strays[:3])}")
    last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
    return dict(name=name, kind=kind, command=args[0], exit=proc.returncode, seconds=round(seconds, 2),
                peak_mb=round(peak / 1e6), error=errors[0] if errors else last, problems=problems)


def sweep(paths: Dict[str, Path], cases: Sequence[Case], workdir: Path,
          extra_env: Optional[Dict[str, str]] = None) -> List[Dict[str, object]]:
    """Run ``cases`` on the corpus ``paths``; one result dict per case (see :func:`run_case`)."""
    env = dict(os.environ, **SWEEP_ENV, **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    return [run_case(case, paths, workdir, env) for case in cases]


def format_report(results: Sequence[Dict[str, object]]) -> str:
    lines = []
    for r in results:
        if r.get("skipped"):
            lines.append(f"SKIP  {r['kind']:9s} {r['name']}: {r['skipped']}")
            continue
        verdict = "ok  " if not r["problems"] else "FAIL"
        lines.append(f"{verdict}  {r['kind']:9s} {r['name']}: exit {r['exit']}, {r['peak_mb']} MB, {r['seconds']} s "
                     f"| {str(r['error'])[:160]}")
        lines.extend(f"        - {p}" for p in r["problems"])
    failed = sum(1 for r in results if r["problems"])
    lines.append(f"{len(results) - failed} of {len(results)} cases passed")
    return "\n".join(lines)


def write_corpus(root: Path, with_writes: bool, full_size: bool) -> Dict[str, Path]:
    """Both corpora under ``root`` (the first one and its write-policy cases only ``with_writes``)."""
    paths: Dict[str, Path] = {}
    if with_writes:
        paths.update(corpus_module.make_corpus(root))
        paths.update(corpus_module.write_policy_cases(root / "write_policy", paths))
    paths.update(corpus_module.make_bounds_corpus(root, full_size=full_size))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the corpus at a small scale (seconds to write)")
    parser.add_argument("--class", dest="kinds", action="append", help="only the cases of this class (repeatable)")
    parser.add_argument("--workdir", default=None, help="where to write the corpus and the outputs (a temporary "
                                                        "folder, removed afterwards, by default)")
    args = parser.parse_args(argv)
    cases = [c for c in all_cases() if not args.kinds or c[1] in args.kinds]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        with_writes = any(c[0] not in {b[0] for b in corpus_module.BOUNDS_CASES} for c in cases)
        # written in a fresh interpreter: a child inherits its parent's peak memory (ru_maxrss survives fork and
        # exec on Linux), so writing the corpus here (the GIF's frames take 0.6 GB) would inflate every case's peak
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            paths = pool.submit(write_corpus, root / "corpus", with_writes, not args.small).result()
        extra = corpus_module.SMALL_LIMITS if args.small else None
        results = sweep(paths, cases, root, extra)
    print(format_report(results))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

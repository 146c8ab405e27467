"""The headline numbers of README.md and docs/ (its pages and docs/cli), each tied to the results file a
benchmark wrote.

Every entry names the phrase of a document that carries the number (``{}`` marks the number), the results file
under ``benchmarks/results/`` and the path of keys to the value in it, the decimals the document shows, and the
command that reproduces it. ``tests/test_doc_numbers.py`` checks that each document shows exactly the value of
its results file (fast) and, marked slow, re-runs each demo command and compares within ``tolerance`` (the
spread a seed gives, see each entry's note).

To refresh the demo numbers (one run of each demo, seed 0, one thread; a few minutes each on a 2-core machine)::

    python benchmarks/modality_peers.py digits video points audio --seeds 0 --rows ours \\
        --json benchmarks/results/demo_headlines.json --markdown benchmarks/results/demo_headlines.md

then write the new values into the documents (``python benchmarks/doc_numbers.py`` lists what differs).
"""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"

_CORRFORMER = "UniRepLKNet-Corrformer (demo preset)"


@dataclass(frozen=True)
class DocNumber:
    doc: str                   # relative to the repository root
    phrase: str                # the text around the number; "{}" is the number
    results: str               # file under benchmarks/results/
    keys: Tuple[Any, ...]      # path to the value in that JSON file
    decimals: int              # as the document writes it
    tolerance: float           # how far a re-run (same seed, another machine or day) may land; see note
    demo: str                  # the modality_peers.py demo (or "forecast") that re-runs it
    note: str = ""

    def documented(self) -> List[float]:
        """Every number the phrase carries in the document (a correct document has it at least once)."""
        text = (REPO_ROOT / self.doc).read_text()
        pattern = re.escape(self.phrase).replace(re.escape("{}"), r"([0-9]+(?:\.[0-9]+)?)")
        return [float(m) for m in re.findall(pattern, text)]

    def measured(self) -> float:
        value: Any = json.loads((RESULTS / self.results).read_text())
        for key in self.keys:
            value = value[key]
        return float(value)

    def measured_as_written(self) -> float:
        return round(self.measured(), self.decimals)


def _demo(name: str, key: str = "top1") -> Tuple[Any, ...]:
    return ("demos", name, "ours", "runs", 0, key)


DOC_NUMBERS: Sequence[DocNumber] = (
    DocNumber("README.md", "held-out top-1 of both structures ({}%", "demo_headlines.json", _demo("digits"), 2, 1.5,
              "digits", "one idle-CPU run; 1.5 points = 5 of the 359 held-out digits"),
    DocNumber("README.md", "(same {} %;", "demo_headlines.json", _demo("digits"), 2, 1.5, "digits"),
    DocNumber("docs/cli/train.md", "**{} % held-out top-1** for both", "demo_headlines.json", _demo("digits"), 2,
              1.5, "digits"),
    DocNumber("docs/video.md", "**{} % top-1 on the 72 held-out clips", "demo_headlines.json", _demo("video"), 1,
              17.0, "video", "seeds 0, 1, 2 spread ± 8.5 points (modality_peers.json); twice that"),
    DocNumber("docs/pointcloud.md", "**{} % overall accuracy over the 8 × 64 held-out rotated shapes",
              "demo_headlines.json", _demo("points"), 1, 12.5, "points",
              "seeds 0, 1, 2 spread ± 6.1 points (modality_peers.json); twice that"),
    DocNumber("docs/pointcloud.md", "the official metric), {} % with the\n8 rotations voted",
              "demo_headlines.json", _demo("points", "voted"), 1, 12.5, "points"),
    DocNumber("docs/audio.md", "| **test (20 clips)** | **{} %**", "demo_headlines.json", _demo("audio"), 1, 11.6,
              "audio", "seeds 0, 1, 2 spread ± 5.8 points (modality_peers.json); twice that"),
    DocNumber("docs/timeseries.md", "(demo preset, 1.39 M parameters), seeds 0, 1, 2: {},",
              "corrformer_demo_ours.json", ("models", _CORRFORMER, "runs", 0, "test", "mse_physical"), 3, 0.032,
              "forecast", "seeds 0, 1, 2 spread ± 0.016 °C²; twice that"),
)


def mismatches(entries: Sequence[DocNumber] = DOC_NUMBERS) -> List[str]:
    """One line per entry whose document does not show its results file's value (empty when all agree)."""
    out = []
    for e in entries:
        shown, value = e.documented(), e.measured_as_written()
        if not shown:
            out.append(f"{e.doc}: phrase {e.phrase!r} not found (expected {value})")
        elif any(abs(s - value) > 0.5 * 10 ** -e.decimals for s in shown):
            out.append(f"{e.doc}: {e.phrase!r} shows {shown}, {e.results} holds {value}")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    problems = mismatches()
    print("\n".join(problems) if problems else f"all {len(DOC_NUMBERS)} documented numbers match their results files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

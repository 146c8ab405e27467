"""Reader of the UCR/UEA time-series classification archive: the ``.ts`` format and the UCR 2018 ``.tsv`` layout.

A *problem* is a folder holding ``<Name>_TRAIN.<ext>`` and ``<Name>_TEST.<ext>`` (``.ts`` preferred over
``.tsv``); the archive's own layout (``Univariate_ts/<Name>/``, ``Multivariate_ts/<Name>/``) works too, by giving
the archive root and the problem's name.

``.ts`` (the sktime/aeon format, timeseriesclassification.com): ``#`` comment lines, then ``@``-header lines
(``@problemName``, ``@timeStamps``, ``@missing``, ``@univariate``, ``@dimensions``, ``@equalLength``,
``@seriesLength``, ``@classLabel true <labels…>``; keys are case-insensitive), then ``@data`` and one line per
series: the channels separated by ``:``, the values of a channel by ``,``, ``?`` (or ``NaN``) for a missing value,
and the class label last. Channels of one series have one length; series may differ in length
(``@equalLength false``).

``.tsv`` (UCR 2018): one series per line, the label first, then the values separated by tabs (or commas);
``NaN`` pads shorter series at the end (those trailing NaNs are dropped, so the series keeps its own length) and
marks missing values inside.

Every series is returned as a float64 array of shape ``(channels, length)`` with NaN for missing values; labels
are strings, as written. A malformed file raises :class:`ArchiveFormatError` naming the file and the line.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = ["ArchiveFormatError", "ArchiveSplit", "ArchiveProblem", "read_ts", "read_tsv", "read_split",
           "find_problem_files", "load_problem", "ARCHIVE_SUBFOLDERS"]

_logger = logging.getLogger(__name__)

#: Sub-folders of an archive root that hold one folder per problem.
ARCHIVE_SUBFOLDERS = ("", "Univariate_ts", "Multivariate_ts", "Univariate2018_ts", "Multivariate2018_ts",
                      "UCRArchive_2018", "Univariate_arff")
#: Extensions read, in order of preference when a folder holds several.
SPLIT_EXTENSIONS = (".ts", ".tsv")
_MISSING = {"?", "nan", "NaN", "NAN", ""}


class ArchiveFormatError(ValueError):
    """A file of the archive that cannot be read, or a problem whose splits do not fit together; the message names
    the file (and line) and what to fix."""


@dataclass
class ArchiveSplit:
    """One split (TRAIN or TEST) of a problem: ``series[i]`` is ``(channels, length_i)`` float64 with NaN for missing
    values; ``labels[i]`` its class as written in the file (None when the file carries no labels)."""

    series: List[np.ndarray]
    labels: List[Optional[str]]
    path: Path
    declared_classes: Optional[List[str]] = None  # the @classLabel list of a .ts file, in its order
    header: Dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.series)

    @property
    def channels(self) -> int:
        return int(self.series[0].shape[0]) if self.series else 0

    @property
    def lengths(self) -> List[int]:
        return [int(s.shape[1]) for s in self.series]

    @property
    def has_labels(self) -> bool:
        return bool(self.labels) and all(label is not None for label in self.labels)


@dataclass
class ArchiveProblem:
    """A problem with its fixed TRAIN/TEST splits; ``class_names`` is the order of the class indices."""

    name: str
    train: ArchiveSplit
    test: ArchiveSplit
    class_names: List[str]

    @property
    def channels(self) -> int:
        return self.train.channels

    def targets(self, split: ArchiveSplit) -> np.ndarray:
        """Class indices of a split's labels (int64)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[label] for label in split.labels], dtype=np.int64)


# ----------------------------------------------------------------------------------------------- .ts
def _error(path: Path, line_no: Optional[int], message: str) -> ArchiveFormatError:
    where = f"{path}, line {line_no}" if line_no is not None else str(path)
    return ArchiveFormatError(f"{where}: {message}")


def _parse_values(text: str, path: Path, line_no: int, what: str) -> np.ndarray:
    values = []
    for token in text.split(","):
        token = token.strip()
        if token in _MISSING:
            values.append(math.nan)
            continue
        try:
            values.append(float(token))
        except ValueError:
            raise _error(path, line_no, f"{what}: {token[:30]!r} is not a number (write ? for a missing value)") \
                from None
    return np.asarray(values, dtype=np.float64)


def _bool_header(value: str, key: str, path: Path, line_no: int) -> bool:
    word = value.split()[0].lower() if value.split() else ""
    if word not in ("true", "false"):
        raise _error(path, line_no, f"@{key} must be true or false, got {value!r}")
    return word == "true"


def read_ts(path: Union[str, Path]) -> ArchiveSplit:
    """Read a ``.ts`` file (see the module docstring). Timestamped data (``@timeStamps true``) and regression
    targets (``@targetLabel true``) are refused with an error saying so."""
    path = Path(path)
    header: Dict[str, str] = {}
    declared: Optional[List[str]] = None
    has_labels: Optional[bool] = None
    series: List[np.ndarray] = []
    labels: List[Optional[str]] = []
    in_data = False
    dims: Optional[int] = None
    try:
        handle = open(path, encoding="utf-8", errors="strict")
    except OSError as e:
        raise ArchiveFormatError(f"{path}: cannot open ({e.strerror or e})") from None
    with handle:
        try:
            lines = handle.read().splitlines()
        except UnicodeDecodeError as e:
            raise _error(path, None, f"not UTF-8 text ({e.reason} at byte {e.start}); is this a .ts file?") from None
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise _error(path, line_no, "expected an @-header line or @data before the series")
            key, _, value = line[1:].partition(" ")
            key, value = key.lower(), value.strip()
            if key == "data":
                in_data = True
                if has_labels is None:
                    raise _error(path, line_no, "@data before @classLabel: the header must say whether the series "
                                                "carry labels (@classLabel true <labels…> or @classLabel false)")
                if "dimensions" in header or "dimension" in header:
                    text = header.get("dimensions", header.get("dimension", ""))
                    try:
                        dims = int(text)
                    except ValueError:
                        raise _error(path, line_no, f"@dimensions must be a whole number, got {text!r}") from None
                elif header.get("univariate", "").lower().startswith("true"):
                    dims = 1
                continue
            header[key] = value
            if key == "timestamps" and _bool_header(value, key, path, line_no):
                raise _error(path, line_no, "@timeStamps true: timestamped series are not supported; convert them to "
                                            "equally spaced values")
            if key == "targetlabel" and _bool_header(value, key, path, line_no):
                raise _error(path, line_no, "@targetLabel true: a regression problem; only classification "
                                            "(@classLabel) is supported")
            if key == "classlabel":
                has_labels = _bool_header(value, key, path, line_no)
                declared = value.split()[1:] if has_labels else None
                if has_labels and not declared:
                    raise _error(path, line_no, "@classLabel true lists no labels; write @classLabel true <labels…>")
            continue
        parts = line.split(":")
        label: Optional[str] = None
        if has_labels:
            if len(parts) < 2:
                raise _error(path, line_no, "no class label after the values (the header says @classLabel true)")
            label = parts[-1].strip()
            parts = parts[:-1]
            if declared is not None and label not in declared:
                raise _error(path, line_no, f"class label {label!r} is not among the declared ones "
                                            f"({' '.join(declared[:10])}{' …' if len(declared) > 10 else ''})")
        if "(" in parts[0]:
            raise _error(path, line_no, "(time, value) pairs but @timeStamps is not true; timestamped series are "
                                        "not supported")
        channels = [_parse_values(p, path, line_no, f"channel {c + 1}") for c, p in enumerate(parts)]
        if dims is None:
            dims = len(channels)
        if len(channels) != dims:
            raise _error(path, line_no, f"{len(channels)} channel(s) where the file has {dims} "
                                        "(channels are separated by ':'; the label comes last)")
        lengths = {len(c) for c in channels}
        if len(lengths) != 1:
            raise _error(path, line_no, f"the channels of one series differ in length ({sorted(lengths)}); pad "
                                        "the shorter ones with ? to one length")
        series.append(np.stack(channels))
        labels.append(label)
    if not in_data:
        raise _error(path, None, "no @data line: not a .ts file (or a truncated one)")
    if not series:
        raise _error(path, None, "no series after @data")
    equal = header.get("equallength", "").lower()
    if equal.startswith("true") and len({s.shape[1] for s in series}) > 1:
        raise _error(path, None, "@equalLength true but the series differ in length "
                                 f"({min(s.shape[1] for s in series)} to {max(s.shape[1] for s in series)}); "
                                 "set @equalLength false")
    return ArchiveSplit(series, labels, path, declared, header)


# ----------------------------------------------------------------------------------------------- .tsv
def read_tsv(path: Union[str, Path]) -> ArchiveSplit:
    """Read a UCR 2018 ``.tsv`` file: the label first, then the values (tab- or comma-separated); trailing NaNs
    (the padding of unequal-length series) are dropped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ArchiveFormatError(f"{path}: cannot open ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise _error(path, None, f"not UTF-8 text ({e.reason}); is this a .tsv file?") from None
    series: List[np.ndarray] = []
    labels: List[Optional[str]] = []
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split("\t") if "\t" in line else line.split(",")
        if len(fields) < 2:
            raise _error(path, line_no, "a label and at least one value are needed (label first, tab-separated)")
        values = _parse_values(",".join(fields[1:]), path, line_no, "value")
        observed = np.flatnonzero(~np.isnan(values))
        if len(observed) == 0:
            raise _error(path, line_no, "every value is missing")
        series.append(values[: observed[-1] + 1][None, :])
        labels.append(fields[0].strip())
    if not series:
        raise _error(path, None, "no series")
    return ArchiveSplit(series, labels, path)


def read_split(path: Union[str, Path]) -> ArchiveSplit:
    """Read one split file by its extension (``.ts`` or ``.tsv``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ts":
        return read_ts(path)
    if suffix in (".tsv", ".txt"):
        return read_tsv(path)
    raise ArchiveFormatError(f"{path}: unknown extension {path.suffix!r}; the archive's formats are .ts and .tsv "
                             "(convert .arff with aeon or sktime)")


# ----------------------------------------------------------------------------------------------- problems
def _split_files(folder: Path, name: str) -> Optional[Tuple[Path, Path]]:
    for ext in SPLIT_EXTENSIONS:
        train, test = folder / f"{name}_TRAIN{ext}", folder / f"{name}_TEST{ext}"
        if train.is_file() and test.is_file():
            return train, test
    return None


def find_problem_files(path: Union[str, Path], name: Optional[str] = None) -> Tuple[str, Path, Path]:
    """``(name, train file, test file)`` of a problem folder, or of problem ``name`` under an archive root.

    In a folder with several ``*_TRAIN`` files the one named like the folder is taken (e.g. ``GunPoint/`` holds
    ``GunPoint_TRAIN.ts``); otherwise ``name`` must say which.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass a problem folder holding <Name>_TRAIN.ts and "
                                "<Name>_TEST.ts (or .tsv), or an archive root with --problem <Name>")
    if name is not None:
        for sub in ARCHIVE_SUBFOLDERS:
            for folder in (root / sub / name, root / sub):
                found = _split_files(folder, name) if folder.is_dir() else None
                if found:
                    return (name, *found)
        raise FileNotFoundError(f"no {name}_TRAIN.ts/.tsv with its _TEST file in {root}, {root}/{name} or the "
                                f"archive's sub-folders ({', '.join(s for s in ARCHIVE_SUBFOLDERS if s)})")
    found = _split_files(root, root.name)
    if found:
        return (root.name, *found)
    names = sorted({p.name.rsplit("_TRAIN", 1)[0] for ext in SPLIT_EXTENSIONS for p in root.glob(f"*_TRAIN{ext}")})
    names = [n for n in names if _split_files(root, n)]
    if len(names) == 1:
        return (names[0], *_split_files(root, names[0]))  # type: ignore[misc]
    if names:
        raise ArchiveFormatError(f"{root} holds several problems ({', '.join(names)}); choose one with --problem")
    raise FileNotFoundError(f"{root} holds no <Name>_TRAIN.ts/.tsv with a matching <Name>_TEST file; pass a problem "
                            "folder, or an archive root with --problem <Name>")


def load_problem(path: Union[str, Path], name: Optional[str] = None, test: bool = True) -> ArchiveProblem:
    """Read a problem's TRAIN and TEST splits and check that they fit together.

    Refused with :class:`ArchiveFormatError`: a TEST label that TRAIN lacks (the model could never predict it), a
    different channel count in TRAIN and TEST, a series shorter than 2 values, a series or channel with no value at
    all. ``test=False`` reads TRAIN only (``problem.test`` is then an empty split).
    """
    name, train_path, test_path = find_problem_files(path, name)
    train = read_split(train_path)
    if not train.has_labels:
        raise ArchiveFormatError(f"{train_path}: the training split carries no class labels")
    test_split = read_split(test_path) if test else ArchiveSplit([], [], test_path)
    for split in (train, test_split):
        _check_series(split)
    if test and test_split.channels != train.channels:
        raise ArchiveFormatError(f"{test_path}: {test_split.channels} channel(s) per series, but {train_path} has "
                                 f"{train.channels}; the splits of one problem must have the same channels")
    present = sorted(set(train.labels), key=_label_order)
    if train.declared_classes:
        order = [c for c in train.declared_classes if c in set(train.labels)]
        class_names = order + [c for c in present if c not in order]
    else:
        class_names = present
    if len(class_names) < 2:
        raise ArchiveFormatError(f"{train_path}: one class only ({class_names[0]!r}); classification needs two or more")
    if test and test_split.has_labels:
        unseen = sorted(set(test_split.labels) - set(class_names), key=_label_order)
        if unseen:
            raise ArchiveFormatError(
                f"{test_path}: class label(s) {', '.join(map(repr, unseen[:5]))} appear in TEST but never in TRAIN, "
                "so no model trained on TRAIN can predict them; fix the labels or drop those series from TEST")
    return ArchiveProblem(name, train, test_split, class_names)


def _label_order(label: str) -> Tuple[int, float, str]:
    """Numeric labels in numeric order ('2' before '10'), then the others alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _check_series(split: ArchiveSplit) -> None:
    for i, s in enumerate(split.series):
        if s.shape[1] < 2:
            raise ArchiveFormatError(f"{split.path}: series {i + 1} has {s.shape[1]} value(s); at least 2 are needed "
                                     "to resample it to the model's length")
        empty = np.flatnonzero(np.isnan(s).all(axis=1))
        if len(empty) == s.shape[0]:
            raise ArchiveFormatError(f"{split.path}: series {i + 1} has no value at all (every value missing)")

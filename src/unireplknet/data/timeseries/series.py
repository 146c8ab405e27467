"""Time series: loaders (Global Temp/Wind layout, CSV, numpy), calendar features, NaN handling, sliding windows.

A series is a :class:`Series`: ``values`` (T × V float32, V variables such as stations), ``timestamps``
(T ``datetime64``) and optional per-variable ``coords`` (V × k, e.g. latitude/longitude/elevation). Windows
follow the Informer/Corrformer convention used by the official code (paper Table 12; official `Time-Series/` code, described in docs/timeseries.md): the input is
``seq_len`` steps, the decoder target ``label_len + pred_len`` steps starting ``label_len`` steps before the
end of the input; the forecast is the last ``pred_len`` steps.

The model side (normalisation, embedding, the image, the backbone, heads) is in
:mod:`unireplknet.tasks.forecast`.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "SeriesError",
    "Series",
    "TIME_FEATURE_DIMS",
    "time_features",
    "CALENDAR_FEATURES",
    "fill_missing",
    "GAP_POLICIES",
    "check_time_axis",
    "find_gaps",
    "load_global_station_folder",
    "load_csv_series",
    "load_array_series",
    "co2_series",
    "make_synthetic_station_grid",
    "write_global_station_folder",
    "chronological_split",
    "WindowDataset",
    "DATA_DIR",
]

_logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent  # the package data beside this module (co2_mauna_loa.npz)


class SeriesError(ValueError):
    """Bad series input (too short, NaNs, mismatched station counts …); the message says what to do."""


# ----------------------------------------------------------------------------------------------- calendar
#: Number of calendar features per frequency (Informer's ``timeF`` encoding).
TIME_FEATURE_DIMS = {"h": 4, "d": 3, "w": 2, "m": 1}


#: The calendar features of each frequency, in column order (``time_features``).
CALENDAR_FEATURES: Dict[str, Tuple[str, ...]] = {
    "h": ("hour", "dow", "dom", "doy"), "d": ("dow", "dom", "doy"), "w": ("dom", "woy"), "m": ("month",)}


def time_features(timestamps: np.ndarray, freq: str = "h", keep: Optional[Sequence[str]] = None) -> np.ndarray:
    """Informer's ``timeF`` calendar features, each scaled to [-0.5, 0.5], shape ``(T, TIME_FEATURE_DIMS[freq])``.

    ``'h'``: hour of day, day of week, day of month, day of year; ``'d'``: the last three; ``'w'``: day of
    month, week of year; ``'m'``: month of year. ``keep`` names the features a model may see (of
    ``CALENDAR_FEATURES[freq]``); the others are held at 0, so the width, and with it a model's shape, stays
    the same. On a series of a few months, day of year and day of month name the date, which lets a network
    memorise the training span's weather instead of learning to forecast it.
    """
    if freq not in TIME_FEATURE_DIMS:
        raise SeriesError(f"unknown frequency {freq!r}; choose one of {', '.join(TIME_FEATURE_DIMS)}")
    names = CALENDAR_FEATURES[freq]
    if keep is not None:
        unknown = [k for k in keep if k not in names]
        if unknown:
            raise SeriesError(f"calendar feature(s) {', '.join(map(repr, unknown))} do not exist at frequency "
                              f"{freq!r}; choose among {', '.join(names)}")
    ts = np.asarray(timestamps).astype("datetime64[s]")
    days = ts.astype("datetime64[D]")
    hour = (ts - days).astype("timedelta64[h]").astype(np.int64)
    day_of_week = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0 as in pandas
    months = days.astype("datetime64[M]")
    day_of_month = (days - months).astype(np.int64)  # 0-based
    years = days.astype("datetime64[Y]")
    day_of_year = (days - years).astype(np.int64)  # 0-based
    month = (months.astype(np.int64) % 12)  # 0 = January
    week_of_year = day_of_year // 7  # ISO weeks differ at year ends; the feature only needs to be smooth
    cols = {
        "hour": hour / 23.0 - 0.5,
        "dow": day_of_week / 6.0 - 0.5,
        "dom": day_of_month / 30.0 - 0.5,
        "doy": day_of_year / 365.0 - 0.5,
        "woy": week_of_year / 52.0 - 0.5,
        "month": month / 11.0 - 0.5,
    }
    out = np.stack([cols[c] for c in names], axis=1).astype(np.float32)
    if keep is not None:
        out[:, [i for i, c in enumerate(names) if c not in keep]] = 0.0
    return out


# ----------------------------------------------------------------------------------------------- series
@dataclass
class Series:
    """A multivariate series: ``values`` (T, V), ``timestamps`` (T,), optional ``coords`` (V, k) and names."""

    values: np.ndarray
    timestamps: np.ndarray
    freq: str = "h"
    coords: Optional[np.ndarray] = None
    names: Optional[List[str]] = None
    description: str = ""
    #: the forecast targets among the variables (indices; None: every variable is a target)
    targets: Optional[List[int]] = None
    #: variables per station when the columns are grouped station-major (a long table: each station's targets,
    #: then its inputs; a wide table: all its columns); the forecasters take it as their node width (``enc_in``)
    node_size: Optional[int] = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim == 1:
            self.values = self.values[:, None]
        if self.values.ndim != 2:
            raise SeriesError(f"series values must be (time, variables), got shape {self.values.shape}")
        raw_times = np.asarray(self.timestamps)
        if raw_times.dtype.kind == "f":  # astype(datetime64) would cut 1.5 to 1 s without a word
            raise SeriesError(
                f"the timestamps of {self.description or 'the series'} are floating-point numbers ({raw_times[:2]}…), "
                "which would be truncated to whole units silently; save them as datetime64 or ISO strings "
                "(np.save(path, times.astype('datetime64[s]')))")
        self.timestamps = raw_times.astype("datetime64[s]")
        if self.timestamps.shape != (self.values.shape[0],):
            raise SeriesError(f"{self.values.shape[0]} time steps but {self.timestamps.shape[0]} timestamps")
        if self.coords is not None:
            self.coords = np.asarray(self.coords, dtype=np.float32)
            if self.coords.ndim != 2 or self.coords.shape[0] != self.values.shape[1]:
                raise SeriesError(
                    f"station counts differ: the series has {self.values.shape[1]} variables but the coordinates "
                    f"describe {self.coords.shape[0] if self.coords.ndim else 0} stations (shape {self.coords.shape}); "
                    "pass one coordinate row per station, in the same order"
                )
        if self.freq not in TIME_FEATURE_DIMS:
            raise SeriesError(f"unknown frequency {self.freq!r}; choose one of {', '.join(TIME_FEATURE_DIMS)}")

    @property
    def num_steps(self) -> int:
        return self.values.shape[0]

    @property
    def num_variables(self) -> int:
        return self.values.shape[1]

    def slice(self, start: int, stop: int) -> "Series":
        return Series(self.values[start:stop], self.timestamps[start:stop], self.freq, self.coords, self.names,
                      self.description, self.targets, self.node_size)


def fill_missing(values: np.ndarray, policy: str = "error", what: str = "series",
                 names: Optional[Sequence[str]] = None) -> np.ndarray:
    """NaN handling: ``'error'`` raises :class:`SeriesError` naming where; ``'interpolate'`` fills each
    variable linearly in time (leading/trailing gaps take the nearest value); a variable with no value at all
    is refused either way."""
    values = np.asarray(values, dtype=np.float32)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if policy not in ("error", "interpolate"):
        raise ValueError(f"nan_policy must be 'error' or 'interpolate', got {policy!r}")
    rows, cols = np.nonzero(bad)
    label = (lambda v: repr(names[v])) if names is not None else (lambda v: str(int(v)))
    if policy == "error":
        raise SeriesError(
            f"{what} has {int(bad.sum())} NaN/inf values (first at time step {int(rows[0])}, variable "
            f"{label(cols[0])}), a table's missing time steps included; clean the data or pass nan_policy='interpolate' (--nan-policy interpolate)"
        )
    out = values.copy()
    t = np.arange(values.shape[0])
    for v in np.unique(cols):
        ok = ~bad[:, v]
        if not ok.any():
            raise SeriesError(f"{what}: variable {label(v)} has no finite value at all; drop it")
        out[~ok, v] = np.interp(t[~ok], t[ok], values[ok, v])
    _logger.info("%s: interpolated %d missing values", what, int(bad.sum()))
    return out


# ----------------------------------------------------------------------------------------------- time axis
#: What to do where consecutive timestamps are further apart than the series' step (a station down for 60 h):
#: ``error`` refuses, ``split`` keeps the data but no window crosses the gap, ``fill`` inserts the missing
#: steps as NaN, which ``nan_policy`` then fills or refuses.
GAP_POLICIES = ("error", "split", "fill")


def _step_seconds(timestamps: np.ndarray, freq: str) -> Tuple[np.ndarray, int]:
    """(the differences between consecutive timestamps, in seconds or months for ``freq='m'``; the regular step:
    1 month, else the most common difference)."""
    if freq == "m":
        months = timestamps.astype("datetime64[M]").astype(np.int64)
        return np.diff(months), 1
    diffs = np.diff(timestamps.astype("datetime64[s]").astype(np.int64))
    positive = diffs[diffs > 0]
    if not len(positive):
        return diffs, 1
    values, counts = np.unique(positive, return_counts=True)
    return diffs, int(values[np.argmax(counts)])


def find_gaps(timestamps: np.ndarray, freq: str = "h") -> np.ndarray:
    """Indices ``i`` where step ``i`` follows step ``i - 1`` after more than 1.5 regular steps (a gap)."""
    diffs, step = _step_seconds(np.asarray(timestamps), freq)
    return np.nonzero(diffs > 1.5 * step)[0] + 1


def _describe_step(seconds: int, freq: str) -> str:
    if freq == "m":
        return f"{seconds} month(s)"
    for unit, size in (("day(s)", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def check_time_axis(series: "Series", gap_policy: str = "error", where: str = "time step", first: int = 0,
                    lines: Optional[Sequence[int]] = None, step: Optional[int] = None) -> "Series":
    """Refuse unsorted or duplicated timestamps (naming the rows), and apply ``gap_policy`` to gaps.

    Unsorted rows would let windows put the future before the past, and duplicated ones make two values of the
    same moment; neither has a safe automatic repair, so both are refused. ``where``/``first`` name rows the way
    the file does (``'CSV line'``, 2 for a header line); ``lines`` gives each step's own number instead (the rows
    of one station of a long table are interleaved with the other stations' rows). ``step`` (seconds) is the
    regular step when the caller knows it (the step that a long table's stations share); otherwise it is the
    series' most common one.
    """
    if gap_policy not in GAP_POLICIES:
        raise ValueError(f"gap_policy must be one of {', '.join(GAP_POLICIES)}, got {gap_policy!r}")
    ts, what = series.timestamps, series.description or "the series"
    if len(ts) < 2:
        return series
    line = (lambda i: int(lines[i])) if lines is not None else (lambda i: int(i) + first)
    raw = np.diff(ts.astype(np.int64))
    back = np.nonzero(raw < 0)[0]
    if len(back):
        i = int(back[0]) + 1
        raise SeriesError(
            f"{what} is not sorted by time: {where} {line(i)} ({ts[i]}) comes before {where} {line(i - 1)} "
            f"({ts[i - 1]}), {len(back)} time(s) in all; windows would put the future before the past. Sort the "
            "rows by their timestamp")
    same = np.nonzero(raw == 0)[0]
    if len(same):
        rows = ", ".join(f"{line(i)} and {line(i + 1)}" for i in same[:3])
        more = f" and {len(same) - 3} more" if len(same) > 3 else ""
        raise SeriesError(
            f"{what} has duplicated timestamps: {where}s {rows}{more} (first {ts[same[0]]}); keep one row per "
            "moment (average or drop the duplicates)")
    diffs, own_step = _step_seconds(ts, series.freq)
    step = own_step if step is None or series.freq == "m" else int(step)
    gaps = np.nonzero(diffs > 1.5 * step)[0] + 1  # as find_gaps, with the given step
    if not len(gaps) or gap_policy == "split":
        if len(gaps):
            _logger.info("%s: %d gap(s) in time; no window crosses them (gap policy 'split')", what, len(gaps))
        return series
    i = int(gaps[0])
    if gap_policy == "error":
        raise SeriesError(
            f"{what} has {len(gaps)} gap(s) in time: {_describe_step(int(diffs[i - 1]), series.freq)} between "
            f"{where} {line(i - 1)} ({ts[i - 1]}) and {where} {line(i)} ({ts[i]}), where it steps by "
            f"{_describe_step(step, series.freq)}; windows would join the two sides as if contiguous. Pass "
            "--gap-policy split (no window crosses a gap) or --gap-policy fill (missing steps become NaN, filled by "
            "--nan-policy interpolate)")
    if series.freq == "m":
        index = ts.astype("datetime64[M]").astype(np.int64)
        grid = np.arange(index[0], index[-1] + 1)
        grid_times = grid.astype("datetime64[M]").astype("datetime64[s]")
    else:
        index = ts.astype(np.int64)
        if np.any((index - index[0]) % step):
            raise SeriesError(
                f"{what}: its timestamps are not on a grid of {_describe_step(step, series.freq)}, so missing steps "
                "cannot be inserted; use --gap-policy split")
        grid = np.arange(index[0], index[-1] + 1, step)
        grid_times = grid.astype("datetime64[s]")
    values = np.full((len(grid), series.num_variables), np.nan, dtype=np.float32)
    values[np.searchsorted(grid, index)] = series.values
    _logger.info("%s: %d missing step(s) inserted as NaN (gap policy 'fill')", what, len(grid) - len(ts))
    return Series(values, grid_times, series.freq, series.coords, series.names, series.description, series.targets,
                  series.node_size)


# ----------------------------------------------------------------------------------------------- loaders
def _check_npy_header(path: Path) -> None:
    """Refuse a .npy by its header, before numpy allocates what the header claims: no values at all (a shape
    of (10⁹, 0) would become 10⁹ timestamps), more than the data the file holds, or over the size limit."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, SyntaxError):
        return  # np.load gives the precise error
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with the advice below
    count = int(np.prod(shape, dtype=object))
    if count == 0 or (shape and 0 in shape):
        raise SeriesError(f"{path} holds no values (shape {shape}); expected (time steps, variables)")
    nbytes, available = count * dtype.itemsize, path.stat().st_size - offset
    if nbytes > available:
        raise SeriesError(f"{path} declares shape {shape} ({nbytes:,} bytes) but holds {available:,} bytes of data; "
                          "the file is truncated or corrupt")
    most = _series_limit(MAX_SERIES_BYTES_ENV, DEFAULT_MAX_SERIES_BYTES, "bytes")
    if nbytes > most:
        raise SeriesError(f"{path} holds {nbytes:,} bytes of values, over the limit of {most:,} for a series; raise "
                          f"it with {MAX_SERIES_BYTES_ENV}=<bytes> if the machine has the memory")


def _load_npy(path: Path) -> np.ndarray:
    """Read a ``.npy`` file without ever unpickling it.

    An object array is stored as a pickle, and unpickling runs whatever code the file names, so it is refused
    with advice to re-save the data as plain numbers or strings; timestamps saved as strings (``<U…``) or
    ``datetime64`` are plain arrays and load as usual.
    """
    if not path.is_file():  # missing, or a FIFO/device that would block the reader
        from ...checkpoint import not_a_regular_file

        raise SeriesError(not_a_regular_file(path, "array file"))
    _check_npy_header(path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" not in str(e) and "Object arrays" not in str(e):
            raise SeriesError(f"{path} is not a readable .npy file ({e}); re-save it with numpy.save") from e
        raise SeriesError(
            f"{path} holds a numpy object array, which can only be read by unpickling it, and unpickling a data "
            "file can run arbitrary code, so it is refused. Re-save it without the object dtype, with the "
            "program that wrote it: timestamps as datetime64 or strings (np.save(path, times.astype("
            "'datetime64[s]'))), values as float32 (np.save(path, values.astype(np.float32)))"
        ) from None
    except OSError as e:
        raise SeriesError(f"cannot read {path} ({e}); check that it is a .npy file written by numpy.save") from e


def load_global_station_folder(root: Union[str, Path], variable: str = "temp", split: str = "train",
                               nan_policy: str = "error", feature: Optional[int] = 0, gap_policy: str = "error"
                               ) -> Series:
    """One split of the Corrformer Global Temp / Global Wind layout (the data of the paper):

    * ``{variable}_global_hourly_{split}.npy``: (hours, stations) or (hours, stations, features) — ``feature``
      selects one, ``None`` keeps all, flattened station-major as the official loader's ``features='M'`` does;
    * ``data_time_{split}.npy``: (hours,) timestamps (strings or datetimes);
    * ``stations_sorted.npy``: (stations, k) station coordinates (optional: missing → no geo embedding).
    """
    root = Path(root)
    if not root.is_dir():
        raise SeriesError(f"{root} is not a folder; expected the Global Temp/Wind files there")
    values = _load_npy(root / f"{variable}_global_hourly_{split}.npy")
    features_per_station = 1
    if values.ndim == 3:
        if feature is None:
            features_per_station = values.shape[2]
            values = values.reshape(values.shape[0], -1)
        else:
            values = values[:, :, feature]
    if values.ndim != 2:
        raise SeriesError(f"{variable}_global_hourly_{split}.npy has shape {values.shape}; expected (hours, stations)")
    times = _load_npy(root / f"data_time_{split}.npy")
    try:
        times = np.asarray(times).reshape(-1).astype("datetime64[s]")
    except ValueError as e:
        raise SeriesError(f"data_time_{split}.npy does not hold timestamps ({e})") from e
    coords = None
    if (root / "stations_sorted.npy").is_file():
        coords = np.asarray(_load_npy(root / "stations_sorted.npy"), dtype=np.float32)
        if coords.ndim == 1:
            coords = coords[:, None]
        coords = np.repeat(coords, features_per_station, axis=0)  # one row per series, station-major
    series = check_time_axis(Series(values, times, "h", coords, description=f"{root.name} {variable} {split}"),
                             gap_policy)
    series.values = fill_missing(series.values, nan_policy, f"{variable}_global_hourly_{split}.npy")
    return series


def write_global_station_folder(root: Union[str, Path], splits: Dict[str, Series], variable: str = "temp") -> Path:
    """Write series in the Global Temp/Wind layout (the inverse of :func:`load_global_station_folder`)."""
    from ...checkpoint import atomic_write  # the one writer

    def save(path: Path, array: np.ndarray) -> None:
        atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    coords = None
    for split, s in splits.items():
        save(root / f"{variable}_global_hourly_{split}.npy", s.values.astype(np.float32))
        save(root / f"data_time_{split}.npy", s.timestamps.astype("datetime64[s]"))
        coords = s.coords if s.coords is not None else coords
    if coords is not None:
        save(root / "stations_sorted.npy", np.asarray(coords))
    return root


def _series_limit(name: str, default: int, unit: str) -> int:
    from ...limits import env_limit

    try:
        return int(env_limit(name, default, unit))
    except ValueError as e:
        raise SeriesError(str(e)) from None


MAX_SERIES_BYTES_ENV = "UNIREPLKNET_MAX_SERIES_BYTES"
#: The largest CSV file, and the largest .npy array of a series, that is read (both are read whole); 2 GB is
#: almost a thousand times ETTh1 (2.6 MB).
DEFAULT_MAX_SERIES_BYTES = 2_000_000_000
MAX_CSV_CELL_ENV = "UNIREPLKNET_MAX_CSV_CELL"
#: A cell holds a number or a timestamp; Python's csv module would accept 131,072 characters.
DEFAULT_MAX_CSV_CELL = 1000


def _parse_time(cell: str) -> np.datetime64:
    """One timestamp cell: ISO dates with a space or a 'T', a trailing 'Z' (UTC) accepted."""
    text = cell.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1]
    return np.datetime64(text, "s")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _split_names(value: Optional[Union[str, Sequence[str]]]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v.strip()]


def _read_csv_rows(path: Path) -> Tuple[List[str], List[Tuple[int, List[str]]]]:
    """The header and the non-blank rows, each with its line in the file; size and cell length bounded."""
    if not path.is_file():  # missing, or a FIFO/device that would block the reader
        from ...checkpoint import not_a_regular_file

        raise SeriesError(not_a_regular_file(path, "CSV file"))
    size, most = path.stat().st_size, _series_limit(MAX_SERIES_BYTES_ENV, DEFAULT_MAX_SERIES_BYTES, "bytes")
    if size > most:
        raise SeriesError(f"{path} is {size:,} bytes, over the limit of {most:,} for a CSV series (it is read whole); "
                          f"save it as .npy, or raise the limit with {MAX_SERIES_BYTES_ENV}=<bytes>")
    cell = _series_limit(MAX_CSV_CELL_ENV, DEFAULT_MAX_CSV_CELL, "characters")
    saved = csv.field_size_limit()
    try:
        csv.field_size_limit(cell)
        with open(path, newline="", errors="replace") as f:
            reader = csv.reader(f)
            try:
                header = [h.strip() for h in next(reader)]
                rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
            except StopIteration:
                raise SeriesError(f"{path} is empty") from None
            except csv.Error as e:  # a cell longer than the limit, a NUL byte …
                raise SeriesError(f"{path}, line {reader.line_num}: not a CSV series ({e}); a cell holds a number or "
                                  f"a timestamp (a longer one is allowed with {MAX_CSV_CELL_ENV}=<characters>)") from None
    finally:
        csv.field_size_limit(saved)
    if not rows:
        raise SeriesError(f"{path} has a header but no rows")
    return header, rows


def _shared_step(parts: Sequence[Series]) -> Optional[int]:
    """The regular step (s) that the stations of a long table share: the finest of their own steps."""
    steps = [_step_seconds(p.timestamps, p.freq)[1] for p in parts if p.num_steps > 1]
    return min(steps) if steps else None


def load_csv_series(path: Union[str, Path], time_column: str = "date", columns: Optional[Sequence[str]] = None,
                    freq: str = "h", nan_policy: str = "error", gap_policy: str = "error",
                    series_column: Optional[str] = None, targets: Optional[Union[str, Sequence[str]]] = None
                    ) -> Series:
    """A CSV table: wide (a timestamp column and one column per variable, the ETT/Informer format) or long
    (``series_column`` names the station of each row: one row per station and time).

    ``targets`` (names, or one comma-separated string) are the variables to forecast; the other numeric
    columns (or ``columns``) are inputs. A long table becomes ``stations × (targets + inputs)`` variables,
    station-major, named ``station:column``, with ``node_size`` = variables per station.

    The time axis is checked by :func:`check_time_axis`, per station for a long table: rows sorted by time
    without duplicates (refused naming the CSV lines); gaps follow ``gap_policy`` (``fill`` inserts the missing
    steps as NaN). A long table's stations must share one grid (one step, aligned); a step that one station
    lacks and another has is NaN in the first. NaNs are then filled or refused by ``nan_policy``. The file size
    and the length of one cell are bounded (``UNIREPLKNET_MAX_SERIES_BYTES``, ``UNIREPLKNET_MAX_CSV_CELL``).
    """
    path = Path(path)
    header, rows = _read_csv_rows(path)
    lines = np.array([line for line, _ in rows])
    rows = [r for _, r in rows]
    for flag, name in (("--time-column", time_column), ("--series-column", series_column)):
        if name is not None and name not in header:
            raise SeriesError(f"{path} has no column {name!r} (columns: {', '.join(header)}); pass {flag}")
    target_names = _split_names(targets)
    unknown = [c for c in list(columns or []) + target_names if c not in header]
    if unknown:
        raise SeriesError(f"{path} has no column(s) {', '.join(map(repr, unknown))} (columns: {', '.join(header)}); "
                          "check --target")
    keys = {time_column, series_column}
    candidates = list(columns) if columns else [h for h in header if h not in keys]
    names = target_names + [c for c in candidates if c not in target_names and c not in keys]
    values = np.full((len(rows), len(names)), np.nan, dtype=np.float64)
    skipped: List[str] = []
    first_text = ""
    for j, name in enumerate(names):
        k = header.index(name)
        cells = [r[k].strip() if k < len(r) else "" for r in rows]
        for i, cell in enumerate(cells):
            if cell and cell.lower() not in ("nan", "na", "null"):
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    where = f"{path}, line {lines[i]}, column {name!r}: {cell!r} is not a number"
                    if name not in target_names and not columns and not np.isfinite(values[:, j]).any() and \
                            not any(_is_number(c) for c in cells[i + 1:]):
                        skipped.append(name)  # a text column (a label, a flag): not an input
                        first_text = first_text or where
                        break
                    raise SeriesError(where) from None
    if skipped:
        _logger.info("%s: text column(s) %s are not used as inputs", path, ", ".join(skipped))
        keep = [j for j, n in enumerate(names) if n not in skipped]
        values, names = values[:, keep], [names[j] for j in keep]
    if not names:
        raise SeriesError(f"{first_text}; the table has no numeric column besides {time_column!r}")
    ti = header.index(time_column)
    try:
        times = np.array([_parse_time(r[ti]) for r in rows])
    except ValueError as e:
        raise SeriesError(f"{path}: cannot parse the {time_column!r} column as timestamps ({e})") from e
    if series_column is None:  # one station: every column in one node
        series = check_time_axis(Series(values, times, freq, names=names, description=path.name), gap_policy,
                                 "CSV line", lines=lines)
        table, grid, out_names = series.values, series.timestamps, names
    else:
        si = header.index(series_column)
        labels = [r[si].strip() for r in rows]
        stations = list(dict.fromkeys(labels))  # in order of first appearance
        station_of = np.array([stations.index(s) for s in labels])
        parts = [Series(values[station_of == k], times[station_of == k], freq, names=names,
                        description=f"{path.name}, {series_column} {s!r}") for k, s in enumerate(stations)]
        step = _shared_step(parts) if freq != "m" else None
        if step is not None and gap_policy != "split":  # one grid for all stations, or the columns would not align
            start = min(p.timestamps[0] for p in parts)
            for p, s in zip(parts, stations):
                if np.any((p.timestamps - start).astype(np.int64) % step):
                    raise SeriesError(
                        f"{path}: the timestamps of {series_column} {s!r} are not on the grid of "
                        f"{_describe_step(step, freq)} from {start} that the other stations share; resample the "
                        "table to one regular step first, or pass --gap-policy split")
        parts = [check_time_axis(p, gap_policy, "CSV line", lines=lines[station_of == k], step=step)
                 for k, p in enumerate(parts)]
        grid = np.unique(np.concatenate([p.timestamps for p in parts]))
        table = np.full((len(grid), len(stations) * len(names)), np.nan, dtype=np.float32)
        for k, p in enumerate(parts):
            table[np.searchsorted(grid, p.timestamps), k * len(names):(k + 1) * len(names)] = p.values
        out_names = [f"{s}:{n}" for s in stations for n in names]
        # stations whose spans do not meet leave a gap that no station covers: the same policy applies
        joined = check_time_axis(Series(table, grid, freq, names=out_names, description=f"{path.name} (all stations)"),
                                 gap_policy, step=step)
        table, grid = joined.values, joined.timestamps
    target_index = None
    if target_names:
        per_station = len(names)
        target_index = [k * per_station + j for k in range(len(out_names) // per_station)
                        for j in range(len(target_names))]
    return Series(fill_missing(table, nan_policy, str(path), out_names), grid, freq, names=out_names,
                  description=path.name, targets=target_index, node_size=len(names))


def load_array_series(path: Union[str, Path], freq: str = "h", start: str = "2000-01-01",
                      nan_policy: str = "error", gap_policy: str = "error") -> Series:
    """A ``.npy`` (T, V) array, or an ``.npz`` with ``values`` [, ``timestamps``, ``coords``]; without timestamps
    the steps are numbered from ``start`` at ``freq``."""
    path = Path(path)
    if not path.is_file():  # missing, or a FIFO/device that would block the reader
        from ...checkpoint import not_a_regular_file

        raise SeriesError(not_a_regular_file(path, "array file"))
    coords = None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "values" not in z:
                raise SeriesError(f"{path} has no 'values' array (has: {', '.join(z.files)})")
            try:
                values = z["values"]
                times = z["timestamps"] if "timestamps" in z else None
                coords = z["coords"] if "coords" in z else None
            except ValueError:
                raise SeriesError(
                    f"{path} holds a numpy object array, which can only be read by unpickling it, and unpickling a "
                    "data file can run arbitrary code, so it is refused; re-save it with plain dtypes (values "
                    "float32, timestamps datetime64 or strings)") from None
    else:
        values, times = _load_npy(path), None
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    if values.size == 0:
        raise SeriesError(f"{path} holds no values (shape {values.shape}); expected (time steps, variables)")
    if times is None:
        unit = {"h": "h", "d": "D", "w": "W", "m": "M"}[freq]
        times = np.datetime64(start, unit) + np.arange(values.shape[0]).astype(f"timedelta64[{unit}]")
    series = check_time_axis(Series(values, times, freq, coords, description=path.name), gap_policy)
    series.values = fill_missing(series.values, nan_policy, str(path))
    return series


def co2_series(monthly: bool = True, nan_policy: str = "interpolate") -> Series:
    """The embedded Mauna Loa CO2 record (public domain; ``data/timeseries/co2_mauna_loa.npz``).

    Weekly from 1958-03 to 2001-12 with 59 missing weeks; ``monthly=True`` averages the weeks of each month
    that have a value, giving 526 months; the 5 months without any measured week are filled by ``nan_policy``
    (default: linear interpolation). The weekly series keeps its gaps,
    handled by ``nan_policy``.
    """
    with np.load(DATA_DIR / "co2_mauna_loa.npz", allow_pickle=False) as z:
        dates, values, note = z["dates"], z["co2"].astype(np.float64), str(z["attribution"])
    if not monthly:
        return Series(fill_missing(values[:, None], nan_policy, "co2 weekly"), dates, "w", names=["co2"],
                      description=note)
    months = dates.astype("datetime64[M]")
    uniq = np.unique(months)
    ok = np.isfinite(values)
    sums = np.zeros(len(uniq))
    counts = np.zeros(len(uniq))
    pos = np.searchsorted(uniq, months)
    np.add.at(sums, pos[ok], values[ok])
    np.add.at(counts, pos[ok], 1)
    monthly_values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Series(fill_missing(monthly_values[:, None], nan_policy, "co2 monthly"), uniq, "m", names=["co2"],
                  description=note)


def make_synthetic_station_grid(num_stations: int = 22, days: int = 100, seed: int = 0,
                                start: str = "2019-01-01", advection_hours: int = 0, chain: int = 11,
                                linear_share: float = 0.5) -> Series:
    """A small synthetic hourly temperature grid in the Global Temp spirit (°C; deterministic for a seed).

    Stations are spread over the globe (latitude, longitude, elevation in km as ``coords``). Each hour's value
    is a latitude-dependent mean, minus 6.5 °C per km of elevation, plus a seasonal cycle (opposite in the two
    hemispheres), a diurnal cycle peaking at 15:00 local solar time, and "weather": an AR(1) anomaly (hourly
    persistence 0.97) made of a few large-scale random fields, so neighbouring stations are correlated.

    ``advection_hours`` > 0 adds structure that a per-series model cannot see: the stations form west-to-east
    chains of ``chain`` consecutive stations (a storm track, 8° of longitude apart), and the weather anomaly of
    each station is its upstream neighbour's anomaly ``advection_hours`` earlier, passed through a nonlinear
    coupling: ``a_k(t) = r·a_{k-1}(t-L) + sqrt(1-r²)·σ_{k-1}·z(|a_{k-1}(t-L)|)`` with ``r = linear_share`` and ``z``
    the magnitude with its linear part in ``a_{k-1}`` removed, standardised (a front that warms the next station
    whatever its sign upstream). With ``L`` equal to the forecast length, a station's next day is a function of
    its upstream neighbour's last day; a linear map on all stations sees only the ``r`` part (``z`` is
    uncorrelated with ``a_{k-1}`` by construction), a per-series one none of it. Only the first station of a chain carries the large-scale AR(1) weather. ``num_stations`` must
    be a multiple of ``chain`` (nodes of ``chain`` stations keep a chain in one node).
    """
    if advection_hours:
        return _advected_station_grid(num_stations, days, seed, start, int(advection_hours), chain, linear_share)
    rng = np.random.default_rng(seed)
    lat = rng.uniform(-60, 70, num_stations)
    lon = rng.uniform(-180, 180, num_stations)
    elev = rng.gamma(1.5, 0.4, num_stations)
    hours = days * 24
    t0 = np.datetime64(start, "h")
    times = t0 + np.arange(hours).astype("timedelta64[h]")
    hour_utc = np.arange(hours) % 24
    day_of_year = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(np.int64)
    local_hour = (hour_utc[:, None] + lon[None, :] / 15.0) % 24
    mean = 27.0 - 0.35 * np.abs(lat) - 6.5 * elev
    season = -np.sign(lat) * (0.18 * np.abs(lat) + 2) * np.cos(2 * np.pi * (day_of_year[:, None] - 15) / 365.25)
    diurnal = (3.0 + 3.0 * rng.random(num_stations)) * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
    # Weather: K smooth spatial modes with AR(1) amplitudes.
    k = 6
    centres = np.stack([rng.uniform(-60, 70, k), rng.uniform(-180, 180, k)], 1)
    dlat = lat[None, :] - centres[:, :1]
    dlon = (lon[None, :] - centres[:, 1:] + 180) % 360 - 180
    loadings = np.exp(-(dlat ** 2 + dlon ** 2) / (2 * 45.0 ** 2))  # (k, stations)
    amp = np.zeros((hours, k))
    noise = rng.standard_normal((hours, k)) * 0.6
    for h in range(1, hours):
        amp[h] = 0.97 * amp[h - 1] + noise[h]
    weather = amp @ loadings + 0.3 * rng.standard_normal((hours, num_stations))
    values = mean[None, :] + season + diurnal + weather
    coords = np.stack([lat, lon, elev], axis=1)
    return Series(values.astype(np.float32), times, "h", coords.astype(np.float32),
                  names=[f"station{i:03d}" for i in range(num_stations)],
                  description=f"synthetic station grid ({num_stations} stations, {days} days, seed {seed})")


def _advected_station_grid(num_stations: int, days: int, seed: int, start: str, lag: int, chain: int,
                           linear_share: float) -> Series:
    """The ``advection_hours`` variant of :func:`make_synthetic_station_grid` (its own random stream, so the
    default grid stays the same for a seed)."""
    if num_stations % chain or lag < 1 or not 0.0 <= linear_share <= 1.0:
        raise SeriesError(f"advected station grid: need stations ({num_stations}) a multiple of the chain length "
                          f"({chain}), advection_hours >= 1 (got {lag}) and 0 <= linear_share <= 1 (got "
                          f"{linear_share}); e.g. 22 stations in chains of 11, 24 hours")
    rng = np.random.default_rng([seed, 1])
    chains = num_stations // chain
    position = np.arange(num_stations) % chain
    lat = np.repeat(rng.uniform(-50, 60, chains), chain) + rng.normal(0, 2, num_stations)
    lon = (np.repeat(rng.uniform(-180, 180, chains), chain) + 8.0 * position + 180) % 360 - 180
    elev = rng.gamma(1.5, 0.4, num_stations)
    hours = days * 24
    t0 = np.datetime64(start, "h")
    times = t0 + np.arange(hours).astype("timedelta64[h]")
    day_of_year = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(np.int64)
    local_hour = ((np.arange(hours) % 24)[:, None] + lon[None, :] / 15.0) % 24
    mean = 27.0 - 0.35 * np.abs(lat) - 6.5 * elev
    season = -np.sign(lat) * (0.18 * np.abs(lat) + 2) * np.cos(2 * np.pi * (day_of_year[:, None] - 15) / 365.25)
    diurnal = (3.0 + 3.0 * rng.random(num_stations)) * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
    # The chain heads' weather: AR(1), hourly persistence 0.97, on a longer axis so every station downstream has
    # its upstream history from the first hour on.
    extended = hours + (chain - 1) * lag
    noise = rng.standard_normal((extended, chains)) * 0.6
    head = np.zeros((extended, chains))
    for h in range(1, extended):
        head[h] = 0.97 * head[h - 1] + noise[h]
    anomaly = np.zeros((extended, num_stations))
    anomaly[:, position == 0] = head
    for k in range(1, chain):
        up = anomaly[:extended - lag, position == k - 1]
        # |a| without its linear part in a (nonzero once the chain has made a skewed), standardised: the
        # coupling's nonlinear part is then uncorrelated with the upstream anomaly by construction
        centred, magnitude = up - up.mean(0), np.abs(up) - np.abs(up).mean(0)
        magnitude = magnitude - centred * (centred * magnitude).mean(0) / ((centred ** 2).mean(0) + 1e-9)
        z = magnitude / (magnitude.std(0) + 1e-9)
        anomaly[lag:, position == k] = linear_share * up + np.sqrt(1 - linear_share ** 2) * up.std(0) * z
    weather = anomaly[-hours:] + 0.3 * rng.standard_normal((hours, num_stations))
    values = mean[None, :] + season + diurnal + weather
    coords = np.stack([lat, lon, elev], axis=1)
    return Series(values.astype(np.float32), times, "h", coords.astype(np.float32),
                  names=[f"station{i:03d}" for i in range(num_stations)],
                  description=f"advected station grid ({num_stations} stations in chains of {chain}, weather moves "
                              f"{lag} h per station, linear share {linear_share:g}; {days} days, seed {seed})")


# ----------------------------------------------------------------------------------------------- windows
def chronological_split(series: Series, seq_len: int, fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2)
                        ) -> Dict[str, Series]:
    """Informer's split: first 70 % train, last 20 % test, the rest validation; the validation and test
    parts start ``seq_len`` steps early so that their first forecast follows the previous part directly."""
    n = series.num_steps
    n_train, n_test = int(n * fractions[0]), int(n * fractions[2])
    n_val = n - n_train - n_test
    bounds = {"train": (0, n_train), "val": (n_train - seq_len, n_train + n_val), "test": (n - n_test - seq_len, n)}
    out = {}
    for name, (a, b) in bounds.items():
        if a < 0:
            raise SeriesError(f"the series ({n} steps) is too short for a {seq_len}-step input in the {name} split")
        out[name] = series.slice(a, b)
    return out


class WindowDataset(Dataset):
    """Sliding windows over a :class:`Series`: ``(x, x_mark, y, y_mark)``.

    ``x``: (seq_len, V) input; ``y``: (label_len + pred_len, V) decoder target starting ``label_len`` steps
    before the input ends; ``*_mark``: their calendar features. ``stride`` > 1 keeps every stride-th window.
    """

    def __init__(self, series: Series, seq_len: int = 48, label_len: int = 24, pred_len: int = 24, stride: int = 1,
                 calendar: Optional[Sequence[str]] = None):
        if min(seq_len, pred_len) < 1 or label_len < 0 or label_len > seq_len:
            raise SeriesError(f"need seq_len >= 1, pred_len >= 1 and 0 <= label_len <= seq_len; got "
                              f"{seq_len}/{label_len}/{pred_len}")
        n = series.num_steps - seq_len - pred_len + 1
        if n < 1:
            raise SeriesError(
                f"series '{series.description}' has {series.num_steps} steps: too short for one window of "
                f"{seq_len} input + {pred_len} forecast steps; use a longer series or shorter --seq-len/--pred-len"
            )
        if not np.all(np.isfinite(series.values)):
            raise SeriesError(f"series '{series.description}' contains NaN/inf; load it with nan_policy='interpolate'")
        self.series = series
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        starts = np.arange(0, n, max(1, int(stride)))
        gaps = find_gaps(series.timestamps, series.freq)  # present only under gap_policy 'split'
        if len(gaps):
            # a window [s, s + seq_len + pred_len) is kept when no gap starts strictly inside it
            span = seq_len + pred_len
            first_gap_after = gaps[np.searchsorted(gaps, starts, side="right").clip(max=len(gaps) - 1)]
            crosses = (first_gap_after > starts) & (first_gap_after < starts + span)
            starts = starts[~crosses]
            if not len(starts):
                raise SeriesError(
                    f"series '{series.description}' has no stretch of {span} steps without a gap in time; use "
                    "--gap-policy fill with --nan-policy interpolate, or shorter --seq-len/--pred-len")
        self.starts = starts
        self.values = torch.from_numpy(series.values)
        self.marks = torch.from_numpy(time_features(series.timestamps, series.freq, keep=calendar))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        s = int(self.starts[i])
        e = s + self.seq_len
        r0, r1 = e - self.label_len, e + self.pred_len
        return self.values[s:e], self.marks[s:e], self.values[r0:r1], self.marks[r0:r1]

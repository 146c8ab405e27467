"""Generate a small Global Temp / Global Wind look-alike in the official file layout (seconds, deterministic).

    unireplknet forecast-make-weather OUT_DIR [--stations 308] [--days 120] [--seed 0]

(from Python: :func:`write`) writes, like the Corrformer/UniRepLKNet release (paper Table 12; official `Time-Series/` code, described in docs/timeseries.md), values ×10 (the release's convention):

* ``temp_global_hourly_{train,val,test}.npy``: (hours, stations, 1) float32, °C × 10;
* ``wind_global_hourly_{train,val,test}.npy``: (hours, stations, 1) float32, m/s × 10;
* ``data_time_{train,val,test}.npy``: (hours,) timestamps as strings ``YYYY-MM-DDTHH:MM:SS`` (no pickle);
* ``stations_sorted.npy``: (stations, 3) float32 latitude °, longitude °, elevation km.

The world it simulates: stations spread evenly over the sphere (a jittered Fibonacci lattice) and ordered in
4 latitude bands × 7 longitude sectors of 11, so that a node of 11 consecutive stations is a neighbourhood
and the node tree is ``node_list = (4, 7)``. Temperature = a climate mean (latitude, −6.5 °C/km lapse rate)
+ a seasonal cycle opposite in the two hemispheres + a diurnal cycle at local solar time whose amplitude is
damped by cloud cover + weather + noise. Weather and cloud are smooth spatial fields made of Gaussian bumps
on the sphere that drift eastward (about 8° of longitude a day) with AR(1) amplitudes, so neighbours are
correlated and downstream stations see upstream weather hours later; cloud = sigmoid(field), which makes
the diurnal amplitude depend on the weather (a product no linear model of the window captures). Wind speed
is the magnitude of a drifting (u, v) field plus a daytime maximum. Splits: the first 70 % of the hours for
training, the next 10 % validation, the last 20 % test, each later split starting 48 h early so that its
first forecast follows the previous split (Informer's convention).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

__all__ = ["simulate", "write", "split_bounds", "station_lattice", "SEQ_LEN"]

SEQ_LEN = 48
BANDS, SECTORS, PER_NODE = 4, 7, 11


def station_lattice(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) latitude, longitude, elevation; sorted into BANDS × SECTORS nodes of n / (BANDS·SECTORS)."""
    i = np.arange(n) + 0.5
    lat = np.degrees(np.arcsin(1 - 2 * i / n)) + rng.normal(0, 1.0, n)
    lon = (np.degrees(np.pi * (1 + 5 ** 0.5) * i) + rng.normal(0, 1.0, n)) % 360 - 180
    elev = rng.gamma(1.5, 0.35, n)
    order = np.argsort(-lat, kind="stable")
    per_band = n // BANDS
    rows = []
    for b in range(BANDS):
        band = order[b * per_band:(b + 1) * per_band]
        rows.append(band[np.argsort(lon[band], kind="stable")])
    idx = np.concatenate(rows)
    return np.stack([lat[idx], lon[idx], elev[idx]], 1)


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)


def drifting_field(hours: int, stations: np.ndarray, modes: int, persistence: float, width_deg: float,
                   drift_deg_per_day: float, rng: np.random.Generator) -> np.ndarray:
    """(hours, stations) sum of Gaussian bumps on the sphere that drift east, with AR(1) amplitudes (unit
    stationary variance per mode)."""
    c_lat = np.degrees(np.arcsin(rng.uniform(-1, 1, modes)))
    c_lon = rng.uniform(-180, 180, modes)
    amp = np.empty((hours, modes))
    amp[0] = rng.standard_normal(modes)
    innov = rng.standard_normal((hours, modes)) * np.sqrt(1 - persistence ** 2)
    for h in range(1, hours):
        amp[h] = persistence * amp[h - 1] + innov[h]
    st = unit_vectors(stations[:, 0], stations[:, 1])  # (S, 3)
    width = np.radians(width_deg)
    out = np.zeros((hours, len(stations)))
    for h in range(hours):
        centres = unit_vectors(c_lat, c_lon + drift_deg_per_day * h / 24.0)  # (K, 3)
        chord2 = ((st[None] - centres[:, None]) ** 2).sum(-1)  # (K, S)
        out[h] = amp[h] @ np.exp(-chord2 / (2 * width ** 2))
    return out


def simulate(num_stations: int = 308, days: int = 120, seed: int = 0, start: str = "2019-01-01",
             parts: bool = False):
    """(times, temp °C, wind m/s, stations) of the simulated world (see the module docstring); with ``parts``
    also a dict of the temperature's additive parts (climate + season, weather, diurnal, noise) for error
    analyses (benchmarks/corrformer_ridge_errors.py)."""
    if num_stations % (BANDS * SECTORS * PER_NODE):
        raise ValueError(f"--stations must be a multiple of {BANDS * SECTORS * PER_NODE} "
                         f"({BANDS}×{SECTORS} nodes of {PER_NODE}); got {num_stations}")
    rng = np.random.default_rng(seed)
    stations = station_lattice(num_stations, rng)
    lat, lon, elev = stations.T
    hours = days * 24
    times = np.datetime64(start, "h") + np.arange(hours).astype("timedelta64[h]")
    doy = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(np.int64)
    local_hour = (np.arange(hours)[:, None] % 24 + lon[None] / 15.0) % 24

    mean = 28.0 - 0.42 * np.abs(lat) - 6.5 * elev
    season = -np.sign(lat) * (0.2 * np.abs(lat) + 1.0) * np.cos(2 * np.pi * (doy[:, None] - 15) / 365.25)
    weather = 3.0 * drifting_field(hours, stations, 40, 0.995, 18.0, 8.0, rng)
    cloud = 1 / (1 + np.exp(-1.5 * drifting_field(hours, stations, 40, 0.99, 15.0, 8.0, rng)))
    diurnal_amp = (4.0 + 2.0 * rng.random(num_stations)) * (1.0 - 0.8 * cloud)
    diurnal = diurnal_amp * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
    noise = 0.3 * rng.standard_normal((hours, num_stations))
    temp = mean + season + weather + diurnal + noise

    u = 4.0 + 3.0 * drifting_field(hours, stations, 30, 0.99, 20.0, 8.0, rng)
    v = 3.0 * drifting_field(hours, stations, 30, 0.99, 20.0, 8.0, rng)
    gust = 1.0 + 0.3 * np.clip(np.cos(2 * np.pi * (local_hour - 14.0) / 24.0), 0, None)
    wind = np.hypot(u, v) * gust + 0.3 * np.abs(rng.standard_normal((hours, num_stations)))
    if parts:
        climate = np.broadcast_to(mean, temp.shape) + season
        return times, temp, wind, stations, dict(climate=climate, weather=weather, diurnal=diurnal, noise=noise)
    return times, temp, wind, stations


def split_bounds(hours: int) -> dict:
    """split -> (first hour, end hour): 70 / 10 / 20 %, later splits starting SEQ_LEN hours early."""
    n_train, n_test = int(hours * 0.7), int(hours * 0.2)
    n_val = hours - n_train - n_test
    return {"train": (0, n_train), "val": (n_train - SEQ_LEN, n_train + n_val), "test": (hours - n_test - SEQ_LEN, hours)}


def write(out: Union[str, Path], num_stations: int = 308, days: int = 120, seed: int = 0) -> Path:
    """Simulate the world and write its train/val/test files into ``out`` (created); returns ``out``."""
    out = Path(out)
    times, temp, wind, stations = simulate(num_stations, days, seed)
    bounds = split_bounds(len(times))
    out.mkdir(parents=True, exist_ok=True)

    from ...checkpoint import atomic_write  # the one writer: a reader never sees half a file

    def save(name: str, arr: np.ndarray) -> None:
        atomic_write(out / name, lambda f: np.save(f, arr, allow_pickle=False))

    for split, (a, b) in bounds.items():
        save(f"temp_global_hourly_{split}.npy", (10.0 * temp[a:b, :, None]).astype(np.float32))
        save(f"wind_global_hourly_{split}.npy", (10.0 * wind[a:b, :, None]).astype(np.float32))
        save(f"data_time_{split}.npy", times[a:b].astype("datetime64[s]").astype(str))
    save("stations_sorted.npy", stations.astype(np.float32))
    return out

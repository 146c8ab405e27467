"""Write the generated Global Temp / Wind look-alike (kept for old commands; the package does it now).

    python scripts/make_global_weather.py OUT_DIR [--stations 308] [--days 120] [--seed 0]

is ``unireplknet forecast-make-weather OUT_DIR …``; the generator is :mod:`unireplknet.data.timeseries.global_weather`
(``write`` and ``simulate`` are re-exported here for the benchmarks and tests that load this script).
"""
import sys

from unireplknet.cli import main as _cli_main
from unireplknet.data.timeseries.global_weather import simulate, split_bounds, write  # noqa: F401

if __name__ == "__main__":
    sys.exit(_cli_main(["forecast-make-weather", *sys.argv[1:]]))

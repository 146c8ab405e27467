#!/usr/bin/env python3
"""Regenerate ``src/unireplknet/data/timeseries/co2_mauna_loa.npz`` from the dataset bundled with statsmodels.

The series is the weekly atmospheric CO2 concentration at Mauna Loa (Keeling & Whorf, Scripps Institution of
Oceanography; public domain, as statsmodels states), 1958-03-29 … 2001-12-29, 2,284 weeks of which 59 are
missing (kept as NaN). statsmodels is needed only here (``pip install statsmodels``), not at run time.

Usage::

    python scripts/make_timeseries_data.py [--out src/unireplknet/data/timeseries/co2_mauna_loa.npz]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1]
                                         / "src/unireplknet/data/timeseries/co2_mauna_loa.npz"))
    args = ap.parse_args()
    import statsmodels
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    dates = frame.index.values.astype("datetime64[D]")
    values = frame["co2"].to_numpy(dtype=np.float32)
    note = (f"{co2.DESCRSHORT.strip()} Weekly, ppm (mole fraction), NaN = missing week. {co2.COPYRIGHT.strip()} "
            f"{co2.SOURCE.strip()} Converted from statsmodels {statsmodels.__version__} by "
            "scripts/make_timeseries_data.py.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, dates=dates, co2=values, attribution=np.asarray(note))
    print(f"wrote {out}: {len(values)} weeks ({int(np.isnan(values).sum())} missing), "
          f"{out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time-series classification on the UCR/UEA archive (``tsc-train``, ``tsc-eval``, ``tsc-predict``); docs/tsc.md.

The task lives in :mod:`.task` (imports torch); :mod:`.cli` is the command line (imports nothing heavy).
"""

"""Time-series data: the embedded CO2 series (``co2_mauna_loa.npz``) and the UCR/UEA archive reader (:mod:`.archive`)."""

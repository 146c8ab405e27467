"""The classical baselines of the generated modality demos, one module per modality (run them with
``python benchmarks/classical_baselines.py``)."""

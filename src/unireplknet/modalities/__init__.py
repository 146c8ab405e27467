"""Modality adapters: the signal -> image transforms that turn audio, video and point clouds into the images the
backbone takes (log-mel filterbanks and their augmentation; clip layouts and clip transforms; point sampling and
projections). Readers and datasets that apply them live in :mod:`unireplknet.data`.
"""

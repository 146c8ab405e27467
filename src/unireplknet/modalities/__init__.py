"""Modality adapters: turn audio, video, point clouds, time series … into the images the backbone takes."""

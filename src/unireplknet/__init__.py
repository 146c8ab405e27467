"""UniRepLKNet: a universal large-kernel ConvNet for images, audio, video, point clouds and time series."""
from .model import UniRepLKNet, UniRepLKNetBlock, DilatedReparamBlock, reparameterize

__version__ = "0.1.0"

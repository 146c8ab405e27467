"""The embedded point-cloud data: generated primitive shapes (nothing stored; see :mod:`.shapes`)."""
from .shapes import SHAPE_CLASS_NAMES, GeneratedShapes, render_shape, sample_surface, shape_mesh

__all__ = ["SHAPE_CLASS_NAMES", "GeneratedShapes", "render_shape", "sample_surface", "shape_mesh"]

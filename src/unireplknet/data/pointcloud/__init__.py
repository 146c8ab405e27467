"""The embedded point-cloud data: generated primitive shapes and their partial scans (nothing stored; see
:mod:`.shapes` and :mod:`.scans`)."""
from .scans import SCAN_CLASS_NAMES, GeneratedScans
from .shapes import SHAPE_CLASS_NAMES, GeneratedShapes, render_shape, sample_surface, shape_mesh

__all__ = ["SHAPE_CLASS_NAMES", "GeneratedShapes", "render_shape", "sample_surface", "shape_mesh",
           "SCAN_CLASS_NAMES", "GeneratedScans"]

"""Point-cloud data: the embedded generated primitive shapes and their partial scans (nothing stored; see
:mod:`.shapes` and :mod:`.scans`), and ModelNet-40 with the OFF / point-file readers (:mod:`.modelnet`).

:mod:`.modelnet` is not imported here: it uses the sampling of :mod:`unireplknet.modalities.pointcloud`, which
itself takes its checks from :mod:`.shapes`; import it as ``unireplknet.data.pointcloud.modelnet``.
"""
from .scans import SCAN_CLASS_NAMES, GeneratedScans
from .shapes import SHAPE_CLASS_NAMES, GeneratedShapes, render_shape, sample_surface, shape_mesh

__all__ = ["SHAPE_CLASS_NAMES", "GeneratedShapes", "render_shape", "sample_surface", "shape_mesh",
           "SCAN_CLASS_NAMES", "GeneratedScans"]

"""Point-cloud files and ModelNet-40: OFF meshes, ``.txt``/``.npy`` point files, and the dataset of either release.

Sampling and normalisation come from :mod:`unireplknet.modalities.pointcloud` and :mod:`.shapes`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ...modalities.pointcloud import farthest_point_sample, gather_points
from ..folder import DataError
from .shapes import PointCloudError, check_points, normalize_unit_sphere, sample_surface

__all__ = ["read_off", "write_off", "read_points", "MODELNET40_CLASSES", "ModelNet40"]

_logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- files
def read_off(path: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and triangles (F, 3) of an OFF mesh (polygons fan-triangulated).

    Accepts the ModelNet quirk of the counts glued to the header (``OFF490 518 0``).
    """
    from ...checkpoint import require_regular_file

    path = require_regular_file(path, "point cloud")  # a FIFO would block the reader forever
    try:
        tokens_lines = [ln.split("#")[0].strip() for ln in path.read_text(errors="strict").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise PointCloudError(f"cannot read OFF file {path}: {e}") from e
    lines = [ln for ln in tokens_lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise PointCloudError(f"{path} is not an OFF mesh (the first line must start with 'OFF')")
    head = lines[0][3:].split()
    rest = lines[1:]
    if not head:
        if not rest:
            raise PointCloudError(f"{path}: OFF header without vertex/face counts")
        head, rest = rest[0].split(), rest[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
        verts = np.array([[float(t) for t in rest[i].split()[:3]] for i in range(nv)], dtype=np.float64)
        faces: List[Tuple[int, int, int]] = []
        for i in range(nf):
            parts = [int(t) for t in rest[nv + i].split()]
            poly = parts[1:1 + parts[0]]
            faces += [(poly[0], poly[j], poly[j + 1]) for j in range(1, len(poly) - 1)]
    except (IndexError, ValueError) as e:
        raise PointCloudError(f"{path}: malformed OFF data ({e}); the file is truncated or not an OFF mesh") from e
    if nv == 0 or verts.shape != (nv, 3):
        raise PointCloudError(f"{path}: the mesh has no vertices")
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) and (f.min() < 0 or f.max() >= nv):
        raise PointCloudError(f"{path}: a face refers to a vertex that does not exist")
    return verts, f


def write_off(path: Union[str, Path], vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh as OFF."""
    path = Path(path)
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(f"{c:.6f}" for c in v) for v in vertices]
    lines += ["3 " + " ".join(str(int(i)) for i in f) for f in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_points(path: Union[str, Path]) -> np.ndarray:
    """Points (N, 3 or 6) of a ``.txt`` (comma- or space-separated, ModelNet-40 resampled) or ``.npy`` file."""
    from ...checkpoint import require_regular_file

    path = require_regular_file(path, "point cloud")
    try:
        if path.suffix == ".npy":
            pts = np.load(path, allow_pickle=False)
        else:
            text = path.read_text()
            pts = np.loadtxt(text.replace(",", " ").splitlines(), dtype=np.float64, ndmin=2) if text.strip() else np.zeros((0, 3))
    except (OSError, ValueError) as e:
        raise PointCloudError(f"cannot read points from {path}: {e}") from e
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise PointCloudError(f"{path}: expected rows of x y z [nx ny nz], got an array of shape {pts.shape}")
    return pts.astype(np.float32)


MODELNET40_CLASSES = (
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door dresser flower_pot "
    "glass_box guitar keyboard lamp laptop mantel monitor night_stand person piano plant radio range_hood sink "
    "sofa stairs stool table tent toilet tv_stand vase wardrobe xbox"
).split()


class ModelNet40(Dataset):
    """ModelNet-40 (or any same-layout set) as ``(points (num_points, 3[+3]), label)``.

    Layouts found under ``root``:

    * ``modelnet40_normal_resampled``: ``modelnet40_shape_names.txt``, ``modelnet40_{train,test}.txt`` and
      ``<class>/<class>_NNNN.txt`` (x,y,z,nx,ny,nz per line);
    * the original mesh release ``<class>/{train,test}/*.off`` (also ``.npy``/``.txt`` point files there).

    Each cloud is reduced by farthest point sampling (meshes are first sampled area-uniformly with
    ``mesh_samples`` points, seeded by the file index) and normalised into the unit sphere. For training,
    ``oversample`` > 1 follows the official recipe: FPS to ``oversample · num_points`` (4800 for 4096),
    then a random ``num_points`` of those. ``on_error="skip"`` replaces an unreadable/degenerate file by
    the next readable one (logged); the default raises.
    """

    def __init__(self, root: Union[str, Path], split: str = "train", num_points: int = 1024,
                 use_normals: bool = False, oversample: float = 1.0, mesh_samples: int = 8192,
                 on_error: str = "raise", cache: bool = True, classes: Optional[Sequence[str]] = None):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.root, self.split, self.num_points = Path(root), split, num_points
        self.use_normals, self.oversample, self.mesh_samples, self.on_error = use_normals, oversample, mesh_samples, on_error
        if not self.root.is_dir():
            raise DataError(f"ModelNet folder {self.root} does not exist")
        names_file = self.root / "modelnet40_shape_names.txt"
        if names_file.is_file():
            self.classes = list(classes) if classes else names_file.read_text().split()
            ids = (self.root / f"modelnet40_{split}.txt").read_text().split()
            self.samples = [(str(self.root / i.rsplit("_", 1)[0] / f"{i}.txt"), self.classes.index(i.rsplit("_", 1)[0]))
                            for i in ids]
        else:
            found = sorted(p.name for p in self.root.iterdir() if (p / split).is_dir())
            if not found:
                raise DataError(f"{self.root} has neither modelnet40_shape_names.txt nor <class>/{split}/ folders; "
                                "pass the root of modelnet40_normal_resampled or of ModelNet40 (.off meshes)")
            self.classes = list(classes) if classes else found
            self.samples = [(str(p), label) for label, c in enumerate(self.classes) if (self.root / c / split).is_dir()
                            for p in sorted((self.root / c / split).iterdir())
                            if p.suffix.lower() in (".off", ".npy", ".txt")]
        if not self.samples:
            raise DataError(f"no {split} shapes found under {self.root}")
        self._cache = {} if cache else None
        # Shapes that failed to load, remembered so that on_error="skip" reads a bad file once, not every epoch.
        # In shared memory, so that DataLoader worker processes (forked from this object) see each other's finds.
        self._unusable = torch.zeros(len(self.samples), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """The normalised cloud of sample ``index`` after (deterministic) FPS to ``oversample · num_points``."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        path, _ = self.samples[index]
        if path.lower().endswith(".off"):
            v, f = read_off(path)
            try:
                pts = sample_surface(v, f, self.mesh_samples, np.random.default_rng(index)).astype(np.float32)
            except ValueError as e:
                raise PointCloudError(f"{path}: {e}") from e
        else:
            pts = read_points(path)
        pts = torch.from_numpy(pts if self.use_normals else pts[:, :3].copy())
        check_points(pts, path)
        want = min(len(pts), max(self.num_points, int(round(self.num_points * self.oversample))))
        if want < self.num_points:
            raise PointCloudError(f"{path} has {len(pts)} points, fewer than num_points={self.num_points}")
        pts = gather_points(pts, farthest_point_sample(pts, want))
        pts = normalize_unit_sphere(pts)
        if self._cache is not None:
            self._cache[index] = pts
        return pts

    def __getitem__(self, index: int):
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            if bool(self._unusable[i]):
                continue  # failed before: not read again every epoch
            try:
                pts = self.load(i)
                break
            except PointCloudError as e:
                if self.on_error == "raise":
                    raise PointCloudError(f"{e}; to replace unusable shapes (logged) instead, pass "
                                          "--skip-unreadable (on_error='skip')") from None
                self._unusable[i] = True
                _logger.warning("skipping unusable shape %s", self.samples[i][0])
        else:
            raise PointCloudError(f"no usable shape in {self.root} ({self.split}): every file failed to load")
        if len(pts) > self.num_points:  # the official random subset of the over-sampled FPS points
            pts = pts[torch.randperm(len(pts))[: self.num_points]]
        return pts, self.samples[i][1]

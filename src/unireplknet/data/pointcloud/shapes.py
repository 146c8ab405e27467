"""Generated labelled shapes: eight primitive meshes, randomly posed and stretched, sampled to point clouds.

Every shape is built as a triangle mesh with numpy (no trimesh needed), given a uniformly random 3-D
rotation and a random stretch of each axis (0.7–1.3), and its surface is sampled area-uniformly. Shape
``i`` of a split comes from its own seeded generator, so the set is the same everywhere and takes no disk
space. The meshes are also what :func:`unireplknet.data.pointcloud.modelnet.write_off` writes for the .off
reader's tests.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..folder import DataError


# Point-cloud checks live here, below the modalities layer that re-exports them
# (unireplknet.modalities.pointcloud), so that the generated data set needs nothing from above it.
class PointCloudError(DataError):
    """A point cloud that cannot be used: empty, NaN/inf coordinates, or all points at one place."""


def check_points(points: torch.Tensor, what: str = "point cloud") -> torch.Tensor:
    """Return ``points`` if it is a usable (…, N, 3+) cloud, else raise :class:`PointCloudError` saying why."""
    if not isinstance(points, torch.Tensor):
        points = torch.as_tensor(np.asarray(points))
    if points.dim() < 2 or points.shape[-1] < 3:
        raise PointCloudError(f"{what}: expected points of shape (N, 3) or (N, 6) (xyz [+ normals]), "
                              f"got {tuple(points.shape)}")
    if points.shape[-2] == 0:
        raise PointCloudError(f"{what} has no points")
    if not torch.isfinite(points).all():
        bad = int((~torch.isfinite(points)).any(-1).sum())
        raise PointCloudError(f"{what} has {bad} points with NaN or infinite coordinates; drop them first "
                              "(e.g. points[torch.isfinite(points).all(-1)])")
    return points


def normalize_unit_sphere(points: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Centre the xyz at their mean and scale so the farthest point lies on the unit sphere (normals kept).

    A cloud whose points all coincide has no scale and raises :class:`PointCloudError`.
    """
    points = check_points(points)
    xyz = points[..., :3]
    centred = xyz - xyz.mean(-2, keepdim=True)
    radius = centred.norm(dim=-1).amax(-1, keepdim=True).unsqueeze(-1)
    if bool((radius <= eps).any()):
        raise PointCloudError("degenerate point cloud: all points are at the same place, so it has no size to "
                              "normalise; check the file (a mesh with zero area?)")
    return torch.cat([centred / radius, points[..., 3:]], dim=-1)

__all__ = ["PointCloudError", "check_points", "normalize_unit_sphere",
           "SHAPE_CLASS_NAMES", "SHAPE_SPLIT_SEEDS", "shape_mesh", "sample_surface", "random_rotation",
           "render_shape", "GeneratedShapes"]

SHAPE_CLASS_NAMES: Tuple[str, ...] = ("box", "sphere", "cylinder", "cone", "torus", "pyramid", "octahedron", "capsule")
SHAPE_SPLIT_SEEDS: Dict[str, int] = {"train": 11_000_027, "val": 12_000_011, "test": 13_000_003}


def _grid_faces(rows: int, cols: int, wrap_cols: bool = True) -> np.ndarray:
    """Two triangles per cell of a rows×cols vertex grid (columns wrap around for surfaces of revolution)."""
    faces = []
    ncol = cols if wrap_cols else cols - 1
    for i in range(rows - 1):
        for j in range(ncol):
            a, b = i * cols + j, i * cols + (j + 1) % cols
            c, d = (i + 1) * cols + j, (i + 1) * cols + (j + 1) % cols
            faces += [(a, b, d), (a, d, c)]
    return np.asarray(faces, dtype=np.int64)


def _revolve(profile_r: np.ndarray, profile_z: np.ndarray, segments: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """Surface of revolution of a (r, z) profile about the z axis."""
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    v = np.stack([profile_r[:, None] * np.cos(phi), profile_r[:, None] * np.sin(phi),
                  np.repeat(profile_z[:, None], segments, axis=1)], axis=-1).reshape(-1, 3)
    return v, _grid_faces(len(profile_r), segments)


def _disc(z: float, r: float, segments: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    return _revolve(np.array([0.0, r]), np.array([z, z]), segments)


def _merge(*parts: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def shape_mesh(name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and triangles (F, 3) of a primitive of about unit size centred at the origin."""
    if name == "box":
        v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64) * 0.6
        f = np.array([(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
                      (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)])
        return v, f
    if name in ("sphere", "capsule"):
        theta = np.linspace(0, np.pi, 18)
        v, f = _revolve(np.sin(theta), np.cos(theta))
        if name == "capsule":  # pull the two hemispheres apart: the equator band becomes the cylinder
            v[:, 2] += np.where(v[:, 2] > 1e-9, 0.7, np.where(v[:, 2] < -1e-9, -0.7, 0.0))
            v *= 0.6
        return v, f
    if name == "cylinder":
        return _merge(_revolve(np.array([0.7, 0.7]), np.array([-0.8, 0.8])), _disc(-0.8, 0.7), _disc(0.8, 0.7))
    if name == "cone":
        return _merge(_revolve(np.array([0.8, 0.0]), np.array([-0.7, 0.9])), _disc(-0.7, 0.8))
    if name == "torus":
        a = np.linspace(0, 2 * np.pi, 17)[:-1]
        r, z = 0.7 + 0.28 * np.cos(a), 0.28 * np.sin(a)
        v, f = _revolve(np.append(r, r[0]), np.append(z, z[0]))
        return v, f
    if name == "pyramid":
        v = np.array([[-0.8, -0.8, -0.6], [0.8, -0.8, -0.6], [0.8, 0.8, -0.6], [-0.8, 0.8, -0.6], [0, 0, 0.9]])
        f = np.array([(0, 2, 1), (0, 3, 2), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4)])
        return v, f
    if name == "octahedron":
        v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64) * 0.9
        f = np.array([(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)])
        return v, f
    raise ValueError(f"unknown shape {name!r}; choose one of {SHAPE_CLASS_NAMES}")


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed over the mesh surface (triangle chosen by area, uniform barycentric)."""
    tri = vertices[faces]  # F, 3, 3
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = area.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the mesh has no surface area (all triangles degenerate); cannot sample points from it")
    pick = rng.choice(len(faces), size=n, p=area / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1  # reflect into the triangle: uniform over its area
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (QR of a Gaussian matrix with the sign fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def render_shape(label: int, rng: np.random.Generator, num_points: int = 1024) -> np.ndarray:
    """Points (num_points, 3) of one randomly posed and stretched shape of class ``label``."""
    if not 0 <= label < len(SHAPE_CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(SHAPE_CLASS_NAMES) - 1}, got {label}")
    v, f = shape_mesh(SHAPE_CLASS_NAMES[label])
    v = v * rng.uniform(0.7, 1.3, size=3)  # stretch in the shape's own frame, then pose
    v = v @ random_rotation(rng).T
    pts = sample_surface(v, f, num_points, rng)
    return pts + rng.normal(0.0, 0.005, size=pts.shape)


class GeneratedShapes(Dataset):
    """The generated shapes set: ``shapes_per_class`` point clouds of each of the eight classes.

    Items are ``(points, label)``: float32 (num_points, 3), centred and scaled into the unit sphere, then
    passed through ``transform`` when given.
    """

    def __init__(self, split: str = "train", shapes_per_class: int = 40, num_points: int = 1024, seed: int = 0,
                 transform: Callable = None):
        if split not in SHAPE_SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(SHAPE_SPLIT_SEEDS)}, got {split!r}")
        if shapes_per_class < 1:
            raise ValueError(f"shapes_per_class must be >= 1, got {shapes_per_class}")
        self.split, self.shapes_per_class, self.num_points, self.seed = split, shapes_per_class, num_points, seed
        self.transform = transform
        self.classes: List[str] = list(SHAPE_CLASS_NAMES)
        self.targets = [i % len(self.classes) for i in range(len(self))]

    def __len__(self) -> int:
        return self.shapes_per_class * len(SHAPE_CLASS_NAMES)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"shape index {index} out of range for {len(self)} shapes")
        label = self.targets[index]
        rng = np.random.default_rng([SHAPE_SPLIT_SEEDS[self.split], self.seed, index])
        pts = torch.from_numpy(render_shape(label, rng, self.num_points)).float()
        pts = normalize_unit_sphere(pts)
        return (self.transform(pts) if self.transform is not None else pts), label

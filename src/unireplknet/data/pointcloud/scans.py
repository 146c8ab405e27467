"""Generated partial scans: the hard point-cloud demo (sixteen shape classes seen by a simulated depth sensor).

:class:`GeneratedShapes` samples the whole surface of eight primitives uniformly, and a rotation-invariant
descriptor separates those classes to 84 % with 1-nearest-neighbour. :class:`GeneratedScans` is what a depth
sensor would give instead:

* **sixteen classes**, several of them near neighbours on purpose (box / triangular / hexagonal prism /
  cylinder; cone / square pyramid / tetrahedron; octahedron / bicone; sphere / hemisphere / capsule), four of them
  non-convex (torus, open tube, L-block, plus-shaped block);
* **partial scans**: only points on surfaces visible from one random viewpoint (a pinhole at distance 2.5 to
  4 from the shape's centre, in a uniformly random direction); visibility is exact ray casting of every
  candidate point against every triangle of the mesh (Möller–Trumbore) for the non-convex shapes, so their
  self-occlusion is handled, and for the convex ones the equivalent, cheaper test that the point's face turns
  towards the sensor;
* **non-uniform density**: the kept points have a density over the visible surface that falls off with distance
  and grazing angle, as a real sensor's footprint does ((|cos incidence| + 0.05) / distance²), times a random
  density gradient exp(γ·a·p) across the shape (γ up to 2.5), drawn by rejection sampling;
* **noise**: isotropic Gaussian jitter with σ drawn per scan in [0.005, 0.02] (the shapes are about unit size);
* **shape parameters disjoint between training and held-out shapes**: every shape is stretched along its own
  axis by an elongation e with log₂ e in [−1, 1]. That interval is cut into six equal bands; training shapes
  draw e from bands 0, 2 and 4 and the validation and test shapes from bands 1, 3 and 5, each keeping
  :data:`BAND_MARGIN` away from the band edges. No held-out shape therefore has the proportions of any training
  shape (the log-elongations of the two sets differ by at least 2·BAND_MARGIN), and the most elongated band
  (e ≥ 1.59) is held out entirely, so part of the test asks for extrapolation. The pose (uniform in SO(3)), the
  viewpoint, the density gradient, the noise level and the class's second parameter (tube radius of the torus,
  wall of the tube, arm width of the L and plus blocks; the other classes have none) are drawn freely in
  every split.

Shape ``i`` of a split comes from ``np.random.default_rng([split seed, seed, i])``; scans are cached in memory
after their first use, since ray casting costs a few milliseconds per shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .shapes import _merge, _revolve, normalize_unit_sphere, random_rotation

__all__ = ["SCAN_CLASS_NAMES", "SCAN_SPLIT_SEEDS", "NON_CONVEX_SCAN_CLASSES", "BAND_MARGIN", "ELONGATION_BANDS",
           "ScanParameters", "scan_mesh", "draw_scan_parameters", "split_of_elongation", "visible_from",
           "front_facing", "posed_mesh", "render_scan", "GeneratedScans"]

SCAN_CLASS_NAMES: Tuple[str, ...] = (
    "box", "sphere", "cylinder", "cone", "torus", "pyramid", "octahedron", "capsule",
    "tetrahedron", "triangular_prism", "hexagonal_prism", "hemisphere", "bicone", "tube", "l_block", "plus_block")
NON_CONVEX_SCAN_CLASSES = frozenset({"torus", "tube", "l_block", "plus_block"})
# Different streams from the full-surface shapes, so no scan reuses a GeneratedShapes draw.
SCAN_SPLIT_SEEDS: Dict[str, int] = {"train": 21_000_023, "val": 22_000_007, "test": 23_000_009}
#: log₂-elongation bands (six equal bands over [−1, 1]); even bands train, odd bands validation and test.
ELONGATION_BANDS: int = 6
LOG2_ELONGATION_RANGE: Tuple[float, float] = (-1.0, 1.0)
#: Distance kept from each band edge (in log₂ e), so the two sets' elongations never meet.
BAND_MARGIN: float = 0.03


def _extrude(polygon: np.ndarray, centre: np.ndarray, half_depth: float) -> Tuple[np.ndarray, np.ndarray]:
    """Closed prism of a 2-D polygon (counter-clockwise, star-shaped from ``centre``) extruded along z.

    The caps are fans from ``centre`` (valid for any polygon that is star-shaped from it: convex polygons,
    the L and the plus), the sides one quad (two triangles) per edge.
    """
    n = len(polygon)
    ring = lambda z: np.concatenate([polygon, np.full((n, 1), z)], 1)  # noqa: E731
    v = np.concatenate([ring(-half_depth), ring(half_depth), [[*centre, -half_depth], [*centre, half_depth]]])
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces += [(i, j, n + j), (i, n + j, n + i)]  # side
        faces += [(2 * n, j, i), (2 * n + 1, n + i, n + j)]  # bottom and top fans
    return v, np.asarray(faces, dtype=np.int64)


def _regular_polygon(sides: int, radius: float) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False) + np.pi / 2
    return radius * np.stack([np.cos(a), np.sin(a)], 1)


def _revolve_closed(r: np.ndarray, z: np.ndarray, segments: int) -> Tuple[np.ndarray, np.ndarray]:
    """Surface of revolution of a closed (r, z) profile loop (torus, tube)."""
    return _revolve(np.append(r, r[0]), np.append(z, z[0]), segments)


def scan_mesh(name: str, detail: float = 0.5, segments: int = 16) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of class ``name`` in its own frame (axis z, about unit size), before elongation.

    ``detail`` in [0, 1] is the class's second shape parameter (ignored by classes that have none).
    """
    rings = max(6, segments // 2)
    if name == "box":
        return _extrude(_regular_polygon(4, 0.85), np.zeros(2), 0.6)
    if name == "sphere":
        t = np.linspace(0, np.pi, rings + 1)
        return _revolve(np.sin(t), np.cos(t), segments)
    if name == "hemisphere":
        t = np.linspace(0, np.pi / 2, rings // 2 + 1)
        return _merge(_revolve(np.sin(t), np.cos(t) - 0.4, segments), _revolve(np.array([1.0, 0.0]),
                                                                               np.array([-0.4, -0.4]), segments))
    if name == "capsule":  # two hemispheres (radius 0.6) joined by a cylinder of length 0.8
        top, bottom = np.linspace(0, np.pi / 2, rings // 2 + 1), np.linspace(np.pi / 2, np.pi, rings // 2 + 1)
        r = 0.6 * np.sin(np.concatenate([top, bottom]))
        z = np.concatenate([0.6 * np.cos(top) + 0.4, 0.6 * np.cos(bottom) - 0.4])
        return _revolve(r, z, segments)
    if name in ("cylinder", "cone", "bicone"):
        profile = {"cylinder": ([0.0, 0.7, 0.7, 0.0], [-0.8, -0.8, 0.8, 0.8]),
                   "cone": ([0.0, 0.8, 0.0], [-0.6, -0.6, 0.9]),
                   "bicone": ([0.0, 0.8, 0.0], [-0.9, 0.0, 0.9])}[name]
        return _revolve(np.asarray(profile[0]), np.asarray(profile[1]), segments)
    if name == "torus":
        a = np.linspace(0, 2 * np.pi, rings, endpoint=False)
        tube = 0.15 + 0.2 * detail
        return _revolve_closed(0.7 + tube * np.cos(a), tube * np.sin(a), segments)
    if name == "tube":
        inner = 0.7 * (0.5 + 0.35 * detail)
        return _revolve_closed(np.array([0.7, 0.7, inner, inner]), np.array([-0.8, 0.8, 0.8, -0.8]), segments)
    if name in ("pyramid", "tetrahedron"):
        base = _regular_polygon(4 if name == "pyramid" else 3, 0.9)
        n = len(base)
        v = np.concatenate([np.concatenate([base, np.full((n, 1), -0.5)], 1), [[0, 0, 0.9], [0, 0, -0.5]]])
        f = [(i, (i + 1) % n, n) for i in range(n)] + [(n + 1, (i + 1) % n, i) for i in range(n)]
        return v, np.asarray(f, dtype=np.int64)
    if name == "octahedron":
        v = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64) * 0.9
        f = [(i, (i + 1) % 4, 4) for i in range(4)] + [(5, (i + 1) % 4, i) for i in range(4)]
        return v, np.asarray(f, dtype=np.int64)
    if name in ("triangular_prism", "hexagonal_prism"):
        sides = 3 if name == "triangular_prism" else 6
        return _extrude(_regular_polygon(sides, 0.8), np.zeros(2), 0.7)
    if name in ("l_block", "plus_block"):
        w = 0.25 + 0.2 * detail  # arm half-width
        if name == "l_block":  # an L in the x-z plane: long arm along z, foot along x, extruded along y
            poly = np.array([[-0.8, -0.9], [0.8, -0.9], [0.8, -0.9 + 2 * w], [-0.8 + 2 * w, -0.9 + 2 * w],
                             [-0.8 + 2 * w, 0.9], [-0.8, 0.9]])
            centre = np.array([-0.8 + w, -0.9 + w])
        else:
            poly = np.array([[w, -0.9], [w, -w], [0.8, -w], [0.8, w], [w, w], [w, 0.9], [-w, 0.9], [-w, w],
                             [-0.8, w], [-0.8, -w], [-w, -w], [-w, -0.9]])
            centre = np.zeros(2)
        v, f = _extrude(poly, centre, 0.3)
        return v[:, [0, 2, 1]], f[:, ::-1].copy()  # x-z plane shape, extruded along y (swap keeps faces outward)
    raise ValueError(f"unknown scan class {name!r}; choose one of {SCAN_CLASS_NAMES}")


def split_of_elongation(log2_elongation: float) -> str:
    """``"train"`` for the even bands of :data:`ELONGATION_BANDS`, ``"held_out"`` for the odd ones."""
    lo, hi = LOG2_ELONGATION_RANGE
    band = min(ELONGATION_BANDS - 1, int((log2_elongation - lo) / (hi - lo) * ELONGATION_BANDS))
    return "train" if band % 2 == 0 else "held_out"


def _draw_log2_elongation(split: str, rng: np.random.Generator) -> float:
    lo, hi = LOG2_ELONGATION_RANGE
    width = (hi - lo) / ELONGATION_BANDS
    bands = range(0 if split == "train" else 1, ELONGATION_BANDS, 2)
    band = int(rng.choice(list(bands)))
    return lo + band * width + rng.uniform(BAND_MARGIN, width - BAND_MARGIN)


@dataclass
class ScanParameters:
    """Everything that makes one scan: class, shape parameters, pose, sensor and noise."""

    label: int
    log2_elongation: float
    detail: float
    rotation: np.ndarray  # (3, 3) pose of the shape
    viewpoint: np.ndarray  # (3,) sensor position, the shape centred at the origin
    gradient: np.ndarray  # (3,) density gradient γ·a
    noise: float


def draw_scan_parameters(label: int, split: str, rng: np.random.Generator) -> ScanParameters:
    """The random draw of one scan of class ``label`` in ``split`` ("train", "val" or "test")."""
    if not 0 <= label < len(SCAN_CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(SCAN_CLASS_NAMES) - 1}, got {label}")
    if split not in SCAN_SPLIT_SEEDS:
        raise ValueError(f"split must be one of {sorted(SCAN_SPLIT_SEEDS)}, got {split!r}")
    log2_e = _draw_log2_elongation(split, rng)
    detail = rng.uniform()
    rotation = random_rotation(rng)
    direction = rng.normal(size=3)
    viewpoint = direction / np.linalg.norm(direction) * rng.uniform(2.5, 4.0)
    a = rng.normal(size=3)
    gradient = a / np.linalg.norm(a) * rng.uniform(0.0, 2.5)
    return ScanParameters(label, log2_e, detail, rotation, viewpoint, gradient, rng.uniform(0.005, 0.02))


def posed_mesh(params: ScanParameters) -> Tuple[np.ndarray, np.ndarray]:
    """The mesh of ``params`` elongated, centred at its bounding-box centre and posed (the sensor's frame)."""
    v, f = scan_mesh(SCAN_CLASS_NAMES[params.label], params.detail)
    v = v * np.array([1.0, 1.0, 2.0 ** params.log2_elongation])
    v = v - (v.min(0) + v.max(0)) / 2
    return v @ params.rotation.T, f


def visible_from(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, eye: np.ndarray,
                 eps: float = 1e-6, chunk: int = 1024) -> np.ndarray:
    """Boolean mask of the surface ``points`` that the pinhole at ``eye`` sees: no triangle crosses the segment.

    Möller–Trumbore intersection of the segment point → eye with every triangle; a point is hidden when a
    triangle is hit strictly between them (parameter t in (eps, 1 − eps) along the segment, so the point's own
    triangle, hit at t = 0, does not hide it).
    """
    tri = vertices[faces].astype(np.float64)
    v0, e1, e2 = tri[:, 0].T, (tri[:, 1] - tri[:, 0]).T, (tri[:, 2] - tri[:, 0]).T  # (3, F) each
    visible = np.ones(len(points), dtype=bool)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk].T[:, :, None]  # (3, n, 1)
        d = eye[:, None, None] - p  # segment direction, t = 1 at the eye
        # Written out per component: np.cross on broadcast (n, F, 3) arrays is several times slower.
        pv = (d[1] * e2[2] - d[2] * e2[1], d[2] * e2[0] - d[0] * e2[2], d[0] * e2[1] - d[1] * e2[0])
        det = e1[0] * pv[0] + e1[1] * pv[1] + e1[2] * pv[2]
        ok = np.abs(det) > 1e-12
        inv = 1.0 / np.where(ok, det, 1.0)
        s = (p[0] - v0[0], p[1] - v0[1], p[2] - v0[2])
        u = (s[0] * pv[0] + s[1] * pv[1] + s[2] * pv[2]) * inv
        q = (s[1] * e1[2] - s[2] * e1[1], s[2] * e1[0] - s[0] * e1[2], s[0] * e1[1] - s[1] * e1[0])
        v = (d[0] * q[0] + d[1] * q[1] + d[2] * q[2]) * inv
        t = (e2[0] * q[0] + e2[1] * q[1] + e2[2] * q[2]) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > eps) & (t < 1 - eps)
        visible[start:start + chunk] = ~hit.any(1)
    return visible


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def front_facing(points: np.ndarray, face_index: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                 eye: np.ndarray) -> np.ndarray:
    """Visibility on a **convex** closed mesh: a surface point is seen iff the eye lies on the outer side of the
    plane of the point's triangle (outer = away from the vertex centroid, which is inside a convex solid)."""
    normals = _face_normals(vertices, faces)
    outward = np.sign(((vertices[faces].mean(1) - vertices.mean(0)) * normals).sum(1, keepdims=True))
    n = (normals * outward)[face_index]
    return ((eye[None, :] - points) * n).sum(1) > 0


def render_scan(params: ScanParameters, rng: np.random.Generator, num_points: int = 1024,
                return_clean: bool = False):
    """Points (num_points, 3) of one partial, noisy, non-uniformly dense scan (sensor frame, not normalised).

    Candidates are drawn area-uniformly, thinned by rejection to the sensor's density (so the kept points have
    density ∝ weight over the surface), and tested for visibility; this repeats until ``num_points`` are in.
    With ``return_clean`` also the noise-free points and the index of the triangle each lies on (for tests).
    """
    v, f = posed_mesh(params)
    normals = _face_normals(v, f)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    eye = params.viewpoint
    convex = SCAN_CLASS_NAMES[params.label] not in NON_CONVEX_SCAN_CLASSES
    # Upper bound of the weight over the surface (for the rejection step): the linear gradient peaks at a vertex.
    nearest = np.linalg.norm(eye) - np.linalg.norm(v, axis=1).max()
    bound = 1.05 / nearest ** 2 * np.exp((v @ params.gradient).max())
    kept_points, kept_faces, total = [], [], 0
    for _ in range(200):
        n = 8 * num_points
        face = rng.choice(len(f), size=n, p=area / area.sum())
        u, w = rng.random(n), rng.random(n)
        flip = u + w > 1
        u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
        t = tri[face]
        pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + w[:, None] * (t[:, 2] - t[:, 0])
        to_eye = eye[None, :] - pts
        dist = np.linalg.norm(to_eye, axis=1)
        cos_incidence = np.abs((normals[face] * to_eye).sum(1)) / dist
        weight = (cos_incidence + 0.05) / dist ** 2 * np.exp(pts @ params.gradient)
        accept = rng.random(n) * bound < weight
        pts, face = pts[accept], face[accept]
        # Convex classes: the plane test is exact and O(points); the others need the ray casting.
        keep = front_facing(pts, face, v, f, eye) if convex else visible_from(pts, v, f, eye)
        kept_points.append(pts[keep])
        kept_faces.append(face[keep])
        total += int(keep.sum())
        if total >= num_points:
            break
    else:
        raise RuntimeError(f"only {total} visible points for a scan of {num_points} (class "
                           f"{SCAN_CLASS_NAMES[params.label]})")
    clean, face = np.concatenate(kept_points)[:num_points], np.concatenate(kept_faces)[:num_points]
    noisy = clean + rng.normal(0.0, params.noise, size=clean.shape)
    return (noisy, clean, face) if return_clean else noisy


class GeneratedScans(Dataset):
    """The hard generated set: ``shapes_per_class`` partial scans of each of the sixteen classes in ``split``.

    Items are ``(points, label)``: float32 (num_points, 3) centred and scaled into the unit sphere, then passed
    through ``transform`` when given. ``split`` "train" draws elongations from the training bands, "val" and
    "test" (separate seed streams) from the held-out bands (module docstring).
    """

    def __init__(self, split: str = "train", shapes_per_class: int = 24, num_points: int = 1024, seed: int = 0,
                 transform: Optional[Callable] = None):
        if split not in SCAN_SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(SCAN_SPLIT_SEEDS)}, got {split!r}")
        if shapes_per_class < 1:
            raise ValueError(f"shapes_per_class must be >= 1, got {shapes_per_class}")
        self.split, self.shapes_per_class, self.num_points, self.seed = split, shapes_per_class, num_points, seed
        self.transform = transform
        self.classes: List[str] = list(SCAN_CLASS_NAMES)
        self.targets = [i % len(self.classes) for i in range(len(self))]
        self._cache: Dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.shapes_per_class * len(SCAN_CLASS_NAMES)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([SCAN_SPLIT_SEEDS[self.split], self.seed, index])

    def parameters(self, index: int) -> ScanParameters:
        """The shape, pose and sensor parameters of item ``index`` (the same draw :meth:`__getitem__` uses)."""
        return draw_scan_parameters(self.targets[index], self.split, self.rng(index))

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"scan index {index} out of range for {len(self)} scans")
        if index not in self._cache:
            rng = self.rng(index)
            params = draw_scan_parameters(self.targets[index], self.split, rng)
            pts = torch.from_numpy(render_scan(params, rng, self.num_points)).float()
            self._cache[index] = normalize_unit_sphere(pts)
        pts = self._cache[index]
        return (self.transform(pts) if self.transform is not None else pts), self.targets[index]

"""Point cloud → images for UniRepLKNet: sampling, normalisation, augmentation, projections.

Pipeline (official `Point/` code, described in docs/pointcloud.md; the official ``Point/`` code, a P2P-style projection):

1. points (N, 3) [+ normals] → farthest point sampling to ``num_points`` → centred and scaled into the
   unit sphere (:func:`farthest_point_sample`, :func:`normalize_unit_sphere`);
2. training augmentation: a random rotation θ ∈ [0.04, 1.94]π about z and φ ∈ [−0.4, −0.2]π tilt
   (:func:`rotation_theta_phi`), then per-axis scale U(2/3, 3/2) and shift U(−0.2, 0.2)
   (:func:`scale_and_translate`); evaluation: the eight fixed rotations of :func:`eval_rotations`;
3. each cloud is seen from V views (:func:`view_rotations`: the official four views rotate about x by
   0, π/2, π, 3π/2 after a z quarter-turn) and projected to V images:

   * :class:`DepthProjection` — fixed and differentiable: bilinear splatting of every point into an
     orthographic S×S grid, giving occupancy, mean depth and a soft front-surface depth (3 channels);
   * :class:`LearnedProjection` — the official learnable point-to-pixel encoder (P2P ``ProjEnc``):
     per-point EdgeConv features scattered into each view's 3×3 pixel neighbourhood, a ResNet block, a
     cross-view transformer, 1×1 conv to RGB, sigmoid, ImageNet normalisation.

The backbone and the view-pooling head are in :mod:`unireplknet.tasks.pointcloud`.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.pointcloud.shapes import PointCloudError, check_points, normalize_unit_sphere

__all__ = [
    "PointCloudError", "check_points", "farthest_point_sample", "gather_points", "normalize_unit_sphere",
    "axis_angle_matrix", "rotation_theta_phi", "random_train_rotations", "eval_rotations", "rotate",
    "scale_and_translate", "euler_to_matrix", "view_rotations", "DepthProjection", "LearnedProjection",
]


# ----------------------------------------------------------------------------------------------- checks
# ----------------------------------------------------------------------------------------------- sampling
def farthest_point_sample(xyz: torch.Tensor, num: int, start: int = 0) -> torch.Tensor:
    """Indices (…, num) of greedy farthest point sampling, starting from point ``start`` (official: 0).

    Each next point is the one farthest from all points chosen so far. ``num`` larger than the cloud raises
    (pad or resample the cloud first); duplicate points are fine.
    """
    single = xyz.dim() == 2
    x = xyz[..., :3].unsqueeze(0) if single else xyz[..., :3]
    b, n, _ = x.shape
    if num > n:
        raise PointCloudError(f"cannot pick {num} points by farthest point sampling from a cloud of {n}; "
                              f"lower num_points or give denser clouds")
    idx = torch.empty(b, num, dtype=torch.long, device=x.device)
    dist = torch.full((b, n), float("inf"), dtype=x.dtype, device=x.device)
    cur = torch.full((b,), start, dtype=torch.long, device=x.device)
    rows = torch.arange(b, device=x.device)
    for i in range(num):
        idx[:, i] = cur
        d = ((x - x[rows, cur].unsqueeze(1)) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        cur = dist.argmax(-1)
    return idx[0] if single else idx


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (…, N, C) at indices (…, M) → (…, M, C)."""
    if points.dim() == 2:
        return points[idx]
    return torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


# ----------------------------------------------------------------------------------------------- rotations
def axis_angle_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (…, 3, 3) by ``angle`` about unit ``axis`` (…, 3) (Rodrigues' formula)."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    x, y, z = axis.unbind(-1)
    c, s = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*x.shape, 3, 3)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(k)
    return eye + s[..., None, None] * k + (1 - c)[..., None, None] * (k @ k)


def rotation_theta_phi(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """The official (θ, φ) rotation: R = Rot(z, −θ) · Rot(v, −φ) with v = (sin θ, −cos θ, 0). Angles in radians."""
    theta, phi = torch.as_tensor(theta, dtype=torch.float64), torch.as_tensor(phi, dtype=torch.float64)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=theta.dtype).expand(*theta.shape, 3)
    v = torch.stack([torch.sin(theta), -torch.cos(theta), torch.zeros_like(theta)], dim=-1)
    return axis_angle_matrix(z, -theta) @ axis_angle_matrix(v, -phi)


def random_train_rotations(batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(batch, 3, 3) training rotations: θ ∈ [0.04, 1.94]π, φ ∈ [−0.4, −0.2]π (official)."""
    u = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    return rotation_theta_phi((u[:, 0] * 1.9 + 0.04) * math.pi, (u[:, 1] * 0.2 - 0.4) * math.pi).float()


def eval_rotations() -> torch.Tensor:
    """The eight official test rotations (8, 3, 3): θ = linspace(0.1, 2, 9)[:8]·π, φ = −0.35π."""
    theta = torch.linspace(0.1, 2.0, 9, dtype=torch.float64)[:8] * math.pi
    return rotation_theta_phi(theta, torch.full_like(theta, -0.35 * math.pi)).float()


def rotate(points: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate xyz (and normals, columns 3:6) of (B, N, C) points by (3, 3) or (B, 3, 3) matrices: p → R p."""
    r = rotation.to(points.dtype)
    if r.dim() == 2:
        r = r.expand(points.shape[0], 3, 3)
    out = [points[..., :3] @ r.transpose(1, 2)]
    if points.shape[-1] >= 6:
        out.append(points[..., 3:6] @ r.transpose(1, 2))
        out.append(points[..., 6:])
    else:
        out.append(points[..., 3:])
    return torch.cat(out, dim=-1)


def scale_and_translate(points: torch.Tensor, scale: Tuple[float, float] = (2 / 3, 3 / 2), shift: float = 0.2,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Official training jitter of (B, N, C) clouds: xyz · U(scale) + U(−shift, shift), drawn per cloud and axis."""
    b = points.shape[0]
    s = torch.empty(b, 1, 3).uniform_(*scale, generator=generator).to(points)
    t = torch.empty(b, 1, 3).uniform_(-shift, shift, generator=generator).to(points)
    return torch.cat([points[..., :3] * s + t, points[..., 3:]], dim=-1)


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(…, 3) Euler angles (x, y, z) → Rx · Ry · Rz, the composition of the official view code."""
    x, y, z = angles.unbind(-1)
    ex, ey, ez = (torch.tensor(e, dtype=angles.dtype).expand(*x.shape, 3) for e in ([1, 0, 0], [0, 1, 0], [0, 0, 1]))
    return axis_angle_matrix(ex, x) @ axis_angle_matrix(ey, y) @ axis_angle_matrix(ez, z)


#: The official view table (Euler x, y, z); the first ``num_views`` are used (official: 4).
_VIEW_EULER = [
    (0.0, 0.0, 0.5), (0.5, 0.0, 0.5), (1.0, 0.0, 0.5), (1.5, 0.0, 0.5),
    (1.25, -0.25, 0.5), (1.25, 0.25, 0.5), (1.75, -0.25, 0.5), (1.75, 0.25, 0.5), (0.0, -0.5, 0.5), (0.0, 0.5, 0.5),
]


def view_rotations(num_views: int = 4) -> torch.Tensor:
    """(num_views, 3, 3) camera rotations; points are seen as R p (the official ``points @ rot_mat``)."""
    if not 1 <= num_views <= len(_VIEW_EULER):
        raise ValueError(f"num_views must be in 1..{len(_VIEW_EULER)}, got {num_views}")
    angles = torch.tensor(_VIEW_EULER[:num_views], dtype=torch.float64) * math.pi
    return euler_to_matrix(angles).float()


# ----------------------------------------------------------------------------------------------- projections
class DepthProjection(nn.Module):
    """Fixed, differentiable orthographic rendering of a cloud from several views → (B·V, 3, S, S).

    Each point of a view (x, y right/up in the image plane, z towards the viewer … away) lands at a
    sub-pixel position of an S×S grid covering [−extent, extent]²; its weight is spread over the four
    nearest pixels bilinearly (so the image is differentiable in the coordinates). Channels:
    0. occupancy ``1 − exp(−density)``; 1. mean nearness ``(extent − z) / 2·extent`` of the points in the
    pixel; 2. soft front surface: nearness averaged with weights ``exp(β·nearness)`` (→ the nearest point
    as β grows, a differentiable z-buffer). Every channel is in [0, 1] and is mapped to [−1, 1].
    Points outside the grid are dropped.
    """

    def __init__(self, num_views: int = 4, image_size: int = 224, extent: float = 1.6, beta: float = 12.0):
        super().__init__()
        self.num_views, self.image_size, self.extent, self.beta = num_views, image_size, extent, beta
        self.register_buffer("views", view_rotations(num_views), persistent=False)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        b, n, _ = points.shape
        v, s = self.num_views, self.image_size
        xyz = points[..., :3].unsqueeze(1) @ self.views.to(points.dtype).transpose(1, 2).unsqueeze(0)  # B V N 3
        xyz = xyz.reshape(b * v, n, 3)
        u = (xyz[..., 0] + self.extent) / (2 * self.extent) * (s - 1)  # column
        w = (self.extent - xyz[..., 1]) / (2 * self.extent) * (s - 1)  # row (y up → row 0 at the top)
        near = ((self.extent - xyz[..., 2]) / (2 * self.extent)).clamp(0, 1)
        u0, w0 = u.detach().floor(), w.detach().floor()
        fu, fw = u - u0, w - w0
        density = points.new_zeros(b * v, s * s)
        depth_sum = points.new_zeros(b * v, s * s)
        front_w = points.new_zeros(b * v, s * s)
        front_sum = points.new_zeros(b * v, s * s)
        soft = torch.exp(self.beta * (near - 1))  # ≤ 1, avoids overflow
        for du, dw, wt in ((0, 0, (1 - fu) * (1 - fw)), (1, 0, fu * (1 - fw)), (0, 1, (1 - fu) * fw), (1, 1, fu * fw)):
            cu, cw = u0 + du, w0 + dw
            inside = (cu >= 0) & (cu < s) & (cw >= 0) & (cw < s)
            wt = wt * inside
            flat = (cw.clamp(0, s - 1) * s + cu.clamp(0, s - 1)).long()
            density = density.scatter_add(1, flat, wt)
            depth_sum = depth_sum.scatter_add(1, flat, wt * near)
            front_w = front_w.scatter_add(1, flat, wt * soft)
            front_sum = front_sum.scatter_add(1, flat, wt * soft * near)
        occupancy = 1 - torch.exp(-density)
        mean_near = depth_sum / density.clamp_min(1e-6)
        front = front_sum / front_w.clamp_min(1e-12)
        img = torch.stack([occupancy, mean_near * occupancy, front * occupancy], dim=1).view(b * v, 3, s, s)
        return img * 2 - 1


class _EdgeConvFeatures(nn.Module):
    """Per-point features: Conv1d(3→trans) → EdgeConv on the k nearest neighbours → Conv1d (official ProjEnc)."""

    def __init__(self, local_size: int = 32, trans_dim: int = 8, graph_dim: int = 64):
        super().__init__()
        self.k = local_size
        self.input_trans = nn.Conv1d(3, trans_dim, 1)
        self.graph_layer = nn.Sequential(nn.Conv2d(trans_dim * 2, graph_dim, 1, bias=False), nn.GroupNorm(4, graph_dim),
                                         nn.LeakyReLU(0.2))
        self.proj_layer = nn.Conv1d(graph_dim, graph_dim, 1)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:  # B N 3 → B N C
        b, n, _ = xyz.shape
        k = min(self.k, n)
        with torch.no_grad():
            knn = torch.cdist(xyz, xyz).topk(k, dim=-1, largest=False).indices  # B N k (includes the point itself)
        f = self.input_trans(xyz.transpose(1, 2))  # B C N
        rows = torch.arange(b, device=xyz.device)[:, None, None]
        neigh = f.transpose(1, 2)[rows, knn].permute(0, 3, 1, 2)  # B C N k: the neighbours' features
        centre = f.unsqueeze(-1).expand_as(neigh)
        g = self.graph_layer(torch.cat([neigh - centre, centre], dim=1)).amax(-1)  # B C' N
        return self.proj_layer(g).transpose(1, 2)


class _ViewTransformer(nn.Module):
    """One pre-norm transformer layer (8 heads of 128, MLP 256) over the tokens of all views of a cloud."""

    def __init__(self, dim: int = 128, heads: int = 8, dim_head: int = 128, mlp_dim: int = 256):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.out = nn.Linear(heads * dim_head, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.out(a)
        return x + self.mlp(self.norm2(x))


class LearnedProjection(nn.Module):
    """The official learnable point-to-pixel projection (P2P ``ProjEnc`` with ``MultiViewFusionV2``).

    Per view: every point's EdgeConv feature (computed once on the un-rotated cloud) is added into the
    3×3 pixel neighbourhood of its (x, y) grid cell — grid step = largest x/y extent ÷ (S − 3), the cloud
    centred in the image — giving a (graph_dim, S, S) map; a ResNet BasicBlock + 1×1 conv; then (``fusion``)
    a 7×7 stride-7 conv to 128 channels, one transformer layer across the tokens of all views, nearest
    up-sampling, 3×3 conv + GELU, concatenation with the map and 1×1 conv + GELU; finally a 1×1 conv to 3
    channels, sigmoid and ImageNet standardisation. The pixel positions are not differentiable (as in the
    official code); the features are.
    """

    def __init__(self, num_views: int = 4, image_size: int = 224, local_size: int = 32, trans_dim: int = 8,
                 graph_dim: int = 64, fusion: bool = True):
        super().__init__()
        from timm.models.resnet import BasicBlock

        if image_size < 7:
            raise ValueError(f"image_size must be at least 7, got {image_size}")
        # The official views also shift z by 1.4; only x and y reach the image, so the shift is left out.
        self.num_views, self.image_size, self.graph_dim = num_views, image_size, graph_dim
        self.register_buffer("views", view_rotations(num_views), persistent=False)
        self.points = _EdgeConvFeatures(local_size, trans_dim, graph_dim)
        self.img_block = nn.Sequential(BasicBlock(graph_dim, graph_dim), nn.Conv2d(graph_dim, graph_dim, 1))
        self.fusion = fusion
        if fusion:
            self.fuse_down = nn.Conv2d(graph_dim, 128, 7, stride=7, bias=False)
            self.fuse_attn = _ViewTransformer(128)
            self.fuse_up = nn.Sequential(nn.Conv2d(128, graph_dim, 3, padding=1), nn.GELU())
            self.fuse_cat = nn.Sequential(nn.Conv2d(graph_dim * 2, graph_dim, 1), nn.GELU())
        self.img_layer = nn.Conv2d(graph_dim, 3, 1)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)

    def pixel_index(self, xy: torch.Tensor) -> torch.Tensor:
        """Flat pixel index (B, 9N) of each point's 3×3 neighbourhood, the cloud centred in the S×S image."""
        s = self.image_size
        lo = xy.amin(1, keepdim=True)
        extent = (xy.amax(1) - xy.amin(1)).amax(-1).clamp_min(1e-6)  # a flat/degenerate view still maps
        cell = torch.floor((xy - lo) / (extent / (s - 3))[:, None, None]).clamp(0, s - 3)  # B N 2
        offs = torch.tensor([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=cell.dtype, device=xy.device)
        dense = (cell.unsqueeze(2) + offs + 1).reshape(xy.shape[0], -1, 2)  # B 9N 2, in [0, s-1]
        centre = torch.floor((dense.amax(1) + dense.amin(1)) / 2)
        dense = (dense + (s // 2 - centre - 1).unsqueeze(1)).clamp(0, s - 1)
        return (dense[..., 0] * s + dense[..., 1]).long()

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        b, n, _ = points.shape
        v, s, c = self.num_views, self.image_size, self.graph_dim
        feats = self.points(points[..., :3])  # B N C, the same for every view
        xyz = points[..., :3].unsqueeze(1) @ self.views.to(points.dtype).transpose(1, 2).unsqueeze(0)  # B V N 3
        idx = self.pixel_index(xyz.reshape(b * v, n, 3)[..., :2])  # BV 9N
        dense = feats.repeat_interleave(v, dim=0).unsqueeze(2).expand(b * v, n, 9, c).reshape(b * v, n * 9, c)
        canvas = feats.new_zeros(b * v, s * s, c).scatter_add(1, idx.unsqueeze(-1).expand(-1, -1, c), dense)
        x = self.img_block(canvas.view(b * v, s, s, c).permute(0, 3, 1, 2))
        if self.fusion:
            t = self.fuse_down(x)  # BV 128 s' s'
            hs, ws = t.shape[-2:]
            tok = t.view(b, v, 128, hs * ws).permute(0, 1, 3, 2).reshape(b, v * hs * ws, 128)
            tok = self.fuse_attn(tok).view(b, v, hs * ws, 128).permute(0, 1, 3, 2).reshape(b * v, 128, hs, ws)
            up = self.fuse_up(F.interpolate(tok, size=(s, s)))
            x = self.fuse_cat(torch.cat([up, x], dim=1))
        img = torch.sigmoid(self.img_layer(x))
        return (img - self.mean) / self.std

"""Vectorised ray casting against every primitive at once: room interior, yawed boxes, spheres, upright cylinders.

Each function takes one origin o (3,) and rays d (N, 3) and returns (t, normal): the nearest hit
parameter per ray and primitive, t [K, N] (inf = miss), and a function giving world normals
(N, 3) for a chosen primitive per ray. Everything is float32 and branch-free over pixels.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-4
_AXES = np.eye(3, dtype=np.float32)


def room(o: np.ndarray, d: np.ndarray, size: np.ndarray):
    """Exit of rays from inside the box [0, size]: t (N,), face id (N,) in 0..5 (axis*2 + far side), normal (N, 3)."""
    with np.errstate(divide="ignore"):
        t_axes = np.where(d > 0, (size - o) / d, np.where(d < 0, -o / d, np.inf))
    axis = t_axes.argmin(1)
    t = np.take_along_axis(t_axes, axis[:, None], 1)[:, 0]
    far = np.take_along_axis(d, axis[:, None], 1)[:, 0] > 0
    normal = _AXES[axis] * np.where(far, -1.0, 1.0).astype(np.float32)[:, None]
    return t, axis * 2 + far, normal


def boxes(o: np.ndarray, d: np.ndarray, center: np.ndarray, half: np.ndarray, yaw: np.ndarray):
    """Slab test of N rays against K boxes rotated by `yaw` about world Y: t [K, N] and a normal getter."""
    cos, sin = np.cos(yaw).astype(np.float32)[:, None], np.sin(yaw).astype(np.float32)[:, None]
    oc = (o[None] - center)[:, :, None]
    o_l = (cos * oc[:, 0] - sin * oc[:, 2], oc[:, 1], sin * oc[:, 0] + cos * oc[:, 2])
    d_l = (cos * d[:, 0] - sin * d[:, 2], np.broadcast_to(d[:, 1], cos.shape[:1] + d.shape[:1]), sin * d[:, 0] + cos * d[:, 2])
    t_min, t_far = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            inv = 1.0 / d_l[a]
            t1 = (-half[:, a : a + 1] - o_l[a]) * inv
            t2 = (half[:, a : a + 1] - o_l[a]) * inv
            t_min.append(np.fmin(t1, t2))
            t_far.append(np.fmax(t1, t2))
    t_near = np.fmax(np.fmax(t_min[0], t_min[1]), t_min[2])
    far = np.fmin(np.fmin(t_far[0], t_far[1]), t_far[2])
    t = np.where((t_near <= far) & (t_near > EPS), t_near, np.inf).astype(np.float32)

    def normal(k: np.ndarray) -> np.ndarray:
        rays = np.arange(d.shape[0])
        axis = np.stack([tm[k, rays] for tm in t_min], 1).argmax(1)
        d_k = np.stack([dl[k, rays] for dl in d_l], 1)
        sign = -np.sign(np.take_along_axis(d_k, axis[:, None], 1)[:, 0])
        n_l = _AXES[axis] * sign[:, None]
        c, s = cos[k, 0], sin[k, 0]
        return np.stack([c * n_l[:, 0] + s * n_l[:, 2], n_l[:, 1], -s * n_l[:, 0] + c * n_l[:, 2]], -1)

    return t, normal


def spheres(o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: np.ndarray):
    """Near hit of N rays with K spheres: t [K, N] and a normal getter."""
    oc = o[None] - center
    a = (d * d).sum(-1)[None]
    b = oc @ d.T
    c = ((oc * oc).sum(-1) - radius**2)[:, None]
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    t = np.where((disc >= 0) & (t > EPS), t, np.inf).astype(np.float32)

    def normal(k: np.ndarray, tk: np.ndarray) -> np.ndarray:
        p = o + np.where(np.isfinite(tk), tk, 0.0)[:, None] * d
        return (p - center[k]) / radius[k][:, None]

    return t, normal


def cylinders(o: np.ndarray, d: np.ndarray, base: np.ndarray, radius: np.ndarray, height: np.ndarray):
    """Upright capped cylinders (base centre, radius, height): t [K, N] and a normal getter."""
    ox = o[0] - base[:, 0:1]
    oz = o[2] - base[:, 2:3]
    dx, dy, dz = d[None, :, 0], d[None, :, 1], d[None, :, 2]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - (radius**2)[:, None]
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
        y_side = o[1] + t_side * dy
        side_ok = (disc >= 0) & (t_side > EPS) & (y_side >= base[:, 1:2]) & (y_side <= base[:, 1:2] + height[:, None])
        t_side = np.where(side_ok, t_side, np.inf)
        cap_y = np.where(o[1] > base[:, 1:2] + height[:, None] / 2, base[:, 1:2] + height[:, None], base[:, 1:2])
        t_cap = (cap_y - o[1]) / dy
        in_cap = (ox + t_cap * dx) ** 2 + (oz + t_cap * dz) ** 2 <= (radius**2)[:, None]
        t_cap = np.where(in_cap & (t_cap > EPS), t_cap, np.inf)
    t = np.fmin(t_side, t_cap).astype(np.float32)
    on_cap = t_cap <= t_side

    def normal(k: np.ndarray, tk: np.ndarray) -> np.ndarray:
        rays = np.arange(d.shape[0])
        p = o + np.where(np.isfinite(tk), tk, 0.0)[:, None] * d
        radial = (p - base[k]) * np.array([1, 0, 1], np.float32) / radius[k][:, None]
        cap = np.where(p[:, 1:2] > base[k, 1:2] + height[k][:, None] / 2, 1.0, -1.0) * _AXES[1]
        return np.where(on_cap[k, rays][:, None], cap, radial).astype(np.float32)

    return t, normal

"""Render a scene by ray casting every pixel: exact z-depth, normals and labels, then a shaded, noisy RGB.

Sensor effects come last and touch only what a sensor would: image noise and exposure on the
RGB, and holes (ellipses plus shadow pixels beside depth jumps) where depth, normal and label
are all marked invalid (0, all-zero, -1).
"""
from __future__ import annotations

import numpy as np

from lhl.data.synthetic_rooms import geometry
from lhl.data.synthetic_rooms.camera import pixel_rays, to_mtan_normals
from lhl.data.synthetic_rooms.scene import Scene


def _cast(scene: Scene, d: np.ndarray):
    """Nearest hit per ray: t (N,), world normal (N, 3), surface id (N,), room face id (N,) or -1."""
    o = scene.camera
    t, face, normal = geometry.room(o, d, scene.room)
    surf = scene.face_surf[face]
    face = face.copy()
    groups = []
    if len(scene.boxes["surf"]):
        bt, bn = geometry.boxes(o, d, scene.boxes["center"], scene.boxes["half"], scene.boxes["yaw"])
        groups.append((bt, lambda k, tk: bn(k), scene.boxes["surf"]))
    if len(scene.spheres["surf"]):
        st, sn = geometry.spheres(o, d, scene.spheres["center"], scene.spheres["radius"])
        groups.append((st, sn, scene.spheres["surf"]))
    if len(scene.cylinders["surf"]):
        ct, cn = geometry.cylinders(o, d, scene.cylinders["base"], scene.cylinders["radius"], scene.cylinders["height"])
        groups.append((ct, cn, scene.cylinders["surf"]))
    rays = np.arange(d.shape[0])
    for tg, normal_of, surf_g in groups:
        k = tg.argmin(0)
        tk = tg[k, rays]
        hit = tk < t
        if hit.any():
            t = np.where(hit, tk, t)
            normal = np.where(hit[:, None], normal_of(k, tk), normal)
            surf = np.where(hit, surf_g[k], surf)
            face = np.where(hit, -1, face)
    return t, normal.astype(np.float32), surf, face


def _apply_decals(scene: Scene, p: np.ndarray, face: np.ndarray, surf: np.ndarray) -> np.ndarray:
    """Surface ids after wall rectangles (pictures, TVs, windows): the last matching decal wins."""
    dec = scene.decals
    if not len(dec["surf"]):
        return surf
    u = np.where(face[None] < 2, p[None, :, 2], p[None, :, 0])
    r = dec["rect"][:, :, None]
    inside = (face[None] == dec["face"][:, None]) & (u >= r[:, 0]) & (u <= r[:, 1]) & (p[None, :, 1] >= r[:, 2]) & (p[None, :, 1] <= r[:, 3])
    last = len(dec["surf"]) - 1 - inside[::-1].argmax(0)
    return np.where(inside.any(0), dec["surf"][last], surf)


def _albedo(scene: Scene, p: np.ndarray, surf: np.ndarray) -> np.ndarray:
    """Per-pixel colour from each instance's two colours mixed by a warped-sine solid texture."""
    s = scene.surfaces
    tex = s["tex"][surf]
    phase = tex[:, 3] * (p * tex[:, 0:3]).sum(1) + tex[:, 9] + tex[:, 8] * np.sin(tex[:, 7] * (p * tex[:, 4:7]).sum(1))
    mix = 0.5 + 0.5 * np.sin(phase)
    checker = np.sign(np.sin(tex[:, 10:11] * p).prod(1)) * tex[:, 11]
    colour = s["color_a"][surf] + (s["color_b"][surf] - s["color_a"][surf]) * mix[:, None]
    return colour * (1.0 + checker[:, None])


def _holes(rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Sensor-like invalid mask: 1-3 ellipses and half of the pixels just behind depth jumps."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.01, 0.05, 2) * w + 0.75
        mask |= ((v - cy) / ry) ** 2 + ((u - cx) / rx) ** 2 <= 1.0
    jump = np.zeros((h, w), bool)
    jump[:, 1:] = depth[:, 1:] > depth[:, :-1] * 1.08
    return mask | (jump & (rng.random((h, w)) < 0.5))


def render(scene: Scene, height: int, width: int, rng: np.random.Generator) -> dict:
    """All modalities of one view: image (H, W, 3) in [0, 1], depth (H, W), normal (H, W, 3), label (H, W).

    Also returns the exact, hole-free `clean_depth`, `clean_label` and the noiseless `clean_image`
    (for tests), the surface `instance` and its `material` family (materials.MATERIALS; -1 in holes),
    the label of the task-agnostic pretraining. Normals follow the NYUv2 MTAN convention (see lhl.data.sources.nyuv2).
    """
    rays = pixel_rays(height, width)
    d = rays @ scene.rotation.T
    t, n_world, surf, face = _cast(scene, d)
    n_world /= np.linalg.norm(n_world, axis=1, keepdims=True)
    p = scene.camera + t[:, None] * d
    surf = _apply_decals(scene, p, face, surf)
    to_light = scene.light - p
    dist = np.linalg.norm(to_light, axis=1)
    lambert = np.clip((n_world * to_light).sum(1) / dist, 0.0, None) / (1.0 + 0.04 * dist**2)
    emissive = scene.surfaces["emissive"][surf]
    shade = 0.3 + 0.9 * lambert
    shade = shade + (1.0 - shade) * emissive
    clean = np.clip(_albedo(scene, p, surf) * shade[:, None], 0.0, 1.0).reshape(height, width, 3)
    gain = rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, 3)
    noisy = clean * gain + rng.normal(0.0, rng.uniform(0.01, 0.03), clean.shape)
    depth = t.reshape(height, width).astype(np.float32)
    normal = to_mtan_normals(n_world @ scene.rotation).reshape(height, width, 3).astype(np.float32)
    label = scene.surfaces["cls"][surf].reshape(height, width)
    material = scene.surfaces["material"][surf].reshape(height, width)
    holes = _holes(rng, depth)
    return {
        "image": np.clip(noisy, 0.0, 1.0).astype(np.float32),
        "depth": np.where(holes, 0.0, depth).astype(np.float32),
        "normal": np.where(holes[..., None], 0.0, normal).astype(np.float32),
        "label": np.where(holes, -1, label),
        "clean_image": clean.astype(np.float32),
        "clean_depth": depth,
        "clean_label": label,
        "instance": surf.reshape(height, width),
        "material": np.where(holes, -1, material),
    }

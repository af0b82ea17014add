"""Random indoor scenes: a room, a camera pose, furniture boxes, small objects and wall decals.

A scene is plain arrays (primitives and a per-instance surface table), drawn from one numpy
Generator, so the renderer can cast all pixels against all primitives at once. Class ids are
NYUv2's 13 in order (`CLASS_ID`); furniture is built from boxes in its own yawed frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

from lhl.data.synthetic_rooms.camera import look_rotation
from lhl.data.synthetic_rooms.materials import appearance

CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
#: room faces: id = axis * 2 + (1 for the far side); Y is up, so 2 = floor and 3 = ceiling
FLOOR, CEILING, WALL_FACES = 2, 3, (0, 1, 4, 5)


@dataclass
class Surfaces:
    """Per-instance appearance: class, two colours, solid-texture parameters, emissive flag, material."""

    cls: List[int] = field(default_factory=list)
    color_a: List[np.ndarray] = field(default_factory=list)
    color_b: List[np.ndarray] = field(default_factory=list)
    tex: List[np.ndarray] = field(default_factory=list)
    emissive: List[float] = field(default_factory=list)
    material: List[int] = field(default_factory=list)

    def add(self, rng: np.random.Generator, name: str) -> int:
        a, b, tex, emissive, material = appearance(rng, name)
        self.cls.append(CLASS_ID[name])
        self.color_a.append(a)
        self.color_b.append(b)
        self.tex.append(tex)
        self.emissive.append(emissive)
        self.material.append(material)
        return len(self.cls) - 1

    def arrays(self) -> dict:
        return {
            "cls": np.array(self.cls, np.int64),
            "color_a": np.array(self.color_a, np.float32),
            "color_b": np.array(self.color_b, np.float32),
            "tex": np.array(self.tex, np.float32),
            "emissive": np.array(self.emissive, np.float32),
            "material": np.array(self.material, np.int64),
        }


@dataclass
class Scene:
    """One view: room size, camera pose, light, room-face surfaces, primitives, decals, surface table."""

    room: np.ndarray
    camera: np.ndarray
    rotation: np.ndarray
    light: np.ndarray
    face_surf: np.ndarray
    boxes: dict
    spheres: dict
    cylinders: dict
    decals: dict
    surfaces: dict


class _Builder:
    """Accumulates primitives and surfaces while furniture is placed without collisions."""

    def __init__(self, rng, room, camera):
        self.rng, self.room, self.camera = rng, room, camera
        self.surfaces = Surfaces()
        self.box, self.sph, self.cyl = [], [], []
        self.footprints = [(camera[[0, 2]], 0.6)]
        self.supports = []

    def free(self, xz, radius, inside: bool = True) -> bool:
        """No overlap with placed footprints (circles), and within the room when `inside`."""
        fits = np.all(xz >= radius - 0.05) and np.all(xz + radius <= self.room[[0, 2]] + 0.05)
        return (fits or not inside) and all(np.linalg.norm(xz - c) > radius + r for c, r in self.footprints)

    def parts(self, center_xz, yaw, parts, surf_ids, radius):
        c, s = np.cos(yaw), np.sin(yaw)
        for (x, y, z, hx, hy, hz), sid in zip(parts, surf_ids):
            wx = center_xz[0] + c * x + s * z
            wz = center_xz[1] - s * x + c * z
            self.box.append(([wx, y, wz], [hx, hy, hz], yaw, sid))
        self.footprints.append((np.asarray(center_xz), radius))

    def place(self, width, depth, against_wall: bool):
        """A collision-free (centre xz, yaw) for a footprint, or None after a few tries."""
        rng, (rw, _, rd) = self.rng, self.room
        for _ in range(25):
            if against_wall:
                wall = rng.integers(3)
                along = rng.uniform(width / 2, (rd if wall < 2 else rw) - width / 2)
                off = depth / 2 + 0.02
                xz, yaw = [(off, along), (rw - off, along), (along, rd - off)][wall], [np.pi / 2, -np.pi / 2, np.pi][wall]
                yaw += rng.normal(0, 0.02)
            else:
                xz = (rng.uniform(0.3, rw - 0.3), rng.uniform(1.0, rd - 0.3))
                yaw = rng.uniform(0, 2 * np.pi)
            xz = np.asarray(xz, np.float64)
            radius = 0.5 * np.hypot(width, depth)
            if self.free(xz, radius * (0.75 if against_wall else 1.0), inside=not against_wall):
                return xz, yaw, radius
        return None


def _legs(w, d, h, t=0.025):
    return [(sx * (w / 2 - t), h / 2, sz * (d / 2 - t), t, h / 2, t) for sx in (-1, 1) for sz in (-1, 1)]


def _furniture(b: _Builder, name: str):
    """Add one piece of furniture (boxes in its own frame) and register its top as a support."""
    rng = b.rng
    if name == "bed":
        w, d, h = rng.uniform(1.0, 1.8), rng.uniform(1.9, 2.2), rng.uniform(0.4, 0.6)
        hb = rng.uniform(0.8, 1.2)
        parts = [(0, h / 2 - 0.1, 0, w / 2, h / 2 - 0.1, d / 2), (0, h - 0.1, 0.05, w / 2 - 0.02, 0.1, d / 2 - 0.05),
                 (0, hb / 2, -d / 2 + 0.03, w / 2 + 0.03, hb / 2, 0.03)]
        roles = [0, 1, 0]
    elif name == "table":
        w, d, h = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.7, 0.78)
        parts = [(0, h - 0.02, 0, w / 2, 0.02, d / 2)] + _legs(w, d, h - 0.04)
        roles = [0] * 5
    elif name == "chair":
        w, h = rng.uniform(0.42, 0.52), rng.uniform(0.42, 0.48)
        d, bh = w, rng.uniform(0.35, 0.5)
        parts = [(0, h - 0.025, 0, w / 2, 0.025, d / 2), (0, h + bh / 2, -d / 2 + 0.025, w / 2, bh / 2, 0.025)] + _legs(w, d, h - 0.05)
        roles = [1, 1] + [0] * 4
    elif name == "sofa":
        w, d, h = rng.uniform(1.4, 2.2), rng.uniform(0.8, 0.95), rng.uniform(0.4, 0.46)
        bh, aw = rng.uniform(0.75, 0.9), 0.18
        parts = [(0, h / 2, 0.05, w / 2 - aw, h / 2, d / 2 - 0.05), (0, bh / 2, -d / 2 + 0.1, w / 2, bh / 2, 0.1),
                 (-w / 2 + aw / 2, 0.3, 0, aw / 2, 0.3, d / 2), (w / 2 - aw / 2, 0.3, 0, aw / 2, 0.3, d / 2)]
        roles = [0, 1, 1, 1]
    else:
        w, d, h = rng.uniform(0.4, 1.8), rng.uniform(0.35, 0.6), rng.uniform(0.45, 2.0)
        parts = [(0, h / 2, 0, w / 2, h / 2, d / 2)]
        roles = [0]
    against = name in ("bed", "sofa", "furniture") or (name == "table" and rng.random() < 0.3)
    spot = b.place(w, d, against)
    if spot is None:
        return None
    xz, yaw, radius = spot
    surfs = [b.surfaces.add(rng, name) for _ in range(max(roles) + 1)]
    b.parts(xz, yaw, parts, [surfs[r] for r in roles], radius)
    if name in ("table", "furniture") and h < 1.3:
        b.supports.append((xz, yaw, w / 2 - 0.05, d / 2 - 0.05, h))
    return xz, yaw


def _small_items(b: _Builder, n_objects: int, n_books: int):
    """Books and objects on support tops (or on the floor when nothing supports them)."""
    rng = b.rng
    for k in range(n_objects + n_books):
        if b.supports and rng.random() < 0.85:
            xz, yaw, hw, hd, top = b.supports[rng.integers(len(b.supports))]
            lx, lz = rng.uniform(-hw, hw), rng.uniform(-hd, hd)
            c, s = np.cos(yaw), np.sin(yaw)
            pos = np.array([xz[0] + c * lx + s * lz, top, xz[1] - s * lx + c * lz])
        else:
            pos = np.array([rng.uniform(0.3, b.room[0] - 0.3), 0.0, rng.uniform(1.2, b.room[2] - 0.3)])
            if not b.free(pos[[0, 2]], 0.15):
                continue
        if k >= n_objects:
            sid = b.surfaces.add(rng, "books")
            hh, hw_, hd_ = rng.uniform(0.09, 0.14), rng.uniform(0.01, 0.03), rng.uniform(0.06, 0.1)
            if rng.random() < 0.4:
                hh, hw_ = hw_, rng.uniform(0.07, 0.12)
            for j in range(rng.integers(1, 5)):
                off = np.array([2.1 * hw_ * j, hh, 0.0]) if hh > hw_ else np.array([0.0, hh * (2 * j + 1), 0.0])
                b.box.append((pos + off, [hw_, hh, hd_], rng.uniform(-0.1, 0.1), sid if j == 0 else b.surfaces.add(rng, "books")))
            continue
        sid = b.surfaces.add(rng, "objects")
        shape = rng.integers(3)
        if shape == 0:
            half = rng.uniform(0.03, 0.15, 3)
            b.box.append((pos + [0, half[1], 0], half, rng.uniform(0, 2 * np.pi), sid))
        elif shape == 1:
            r = rng.uniform(0.04, 0.14)
            b.sph.append((pos + [0, r, 0], r, sid))
        else:
            b.cyl.append((pos, rng.uniform(0.03, 0.12), rng.uniform(0.08, 0.4), sid))


def _decals(rng, surfaces: Surfaces, room) -> dict:
    """Pictures, TVs and windows: rectangles on walls that change appearance only."""
    out = {"face": [], "rect": [], "surf": []}
    kinds = ["picture"] * rng.integers(0, 4) + ["tv"] * rng.integers(0, 2) + ["window"] * rng.integers(0, 3)
    for name in kinds:
        face = WALL_FACES[rng.integers(4)]
        length = room[2] if face < 2 else room[0]
        w, h, yc = {"picture": (rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8), rng.uniform(1.3, 1.9)),
                    "tv": (rng.uniform(0.6, 1.3), 0.0, rng.uniform(1.0, 1.6)),
                    "window": (rng.uniform(0.7, 1.6), rng.uniform(1.0, 1.5), rng.uniform(1.4, 1.7))}[name]
        h = h or 0.56 * w
        if w > length - 0.2:
            continue
        u0 = rng.uniform(0.1, length - w - 0.1)
        out["face"].append(face)
        out["rect"].append([u0, u0 + w, yc - h / 2, min(yc + h / 2, room[1] - 0.05)])
        out["surf"].append(surfaces.add(rng, name))
    return {"face": np.array(out["face"], np.int64), "rect": np.array(out["rect"], np.float32).reshape(-1, 4),
            "surf": np.array(out["surf"], np.int64)}


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one room with a camera near its z = 0 wall looking in, furniture, objects and decals."""
    room = np.array([rng.uniform(3.0, 6.0), rng.uniform(2.4, 3.1), rng.uniform(3.5, 7.0)])
    camera = np.array([rng.uniform(0.3, 0.7) * room[0], rng.uniform(1.0, 1.7), rng.uniform(0.3, 0.9)])
    to_centre = np.arctan2(room[0] / 2 - camera[0], room[2] / 2 - camera[2])
    rotation = look_rotation(to_centre + rng.uniform(-0.6, 0.6), rng.uniform(-0.5, 0.05), rng.normal(0, 0.04))
    b = _Builder(rng, room, camera)
    face_surf = np.zeros(6, np.int64)
    wall = b.surfaces.add(rng, "wall")
    for f in WALL_FACES:
        face_surf[f] = wall if rng.random() < 0.8 else b.surfaces.add(rng, "wall")
    face_surf[FLOOR] = b.surfaces.add(rng, "floor")
    face_surf[CEILING] = b.surfaces.add(rng, "ceiling")
    counts = {"bed": rng.integers(0, 2), "sofa": rng.integers(0, 2), "furniture": rng.integers(1, 4), "table": rng.integers(0, 3)}
    for name, n in counts.items():
        for _ in range(n):
            placed = _furniture(b, name)
            if placed is not None and name == "table":
                for _ in range(rng.integers(0, 4)):
                    _furniture(b, "chair")
    for _ in range(rng.integers(0, 3)):
        _furniture(b, "chair")
    _small_items(b, int(rng.integers(1, 7)), int(rng.integers(0, 4)))
    decals = _decals(rng, b.surfaces, room)
    light = np.array([rng.uniform(0.2, 0.8) * room[0], room[1] - rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.8) * room[2]])

    def pack(items, names):
        cols = list(zip(*items)) if items else [[] for _ in names]
        return {n: np.array(c, np.int64 if n == "surf" else np.float32) for n, c in zip(names, cols)}

    return Scene(
        room=room.astype(np.float32), camera=camera.astype(np.float32), rotation=rotation,
        light=light.astype(np.float32), face_surf=face_surf,
        boxes=pack(b.box, ("center", "half", "yaw", "surf")),
        spheres=pack(b.sph, ("center", "radius", "surf")),
        cylinders=pack(b.cyl, ("base", "radius", "height", "surf")),
        decals=decals, surfaces=b.surfaces.arrays(),
    )

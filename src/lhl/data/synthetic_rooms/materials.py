"""Class-typical surface appearance of synthetic rooms: colours and solid-texture parameters, with
per-instance variation and deliberate overlaps between classes (so colour alone does not give the
label away)."""
from __future__ import annotations

import numpy as np
from matplotlib.colors import hsv_to_rgb

#: material families of `appearance`'s branches: the label of the task-agnostic pretraining objective
#: (`lhl.engine.synthetic_init`). Paint, wood and fabric cut across NYUv2's classes (paint: walls,
#: ceilings and painted furniture; wood: floors, tables, furniture, chairs; fabric: carpets, beds,
#: sofas, chairs), tile is one kind of floor, plastic the small objects; paper, print, screen and
#: glass coincide with books, picture, tv and window, as ImageNet's classes overlap NYUv2's.
MATERIALS = ("paint", "wood", "tile", "fabric", "paper", "plastic", "print", "screen", "glass")
MATERIAL_ID = {name: i for i, name in enumerate(MATERIALS)}


def hsv(rng, h, s, v) -> np.ndarray:
    return hsv_to_rgb([rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v)]).astype(np.float32)


def texture(rng, f1, warp, contrast_checker=(0.0, 0.0), fc=(4.0, 12.0), horizontal=False) -> np.ndarray:
    """Solid texture parameters: dir1 (3), f1, dir2 (3), f2, warp, phase, checker freq, checker amp."""
    d1 = rng.normal(size=3)
    if horizontal:
        d1[1] = 0.0
    d1 /= np.linalg.norm(d1)
    d2 = rng.normal(size=3)
    d2 /= np.linalg.norm(d2)
    return np.concatenate([
        d1, [rng.uniform(*f1)], d2, [rng.uniform(2.0, 8.0)], [rng.uniform(*warp)],
        [rng.uniform(0, 2 * np.pi)], [rng.uniform(*fc)], [rng.uniform(*contrast_checker)],
    ]).astype(np.float32)


def appearance(rng: np.random.Generator, name: str):
    """Class-typical colours and texture, with per-instance variation and deliberate overlaps:
    (colour a, colour b, texture, emissive, material id). The material costs no random draw, so
    the rendered views are those of generator version 2."""
    *look, material = _appearance(rng, name)
    return (*look, MATERIAL_ID[material])


def _appearance(rng: np.random.Generator, name: str):
    wood = ((0.04, 0.11), (0.35, 0.75), (0.25, 0.75))
    paint = ((0.0, 1.0), (0.0, 0.35), (0.55, 0.95))
    fabric = ((0.0, 1.0), (0.1, 0.7), (0.2, 0.9))
    if name in ("wall", "ceiling"):
        a = hsv(rng, *paint) if name == "wall" else hsv(rng, (0, 1), (0, 0.12), (0.75, 1.0))
        return a, a * rng.uniform(0.85, 0.97), texture(rng, (1, 6), (0, 2)), 0.0, "paint"
    if name == "floor":
        kind = rng.integers(3)
        if kind == 0:
            a = hsv(rng, *wood)
            return a, a * 0.6, texture(rng, (25, 60), (0.5, 3), horizontal=True), 0.0, "wood"
        if kind == 1:
            a = hsv(rng, (0, 1), (0, 0.3), (0.4, 0.95))
            return a, a * 0.8, texture(rng, (1, 4), (0, 1), (0.2, 0.4), (3, 8)), 0.0, "tile"
        a = hsv(rng, *fabric)
        return a, a * 0.75, texture(rng, (40, 120), (0, 1)), 0.0, "fabric"
    if name in ("table", "furniture", "chair") and rng.random() < 0.6:
        a = hsv(rng, *wood)
        return a, a * rng.uniform(0.55, 0.8), texture(rng, (20, 60), (1, 4)), 0.0, "wood"
    if name in ("table", "furniture"):
        a = hsv(rng, *paint)
        return a, a * 0.9, texture(rng, (2, 8), (0, 1)), 0.0, "paint"
    if name in ("bed", "sofa", "chair"):
        a = hsv(rng, *fabric)
        return a, a * rng.uniform(0.6, 0.9), texture(rng, (40, 120), (0, 2), (0.0, 0.15)), 0.0, "fabric"
    if name == "books":
        a = hsv(rng, (0, 1), (0.4, 0.9), (0.3, 0.9))
        return a, hsv(rng, (0, 1), (0, 0.3), (0.8, 1.0)), texture(rng, (60, 120), (0, 0.2)), 0.0, "paper"
    if name == "objects":
        a = hsv(rng, (0, 1), (0, 1), (0.2, 1.0))
        return a, hsv(rng, (0, 1), (0, 1), (0.2, 1.0)), texture(rng, (5, 40), (0, 3)), 0.0, "plastic"
    if name == "picture":
        return (hsv(rng, (0, 1), (0.3, 1), (0.2, 1)), hsv(rng, (0, 1), (0.3, 1), (0.2, 1)),
                texture(rng, (20, 60), (2, 6)), 0.0, "print")
    if name == "tv":
        a = hsv(rng, (0.55, 0.7), (0.0, 0.5), (0.03, 0.2))
        return a, a * 1.5 + 0.05, texture(rng, (2, 10), (0, 2)), 0.3, "screen"
    if name == "window":
        a = hsv(rng, (0.5, 0.65), (0.05, 0.4), (0.85, 1.0))
        return a, hsv(rng, (0, 1), (0, 0.1), (0.6, 1.0)), texture(rng, (1, 4), (0, 1), (0.3, 0.6), (3, 6)), 0.8, "glass"
    raise KeyError(name)

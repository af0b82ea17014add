"""Pinhole camera of the synthetic rooms: NYUv2-like intrinsics, a pose in the room, per-pixel rays.

Camera frame is OpenCV's (x right, y down, z forward); the world has Y up. Rays are scaled so
that their camera-z component is 1: the ray parameter of a hit is then its z-depth.
"""
from __future__ import annotations

import numpy as np

#: Kinect RGB focal length of NYUv2 (pixels at 640x480), scaled to any resolution.
NYU_FOCAL = 518.8579
NYU_WIDTH = 640


def intrinsics(height: int, width: int) -> np.ndarray:
    """3x3 K with NYUv2's field of view at this resolution (square pixels, centred principal point)."""
    f = NYU_FOCAL * width / NYU_WIDTH
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float32)


def pixel_rays(height: int, width: int) -> np.ndarray:
    """Camera-frame ray directions [H*W, 3] with z = 1, row-major over pixels."""
    k = intrinsics(height, width)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (u - k[0, 2]) / k[0, 0]
    y = (v - k[1, 2]) / k[1, 1]
    return np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)


def look_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation, columns = world directions of camera x (right), y (down), z (forward)."""
    f = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    r = np.cross([0.0, -1.0, 0.0], f)
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    c, s = np.cos(roll), np.sin(roll)
    r, d = c * r + s * d, -s * r + c * d
    return np.stack([r, d, f], 1).astype(np.float32)


def to_mtan_normals(n_cam: np.ndarray) -> np.ndarray:
    """OpenCV-frame normals (..., 3) -> the stored channels of the MTAN NYUv2 layout: (x, y, z) of the
    OpenCV camera frame (x right, y down, z forward), unchanged, facing the camera (z < 0). Channel 0
    is x, so a horizontal flip negates channel 0, as the release, MTAN and LibMTL do."""
    return np.ascontiguousarray(n_cam)


def backproject(depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Camera-frame points (H, W, 3) of a z-depth map (H, W) through intrinsics K."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (u - k[0, 2]) / k[0, 0] * depth
    y = (v - k[1, 2]) / k[1, 1] * depth
    return np.stack([x, y, depth], -1)

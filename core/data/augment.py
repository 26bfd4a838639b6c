"""Deterministic image augmentation: view ``v`` of an image is always the same picture.

Augmented views are treated as data (computed once, cached as backbone outputs), so
each view's random parameters derive from the augmentation seed, the view number and
the image's path, never from training randomness or batch order.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image

from core.artifacts.config import AugmentConfig


def view_params(path: str, view: int, cfg: AugmentConfig) -> dict:
    """The random parameters of one view of one image (view 0 is the original)."""
    if view == 0:
        return {"flip": False, "angle": 0.0, "zoom": 1.0, "brightness": 0.0, "contrast": 1.0}
    digest = hashlib.sha256(f"{cfg.seed}|{view}|{path}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return {
        "flip": bool(cfg.flip and rng.random() < 0.5),
        "angle": float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)),
        "zoom": float(1.0 + rng.uniform(-cfg.zoom, cfg.zoom)),
        "brightness": float(rng.uniform(-cfg.brightness, cfg.brightness) * 255.0),
        "contrast": float(1.0 + rng.uniform(-cfg.contrast, cfg.contrast)),
    }


def apply_view(image: np.ndarray, params: dict) -> np.ndarray:
    """Apply flip, rotation+zoom (about the centre), brightness and contrast to a uint8/float RGB image."""
    if params["angle"] == 0.0 and params["zoom"] == 1.0 and not params["flip"] \
            and params["brightness"] == 0.0 and params["contrast"] == 1.0:
        return image
    img = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    if params["flip"]:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if params["angle"] != 0.0 or params["zoom"] != 1.0:
        img = img.transform(img.size, Image.Transform.AFFINE, _affine(img.size, params["angle"], params["zoom"]),
                            resample=Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32)
    mean = out.mean()
    out = (out - mean) * params["contrast"] + mean + params["brightness"]
    return np.clip(out, 0, 255)


def _affine(size: tuple[int, int], angle_deg: float, zoom: float) -> tuple:
    # PIL maps output -> input coordinates: inverse rotation and scale about the centre.
    w, h = size
    cx, cy = w / 2.0, h / 2.0
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / zoom, math.sin(a) / zoom
    return (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)

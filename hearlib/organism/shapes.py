"""The objects of the scene world as polygons: :data:`SHAPES` maps each category (and distractor)
to its parts."""
from __future__ import annotations

import math

import numpy as np

# A shape is a list of parts (polygon in unit coordinates, x right, y down, within
# about [-1, 1]^2; role "body" takes the object's colour, "dark"/"light" are details).

def _ellipse(cx, cy, rx, ry, n=24, a0=0.0, a1=2 * math.pi):
    return [(cx + rx * math.cos(a0 + (a1 - a0) * k / n), cy + ry * math.sin(a0 + (a1 - a0) * k / n))
            for k in range(n)]


def _rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _star(cx, cy, r, n=5):
    pts = []
    for k in range(2 * n):
        rr = r if k % 2 == 0 else 0.45 * r
        a = -math.pi / 2 + math.pi * k / n
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _banana():
    outer = [(1.7 * math.cos(a), -1.15 + 1.7 * math.sin(a)) for a in np.linspace(0.55, math.pi - 0.55, 16)]
    inner = [(1.15 * math.cos(a), -1.0 + 1.15 * math.sin(a)) for a in np.linspace(math.pi - 0.7, 0.7, 16)]
    return outer + inner


SHAPES: dict[str, list[tuple[str, list]]] = {
    "car": [
        ("body", [(-1, 0.3), (-1, -0.15), (-0.6, -0.2), (-0.35, -0.6), (0.35, -0.6), (0.6, -0.2), (1, -0.15), (1, 0.3)]),
        ("light", [(-0.3, -0.5), (0.3, -0.5), (0.48, -0.22), (-0.48, -0.22)]),
        ("dark", _ellipse(-0.55, 0.32, 0.24, 0.24, 16)),
        ("dark", _ellipse(0.55, 0.32, 0.24, 0.24, 16)),
    ],
    "boat": [
        ("body", [(-1, 0.05), (1, 0.05), (0.65, 0.5), (-0.65, 0.5)]),
        ("dark", _rect(-0.06, -0.95, 0.06, 0.05)),
        ("light", [(0.12, -0.9), (0.12, -0.08), (0.8, -0.08)]),
        ("light", [(-0.12, -0.7), (-0.12, -0.08), (-0.6, -0.08)]),
    ],
    "plane": [
        ("body", _ellipse(0, 0, 1.0, 0.17, 20)),
        ("body", [(-0.15, 0), (0.3, 0), (-0.05, -0.85), (-0.35, -0.85)]),
        ("body", [(-0.15, 0), (0.3, 0), (-0.05, 0.85), (-0.35, 0.85)]),
        ("body", [(-0.7, 0), (-0.9, 0), (-1.0, -0.38), (-0.85, -0.38)]),
        ("body", [(-0.7, 0), (-0.9, 0), (-1.0, 0.38), (-0.85, 0.38)]),
    ],
    "fish": [
        ("body", _ellipse(-0.15, 0, 0.7, 0.42, 20)),
        ("body", [(0.45, 0), (1.0, -0.5), (1.0, 0.5)]),
        ("body", [(-0.3, -0.38), (0.05, -0.7), (0.2, -0.3)]),
        ("dark", _ellipse(-0.55, -0.08, 0.08, 0.08, 10)),
    ],
    "bird": [
        ("body", _ellipse(-0.05, 0.1, 0.55, 0.35, 20)),
        ("body", _ellipse(0.5, -0.35, 0.27, 0.27, 16)),
        ("body", [(-0.5, 0.0), (-1.0, -0.35), (-0.95, 0.25)]),
        ("dark", [(0.72, -0.42), (1.0, -0.3), (0.72, -0.22)]),
        ("dark", _rect(-0.15, 0.4, -0.08, 0.9)),
        ("dark", _rect(0.1, 0.4, 0.17, 0.9)),
        ("dark", _ellipse(0.55, -0.42, 0.06, 0.06, 8)),
    ],
    "cat": [
        ("body", _ellipse(0, 0.15, 0.68, 0.6, 24)),
        ("body", [(-0.62, -0.05), (-0.55, -0.95), (-0.15, -0.42)]),
        ("body", [(0.62, -0.05), (0.55, -0.95), (0.15, -0.42)]),
        ("dark", _ellipse(-0.27, 0.0, 0.1, 0.13, 10)),
        ("dark", _ellipse(0.27, 0.0, 0.1, 0.13, 10)),
        ("dark", [(-0.08, 0.25), (0.08, 0.25), (0.0, 0.37)]),
    ],
    "apple": [
        ("body", _ellipse(0, 0.15, 0.8, 0.72, 24)),
        ("dark", _rect(-0.05, -0.85, 0.05, -0.5)),
        ("dark", _ellipse(0.3, -0.7, 0.25, 0.1, 12)),
    ],
    "banana": [
        ("body", _banana()),
        ("dark", _ellipse(-1.3, -0.2, 0.1, 0.1, 8)),
    ],
    "pizza": [
        ("body", [(-0.8, -0.62), (0.8, -0.62), (0, 0.95)]),
        ("dark", [(-0.88, -0.88), (0.88, -0.88), (0.82, -0.6), (-0.82, -0.6)]),
        ("dark", _ellipse(-0.3, -0.35, 0.13, 0.13, 10)),
        ("dark", _ellipse(0.25, -0.3, 0.13, 0.13, 10)),
        ("dark", _ellipse(0.0, 0.2, 0.12, 0.12, 10)),
    ],
    "chair": [
        ("body", _rect(-0.6, 0.0, 0.6, 0.18)),
        ("body", _rect(0.42, -0.95, 0.6, 0.0)),
        ("body", _rect(-0.6, 0.18, -0.45, 0.95)),
        ("body", _rect(0.45, 0.18, 0.6, 0.95)),
    ],
    "table": [
        ("body", _rect(-1.0, -0.35, 1.0, -0.15)),
        ("body", _rect(-0.9, -0.15, -0.74, 0.75)),
        ("body", _rect(0.74, -0.15, 0.9, 0.75)),
    ],
    "lamp": [
        ("body", [(-0.32, -0.95), (0.32, -0.95), (0.62, -0.3), (-0.62, -0.3)]),
        ("dark", _rect(-0.06, -0.3, 0.06, 0.72)),
        ("dark", _ellipse(0, 0.8, 0.45, 0.13, 16)),
    ],
    # distractors
    "ball": [("body", _ellipse(0, 0, 0.9, 0.9, 16))],
    "box": [("body", _rect(-0.8, -0.8, 0.8, 0.8))],
    "cone": [("body", [(0, -0.9), (0.8, 0.8), (-0.8, 0.8)])],
    "star": [("body", _star(0, 0, 1.0))],
}

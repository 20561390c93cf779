"""Buildings, distractors (rocks, sheds, bushes, containers) and trees of the synthetic aerial scenes.

Nothing here is a target class: buildings fill the zones, distractors look like small objects without being
one (what teaches the detector to say no), and trees partly hide the objects they stand over. Sizes are in
pixels at the scenes' fixed ground resolution; every random number comes from the scene's generator.
"""

from __future__ import annotations

import math

import numpy as np

from ghostq.detect.data.synthetic_scene import Canvas, Item, Scene, circle, jitter, rect, shade, to_image

ROOFS = [(150, 150, 150), (180, 176, 168), (140, 70, 55), (110, 95, 85), (200, 200, 205), (90, 100, 110)]


def building(sc: Scene, cx: float, cy: float, ang: float, a: float, b: float) -> bool:
    """A rectangular building (flat roof with rim and rooftop units, or a gabled roof) with its shadow."""
    rng = sc.rng
    pts = to_image(cx, cy, ang, rect(-a / 2, a / 2, -b / 2, b / 2))
    r = sc.fits(pts, max_overlap=0.0, paved=False, margin=-max(a, b))
    if r is None:
        return False
    sc.occupy(r)
    roof = jitter(rng, ROOFS[rng.integers(len(ROOFS))], 14)
    height = float(rng.uniform(3, 14))
    gabled = bool(rng.random() < 0.45)
    light = float(rng.uniform(0.72, 0.88))
    units = [
        (rng.uniform(-0.35, 0.35) * a, rng.uniform(-0.35, 0.35) * b, rng.uniform(2, 5))
        for _ in range(0 if gabled else int(rng.integers(0, 4)))
    ]
    irv = sc.irng.uniform(100, 185)

    def draw(c: Canvas) -> None:
        if gabled:  # two roof halves lit differently, split along the long side
            if a >= b:
                c.poly(to_image(cx, cy, ang, rect(-a / 2, a / 2, -b / 2, 0)), roof, irv)
                c.poly(to_image(cx, cy, ang, rect(-a / 2, a / 2, 0, b / 2)), shade(roof, light), irv - 10)
            else:
                c.poly(to_image(cx, cy, ang, rect(-a / 2, 0, -b / 2, b / 2)), roof, irv)
                c.poly(to_image(cx, cy, ang, rect(0, a / 2, -b / 2, b / 2)), shade(roof, light), irv - 10)
        else:
            c.poly(pts, shade(roof, 0.8), irv)
            c.poly(
                to_image(cx, cy, ang, rect(-a / 2 + 1.5, a / 2 - 1.5, -b / 2 + 1.5, b / 2 - 1.5)), roof, irv
            )
            for u, v, w in units:
                c.poly(
                    to_image(cx, cy, ang, rect(u - w / 2, u + w / 2, v - w / 2, v + w / 2)),
                    shade(roof, 1.15),
                    irv + 20,
                )

    sc.items.append(Item(2, [(pts, height)], draw))
    return True


def clutter(sc: Scene, kind: str, cx: float, cy: float) -> bool:
    """A distractor of no target class: rock, shed, bush/hay/pool blob or a container stack."""
    rng, irng = sc.rng, sc.irng
    ang = sc.theta + rng.normal(0, 0.3) if kind in ("shed", "containers") else rng.uniform(0, 2 * math.pi)
    if kind == "rock":
        n, r = int(rng.integers(5, 9)), rng.uniform(2.5, 8)
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        pts = np.stack(
            [cx + r * rng.uniform(0.6, 1.2, n) * np.cos(t), cy + r * rng.uniform(0.6, 1.2, n) * np.sin(t)], 1
        )
        parts = [(pts, jitter(rng, (125, 118, 108), 25))]
        height = r * 0.5
    elif kind == "shed":
        a, b = rng.uniform(8, 18), rng.uniform(7, 14)
        pts = to_image(cx, cy, ang, rect(-a / 2, a / 2, -b / 2, b / 2))
        col = jitter(rng, ROOFS[rng.integers(len(ROOFS))], 20)
        parts = [(pts, col), (to_image(cx, cy, ang, rect(-a / 2, a / 2, 0, b / 2)), shade(col, 0.8))]
        height = rng.uniform(2, 4)
    elif kind == "blob":
        r = rng.uniform(3, 14)
        e = rng.uniform(0.6, 1.0)
        pts = to_image(cx, cy, ang, circle(0, 0, r, 12) * [1, e])
        base = [(60, 85, 45), (170, 150, 90), (70, 140, 170), (190, 185, 175), (95, 70, 55)][rng.integers(5)]
        parts = [(pts, jitter(rng, base, 15))]
        height = 0.0 if base[2] == 170 else r * 0.3
    else:  # containers: a stack of 2-6 boxes of 20 or 40 ft side by side, like trucks seen from above
        n, a, b = int(rng.integers(2, 7)), float(rng.choice([20.0, 40.0])), 8.0
        pts = to_image(cx, cy, ang, rect(-a / 2, a / 2, -n * b / 2, n * b / 2))
        cols = [(160, 50, 40), (40, 80, 140), (60, 120, 70), (200, 120, 40), (150, 150, 150), (220, 220, 215)]
        parts = [
            (
                to_image(
                    cx, cy, ang, rect(-a / 2, a / 2, -n * b / 2 + k * b + 0.5, -n * b / 2 + (k + 1) * b - 0.5)
                ),
                jitter(rng, cols[rng.integers(len(cols))], 15),
            )
            for k in range(n)
        ]
        height = rng.uniform(2, 5)
    r = sc.fits(pts, max_overlap=0.0)
    if r is None:
        return False
    sc.occupy(r)
    irv = irng.uniform(110, 190)
    sc.items.append(
        Item(
            1 if kind in ("rock", "blob") else 2,
            [(pts, height)] if height else [],
            lambda c: [c.poly(p, col, irv) for p, col in parts],
        )
    )
    return True


def tree(sc: Scene, cx: float, cy: float, r: float, max_cover: float = 0.35, street: bool = False) -> bool:
    """A tree crown (dark disk with a sunlit side); it may hide up to `max_cover` of any object it touches.
    Only street trees (`street`) may stand on paved ground (the sidewalk)."""
    s = sc.size
    x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, s)
    y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, s)
    if x1 <= x0 or y1 <= y0 or not (0 <= cx < s and 0 <= cy < s):
        return False
    if sc.water[int(cy), int(cx)] or sc.occ[int(cy), int(cx)] or (sc.paved[int(cy), int(cx)] and not street):
        return False
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    hit = sc.ids[y0:y1, x0:x1][disk]
    hit = hit[hit > 0]
    if hit.size:
        counts = np.bincount(hit)
        for obj in np.nonzero(counts)[0]:
            if counts[obj] > max_cover * sc.object_area[obj - 1]:
                return False
    rng = sc.rng
    col = jitter(rng, (48, 72, 40), 25)
    off = -sc.sun / max(np.linalg.norm(sc.sun), 1e-6) * r * 0.3
    irv = sc.irng.uniform(65, 90)

    def draw(c: Canvas) -> None:
        c.disk(cx, cy, r, col, irv)
        c.disk(cx + off[0], cy + off[1], r * 0.6, shade(col, 1.25), irv + 5)

    sc.items.append(Item(3, [(circle(cx, cy, r, 12), r * 0.8)], draw))
    return True

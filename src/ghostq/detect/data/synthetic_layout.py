"""Scene layout and rendering of the synthetic aerial set: one theme per image (urban, airport, harbor,
industrial), districts of parking lots, aprons, tank farms, roads with traffic and buildings, then the
objects, shadows and sensor effects (ghostq.detect.data.synthetic writes the dataset).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ghostq.detect.data import synthetic_clutter as clt
from ghostq.detect.data import synthetic_scene as scn
from ghostq.detect.data.synthetic_objects import large_vehicle, plane, ship, small_vehicle, storage_tank
from ghostq.detect.data.synthetic_scene import Canvas, Scene, jitter, rect, shade, to_image

THEMES = ("urban", "airport", "harbor", "industrial")  # one per image, drawn with THEME_P
THEME_P = (0.3, 0.25, 0.25, 0.2)


# ---------------------------------------------------------------------------------------------- layout
def _lot(sc: Scene, canvas: Canvas, paved: ImageDraw.ImageDraw, trucks: bool) -> None:
    """Parking lot: stall lines in back-to-back rows and cars (or trucks, buses) nose-in with gaps."""
    rng = sc.rng
    depth, pitch = (44, rng.uniform(16, 19)) if trucks else (20, rng.uniform(9.5, 11.5))
    a, b = rng.uniform(90, 220), rng.uniform(2.2, 6.5) * depth
    z = scn.zone(sc, canvas, paved, a, b, jitter(rng, (105, 105, 108), 14), sc.irng.uniform(140, 160))
    if z is None:
        return
    (cx, cy), ang = z
    occupancy, aisle = rng.uniform(0.45, 0.95), rng.uniform(14, 20)
    line_col = jitter(rng, (210, 208, 195), 6)
    v, row = -b / 2 + depth / 2 + 2, 0
    while v + depth / 2 <= b / 2 - 1:
        facing = 1 if row % 2 == 0 else -1
        for t in np.arange(-a / 2 + 3, a / 2 - 3 - pitch, pitch):
            canvas.line(
                to_image(cx, cy, ang, np.array([[t, v - depth / 2], [t, v + depth / 2]])), line_col, 1
            )
            if rng.random() < occupancy:
                p = to_image(
                    cx, cy, ang, np.array([[t + pitch / 2 + rng.normal(0, 0.5), v + rng.normal(0, 1)]])
                )[0]
                head = (
                    ang + facing * math.pi / 2 + rng.normal(0, 0.05) + (math.pi if rng.random() < 0.15 else 0)
                )
                (large_vehicle if trucks else small_vehicle)(sc, p[0], p[1], head)
        v += depth if row % 2 == 0 else depth + aisle
        row += 1


def _apron(sc: Scene, canvas: Canvas, paved: ImageDraw.ImageDraw) -> None:
    """Concrete apron with taxi lines; planes parked nose-in along one edge or scattered; service vehicles."""
    rng = sc.rng
    a, b = rng.uniform(200, 340), rng.uniform(130, 220)
    z = scn.zone(sc, canvas, paved, a, b, jitter(rng, scn.CONCRETE, 10), sc.irng.uniform(125, 140))
    if z is None:
        return
    (cx, cy), ang = z
    for vv in (-b * 0.1, b * 0.3):
        canvas.line(to_image(cx, cy, ang, np.array([[-a / 2, vv], [a / 2, vv]])), (200, 175, 60), 1)
    if rng.random() < 0.6:
        t = -a / 2 + rng.uniform(20, 40)
        while t < a / 2:
            p = to_image(cx, cy, ang, np.array([[t, -b / 2 + rng.uniform(22, 38)]]))[0]
            plane(sc, p[0], p[1], ang - math.pi / 2 + rng.normal(0, 0.04))
            t += rng.uniform(55, 80)
    want, placed = int(rng.integers(1, 5)), 0
    for _ in range(5 * want):
        p = to_image(cx, cy, ang, np.array([rng.uniform(-0.5, 0.5, 2) * [a, b]]))[0]
        placed += plane(sc, p[0], p[1], rng.uniform(0, 2 * math.pi))
        if placed >= want:
            break
    for _ in range(int(rng.poisson(4))):
        p = to_image(cx, cy, ang, np.array([rng.uniform(-0.5, 0.5, 2) * [a, b]]))[0]
        (large_vehicle if rng.random() < 0.4 else small_vehicle)(sc, p[0], p[1], rng.uniform(0, 2 * math.pi))


def _tank_farm(sc: Scene, canvas: Canvas, paved: ImageDraw.ImageDraw) -> None:
    """A pad with a grid of same-size tanks (some missing), optionally each in its bund wall."""
    rng = sc.rng
    d = rng.uniform(14, 40)
    pitch = d + rng.uniform(5, 14)
    nu, nv = int(rng.integers(2, 5)), int(rng.integers(2, 4))
    a, b = nu * pitch + 8, nv * pitch + 8
    pad = jitter(rng, [(175, 165, 140), scn.CONCRETE, (150, 140, 115)][rng.integers(3)], 10)
    z = scn.zone(sc, canvas, paved, a, b, pad, sc.irng.uniform(125, 150))
    if z is None:
        return
    (cx, cy), ang = z
    bund = rng.random() < 0.5
    for i in range(nu):
        for j in range(nv):
            uc, vc = -a / 2 + 4 + (i + 0.5) * pitch, -b / 2 + 4 + (j + 0.5) * pitch
            if bund:
                cell = to_image(
                    cx,
                    cy,
                    ang,
                    rect(uc - pitch / 2 + 1, uc + pitch / 2 - 1, vc - pitch / 2 + 1, vc + pitch / 2 - 1),
                )
                canvas.line(np.concatenate([cell, cell[:1]]), shade(pad, 0.75), 1)
            if rng.random() < 0.85:
                p = to_image(cx, cy, ang, np.array([[uc, vc]]))[0]
                storage_tank(sc, p[0], p[1], d * rng.uniform(0.95, 1.05))


def _road_traffic(sc: Scene) -> None:
    """Street parking (parallel, both sides, gaps) and vehicles driving in the lanes."""
    rng, s = sc.rng, sc.size
    for centre, d, width in sc.roads:
        ang = math.atan2(d[1], d[0])
        nrm = np.array([-d[1], d[0]])
        for side in (-1, 1):
            if rng.random() < 0.5:
                occ, t = rng.uniform(0.3, 0.8), -1.5 * s + rng.uniform(0, 20)
                while t < 1.5 * s:
                    p = centre + d * t + nrm * side * (width / 2 - 4.5)
                    if rng.random() < occ and np.all(np.abs(p - s / 2) < s / 2 + 20):
                        small_vehicle(sc, p[0], p[1], ang + (math.pi if rng.random() < 0.5 else 0))
                    t += rng.uniform(15, 21)
        for _ in range(int(rng.poisson(3.5 * s / scn.REFERENCE_SIZE))):
            side = 1 if rng.random() < 0.5 else -1
            p = centre + d * rng.uniform(-0.75, 0.75) * s + nrm * side * width / 4
            head = ang + (0 if side > 0 else math.pi) + rng.normal(0, 0.03)
            (large_vehicle if rng.random() < 0.25 else small_vehicle)(sc, p[0], p[1], head)


def _buildings(sc: Scene, n: int, big: bool) -> None:
    """Houses along the roads (setback, aligned) and free-standing buildings; warehouses when `big`."""
    rng, s = sc.rng, sc.size
    for _ in range(n):
        a, b = (
            (rng.uniform(40, 110), rng.uniform(30, 70)) if big else (rng.uniform(14, 40), rng.uniform(12, 34))
        )
        if sc.roads and rng.random() < 0.7:
            centre, d, width = sc.roads[rng.integers(len(sc.roads))]
            side = 1 if rng.random() < 0.5 else -1
            p = (
                centre
                + d * rng.uniform(-0.7, 0.7) * s
                + np.array([-d[1], d[0]]) * side * (width / 2 + rng.uniform(5, 18) + b / 2)
            )
            clt.building(sc, p[0], p[1], math.atan2(d[1], d[0]), a, b)
        else:
            clt.building(sc, *rng.uniform(0, s, 2), sc.theta + rng.integers(2) * math.pi / 2, a, b)


def _plan(sc: Scene, canvas: Canvas, paved_img: Image.Image, theme: str) -> None:
    """Roads, zones and every object, distractor and tree of one image, by theme."""
    rng, s = sc.rng, sc.size
    paved = ImageDraw.Draw(paved_img)
    n_roads = {
        "urban": rng.integers(2, 4),
        "airport": 1,
        "harbor": rng.integers(1, 3),
        "industrial": rng.integers(1, 3),
    }[theme]
    scn.roads(sc, canvas, paved, int(max(1, round(n_roads * s / scn.REFERENCE_SIZE))))
    for k in range(max(1, round(sc.scale))):  # a large image holds several districts, each with a theme
        district = theme if k == 0 else THEMES[rng.choice(len(THEMES), p=THEME_P)]
        if district == "airport":
            _apron(sc, canvas, paved)
        if district == "industrial" or (district == "harbor" and rng.random() < 0.5) or rng.random() < 0.1:
            _tank_farm(sc, canvas, paved)
        p_lot = {"urban": None, "airport": 0.4, "harbor": 0.35, "industrial": 0.5}[district]
        lots = 1 + rng.poisson(0.7) if p_lot is None else int(rng.random() < p_lot)
        for _ in range(lots):
            _lot(sc, canvas, paved, trucks=rng.random() < (0.5 if district == "industrial" else 0.15))
    sc.paved = np.asarray(paved_img) > 0
    sc.water &= ~sc.paved  # bridges are roads
    if sc.water.any():
        wet, want, placed = np.flatnonzero(sc.water), sc.count(10 * sc.water.mean() + 1.5), 0
        for _ in range(4 * want):
            i = wet[rng.integers(len(wet))]
            placed += ship(
                sc, float(i % s), float(i // s), rng.uniform(0, 2 * math.pi), wake=rng.random() < 0.35
            )
            if placed >= want:
                break
    _road_traffic(sc)
    _buildings(
        sc, sc.count({"urban": 12, "airport": 3, "harbor": 3, "industrial": 4}[theme]), big=theme != "urban"
    )
    if theme == "urban":
        _buildings(sc, sc.count(2), big=True)
    for _ in range(sc.count(6)):
        small_vehicle(sc, *rng.uniform(0, s, 2), rng.uniform(0, 2 * math.pi))
    for _ in range(sc.count(2.5 if theme in ("industrial", "harbor") else 1)):
        large_vehicle(sc, *rng.uniform(0, s, 2), rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.08:
        storage_tank(sc, *rng.uniform(0, s, 2), rng.uniform(14, 30))
    for kind, mean in (
        ("rock", 5),
        ("shed", 4),
        ("blob", 6),
        ("containers", 2 if theme in ("harbor", "industrial") else 0.2),
    ):
        for _ in range(sc.count(mean)):
            clt.clutter(sc, kind, *rng.uniform(0, s, 2))
    for _ in range(sc.count(3)):  # tree clusters
        c, spread = rng.uniform(0, s, 2), rng.uniform(8, 30)
        for _ in range(int(rng.integers(4, 20))):
            clt.tree(sc, *(c + rng.normal(0, spread, 2)), rng.uniform(3, 9))
    for centre, d, width in sc.roads:  # street trees that overhang parked cars
        if rng.random() < 0.4:
            side = 1 if rng.random() < 0.5 else -1
            for t in np.arange(-s, s, rng.uniform(12, 22)):
                p = centre + d * t + np.array([-d[1], d[0]]) * side * (width / 2 + rng.uniform(0, 4))
                clt.tree(sc, p[0], p[1], rng.uniform(4, 7), street=True)


# ----------------------------------------------------------------------------------------------- render
class SyntheticImage:
    """One rendered scene: RGB (H, W, 3) uint8, optional IR (H, W) uint8, polygons, boxes, class ids."""

    def __init__(
        self, rgb: np.ndarray, ir: np.ndarray | None, polygons: np.ndarray, labels: np.ndarray, theme: str
    ) -> None:
        self.rgb, self.ir, self.theme = rgb, ir, theme
        self.polygons = np.asarray(polygons, np.float32).reshape(-1, 8)
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        xs, ys = self.polygons[:, 0::2], self.polygons[:, 1::2]
        self.boxes = (
            np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1)
            if len(xs)
            else np.zeros((0, 4), np.float32)
        )


def render_scene(size: int, seed: int, index: int, ir: bool = False) -> SyntheticImage:
    """Render image `index` of the set with `seed`; depends on nothing else (IR on or off: same RGB)."""
    rng = np.random.default_rng([seed, index])
    sc = Scene(size, rng, np.random.default_rng([seed, index, 1]))
    theme = THEMES[rng.choice(len(THEMES), p=THEME_P)]
    water = "coast" if theme == "harbor" else ("river" if rng.random() < 0.15 else None)
    img, irimg = scn.ground(sc, water)
    _plan(sc, Canvas(img, irimg), Image.new("L", (size, size), 0), theme)
    img, irimg = scn.shadows_and_texture(sc, img, irimg)
    canvas = Canvas(img, irimg)
    for item in sorted(sc.items, key=lambda it: it.layer):
        item.draw(canvas)
    rgb, ira = scn.sensor(sc, img, irimg if ir else None)
    polys = np.stack([p for p, _ in sc.objects]) if sc.objects else np.zeros((0, 8), np.float32)
    return SyntheticImage(rgb, ira, polys, np.array([c for _, c in sc.objects], np.int64), theme)

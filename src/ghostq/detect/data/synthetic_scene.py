"""Backgrounds of the synthetic aerial scenes: ground texture, water, roads, paved areas, buildings, trees.

Everything is drawn at one fixed ground resolution (about 0.3 m per pixel, like DOTA's Google Earth tiles):
sizes are in pixels and do not depend on the image size, a larger image simply shows more ground.
The target objects themselves live in `synthetic_objects.py`; this module holds the canvas, the geometry
helpers, the scene state (masks that tell where an object may go), the ground, roads and paved zones; the
buildings, distractors (rocks, sheds, bushes, containers) and trees live in `synthetic_clutter.py`.

Drawing is vectorized numpy for the ground and PIL ImageDraw for shapes, so an image of 384 px takes a few
tens of milliseconds. Every random number comes from the scene's generator: same seed, same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Color = tuple[int, int, int]
REFERENCE_SIZE = 384  # feature counts are given for a 384 px image and scale with the area


# ----------------------------------------------------------------------------------------------- geometry
def to_image(cx: float, cy: float, angle: float, local: np.ndarray) -> np.ndarray:
    """Local points (u forward, v right) of an object at (cx, cy) with heading `angle` -> image (x, y)."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = local[:, 0], local[:, 1]
    return np.stack([cx + u * c - v * s, cy + u * s + v * c], axis=1)


def rect(u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """Rectangle in local coordinates, DOTA order: front-left, front-right, rear-right, rear-left."""
    return np.array([[u1, v0], [u1, v1], [u0, v1], [u0, v0]], dtype=np.float64)


def circle(cx: float, cy: float, r: float, n: int = 16) -> np.ndarray:
    """A circle as an n-gon (image coordinates)."""
    t = np.arange(n) * (2 * math.pi / n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def convex_hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull of a few points (monotone chain); used for the swept shadow of a convex shape."""
    p = sorted(map(tuple, np.round(pts, 3)))
    if len(p) <= 2:
        return np.asarray(p)

    def half(seq: list) -> list:
        out: list = []
        for q in seq:
            while (
                len(out) >= 2
                and (
                    (out[-1][0] - out[-2][0]) * (q[1] - out[-2][1])
                    - (out[-1][1] - out[-2][1]) * (q[0] - out[-2][0])
                )
                <= 0
            ):
                out.pop()
            out.append(q)
        return out

    lower, upper = half(p), half(p[::-1])
    return np.asarray(lower[:-1] + upper[:-1])


def raster(pts: np.ndarray, size: int) -> tuple[int, int, np.ndarray] | None:
    """Rasterize a polygon into a bool patch: (x0, y0, mask) clipped to the image, None when outside."""
    x0, y0 = max(int(math.floor(pts[:, 0].min())), 0), max(int(math.floor(pts[:, 1].min())), 0)
    x1, y1 = min(int(math.ceil(pts[:, 0].max())) + 1, size), min(int(math.ceil(pts[:, 1].max())) + 1, size)
    if x1 <= x0 or y1 <= y0:
        return None
    im = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(im).polygon((pts - (x0, y0)).ravel().tolist(), fill=1)
    return x0, y0, np.asarray(im).astype(bool)


def value_noise(rng: np.random.Generator, size: int, cells: int, octaves: int = 3) -> np.ndarray:
    """Smooth fractal noise (size x size, float32, std about 0.5): random grids upsampled bicubically."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = cells * 2**o + 1
        grid = rng.standard_normal((n, n)).astype(np.float32)
        out += amp * np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))
        total, amp = total + amp, amp * 0.5
    return out / total


def jitter(rng: np.random.Generator, color: tuple[float, float, float], amount: float) -> Color:
    """A colour with per-channel noise and a common brightness change, clipped to 0..255."""
    c = np.asarray(color, np.float64) * rng.uniform(1 - amount / 100, 1 + amount / 100) + rng.normal(
        0, amount / 3, 3
    )
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, max(0, v * factor))) for v in color)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ canvas
class Canvas:
    """Draws every shape into the RGB image and, when there is one, into the infrared image (one value)."""

    def __init__(self, rgb: Image.Image, ir: Image.Image | None) -> None:
        self.rgb, self.ir = rgb, ir
        self._d = ImageDraw.Draw(rgb)
        self._di = ImageDraw.Draw(ir) if ir is not None else None

    def poly(self, pts: np.ndarray, color: Color, ir: float | None = None) -> None:
        xy = pts.ravel().tolist()
        self._d.polygon(xy, fill=color)
        if self._di is not None and ir is not None:
            self._di.polygon(xy, fill=int(ir))

    def poly_ir(self, pts: np.ndarray, ir: float) -> None:
        """A polygon in the infrared image only (a warm engine under an unchanged RGB body)."""
        if self._di is not None:
            self._di.polygon(pts.ravel().tolist(), fill=int(ir))

    def disk(self, cx: float, cy: float, r: float, color: Color, ir: float | None = None) -> None:
        box = [cx - r, cy - r, cx + r, cy + r]
        self._d.ellipse(box, fill=color)
        if self._di is not None and ir is not None:
            self._di.ellipse(box, fill=int(ir))

    def line(self, pts: np.ndarray, color: Color, width: int, ir: float | None = None) -> None:
        xy = pts.ravel().tolist()
        self._d.line(xy, fill=color, width=width)
        if self._di is not None and ir is not None:
            self._di.line(xy, fill=int(ir), width=width)


@dataclass
class Item:
    """Something drawn after the shadow pass: its shadow outlines (polygon, height in px) and a draw call."""

    layer: int  # 1 ground clutter and wakes, 2 buildings and objects, 3 trees (occluders)
    shadows: list[tuple[np.ndarray, float]]
    draw: Callable[[Canvas], None]


@dataclass
class Scene:
    """The state of one image while it is planned: masks of where things are, and what will be drawn."""

    size: int
    rng: np.random.Generator  # every choice that changes the RGB image
    irng: np.random.Generator  # infrared values only, so the RGB image is the same with or without --ir
    theta: float = 0.0  # orientation of the man-made layout (roads, lots, buildings)
    sun: np.ndarray = field(default_factory=lambda: np.zeros(2))  # shadow offset per pixel of height
    water: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    paved: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    occ: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # buildings, objects, clutter
    ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))  # object index + 1
    zoned: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # lots, aprons, pads
    # roads as (centre, unit direction, width)
    roads: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)
    water_color: tuple[float, float, float] = (38.0, 62.0, 72.0)
    items: list[Item] = field(default_factory=list)
    objects: list[tuple[np.ndarray, int]] = field(default_factory=list)  # (label polygon (8,), class id)
    object_area: list[int] = field(default_factory=list)  # rasterized pixels of each object

    def __post_init__(self) -> None:
        s = self.size
        self.water, self.paved, self.occ, self.zoned = (np.zeros((s, s), bool) for _ in range(4))
        self.ids = np.zeros((s, s), np.int32)
        self.theta = float(self.rng.uniform(0, math.pi))
        phi = self.rng.uniform(0, 2 * math.pi)
        self.sun = np.array([math.cos(phi), math.sin(phi)]) * self.rng.uniform(0.35, 0.9)

    @property
    def scale(self) -> float:
        """Image area relative to the reference size: feature counts scale with it."""
        return self.size * self.size / REFERENCE_SIZE**2

    def count(self, mean: float) -> int:
        return int(self.rng.poisson(mean * self.scale))

    def inside(self, pts: np.ndarray, margin: float = 1.0) -> bool:
        return bool(pts.min() >= margin and pts.max() <= self.size - margin)

    def fits(
        self,
        pts: np.ndarray,
        max_overlap: float = 0.1,
        water: bool = False,
        paved: bool | None = None,
        margin: float = 1.0,
    ) -> tuple[int, int, np.ndarray] | None:
        """The raster of `pts` if it lies inside the image, overlaps little, and is on water/land as asked."""
        if not self.inside(pts, margin):
            return None
        r = raster(pts, self.size)
        if r is None:
            return None
        x0, y0, m = r
        sl = np.s_[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        area = max(int(m.sum()), 1)
        if (self.occ[sl] & m).sum() > max_overlap * area:
            return None
        wet = (self.water[sl] & m).sum() / area
        if (water and wet < 0.97) or (not water and wet > 0.03):
            return None
        if paved is not None:
            pav = (self.paved[sl] & m).sum() / area
            if (paved and pav < 0.6) or (not paved and pav > 0.05):
                return None
        return r

    def wet(self, pts: np.ndarray) -> bool:
        """Whether every point inside the image lies on water (points outside do not count)."""
        p = np.floor(pts).astype(int)
        p = p[(p >= 0).all(1) & (p < self.size).all(1)]
        return bool(self.water[p[:, 1], p[:, 0]].all())

    def occupy(self, r: tuple[int, int, np.ndarray], obj: int | None = None) -> None:
        x0, y0, m = r
        sl = np.s_[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        self.occ[sl] |= m
        if obj is not None:
            self.ids[sl][m] = obj + 1


# ---------------------------------------------------------------------------------------------- ground
GRASS, DRY, SOIL, SAND = (78, 98, 58), (138, 132, 92), (128, 108, 84), (176, 164, 136)
ASPHALT, CONCRETE = (88, 88, 90), (168, 166, 160)


def ground(sc: Scene, water_kind: str | None) -> tuple[Image.Image, Image.Image]:
    """Land cover (grass, dry grass, soil patches and fields) and optional water; RGB and infrared images."""
    rng, s = sc.rng, sc.size
    veg = 1 / (1 + np.exp(-(4 * value_noise(rng, s, 2) + rng.uniform(-1.5, 1.5))))
    dry = 1 / (1 + np.exp(-3 * value_noise(rng, s, 3)))
    grass, dryg, soil = (np.asarray(jitter(rng, c, 12), np.float32) for c in (GRASS, DRY, SOIL))
    bare = dry[..., None] * dryg + (1 - dry[..., None]) * soil
    rgb = veg[..., None] * grass + (1 - veg[..., None]) * bare
    ir = 85 + 55 * (1 - veg) + 10 * dry
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    irimg = Image.fromarray(ir.clip(0, 255).astype(np.uint8))
    canvas = Canvas(img, irimg)
    for _ in range(sc.count(1.5)):  # fields and lawns: sharp-edged patches aligned with the layout
        c, a, b = rng.uniform(0, s, 2), rng.uniform(40, 140), rng.uniform(30, 110)
        pts = to_image(*c, sc.theta + rng.normal(0, 0.1), rect(-a, a, -b, b))
        base = (GRASS, DRY, SOIL, SAND)[rng.integers(4)]
        canvas.poly(pts, jitter(rng, base, 15), sc.irng.uniform(80, 140))
    if water_kind:
        _water(sc, img, irimg, water_kind)
    return img, irimg


def _water(sc: Scene, img: Image.Image, irimg: Image.Image, kind: str) -> None:
    """A coast (half the image or so) or a river, with a wavy shore and a sandy beach."""
    rng, s = sc.rng, sc.size
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    d = (xx - s / 2) * math.cos(a) + (yy - s / 2) * math.sin(a)
    d = d + 18 * value_noise(rng, s, 3)
    if kind == "river":
        half = rng.uniform(45, 90) * max(1.0, s / REFERENCE_SIZE) ** 0.5
        d = half - np.abs(d - rng.uniform(-0.2, 0.2) * s)
    else:
        d = d - rng.uniform(-0.3, 0.05) * s  # water where d > 0: a third to two thirds of the image
    beach = (d > -rng.uniform(2, 8)) & (d <= 0)
    wet = d > 0
    arr, ira = np.asarray(img, np.float32).copy(), np.asarray(irimg, np.float32).copy()
    deep = np.asarray(jitter(rng, (38, 62, 72), 20), np.float32)
    sc.water_color = tuple(float(v) for v in deep * 1.1)
    depth = np.clip(d / 40, 0, 1)[..., None]
    arr[wet] = (deep * (1.25 - 0.3 * depth) + 6 * value_noise(rng, s, 6, 2)[..., None])[wet]
    arr[beach] = np.asarray(jitter(rng, SAND, 8), np.float32)
    ira[wet] = 55
    img.paste(Image.fromarray(arr.clip(0, 255).astype(np.uint8)))
    irimg.paste(Image.fromarray(ira.clip(0, 255).astype(np.uint8)))
    sc.water = wet


# ------------------------------------------------------------------------------------- roads and zones
def roads(sc: Scene, canvas: Canvas, paved: ImageDraw.ImageDraw, n: int) -> None:
    """Straight roads across the image along the layout directions, with sidewalks and lane markings."""
    rng, s = sc.rng, sc.size
    for k in range(n):
        ang = sc.theta + (k % 2) * math.pi / 2 + rng.normal(0, 0.02)
        d, nrm = np.array([math.cos(ang), math.sin(ang)]), np.array([-math.sin(ang), math.cos(ang)])
        centre = s / 2 + nrm * rng.uniform(-0.38, 0.38) * s + d * rng.uniform(-0.2, 0.2) * s
        width = float(rng.uniform(12, 24))
        ends = np.stack([centre - d * 1.5 * s, centre + d * 1.5 * s])
        walk = int(width + rng.uniform(4, 9))
        canvas.line(ends, jitter(rng, (150, 148, 140), 10), walk, sc.irng.uniform(120, 140))
        canvas.line(ends, jitter(rng, ASPHALT, 18), int(width), sc.irng.uniform(140, 165))
        paved.line(ends.ravel().tolist(), fill=1, width=walk)
        if width >= 15:
            mark = jitter(rng, (215, 212, 200), 6)
            t0, dash, gap = rng.uniform(0, 10), rng.uniform(4, 7), rng.uniform(6, 10)
            for t in np.arange(-1.5 * s + t0, 1.5 * s, dash + gap):
                seg = np.stack([centre + d * t, centre + d * (t + dash)])
                if np.all(np.abs(seg - s / 2) < s):
                    canvas.line(seg, mark, 1)
        sc.roads.append((centre, d, width))


def zone(
    sc: Scene,
    canvas: Canvas,
    paved: ImageDraw.ImageDraw,
    a: float,
    b: float,
    color: Color,
    ir: float,
) -> tuple[np.ndarray, float] | None:
    """A paved a x b px rectangle (parking lot, apron, tank pad) along the layout, off water and zones."""
    rng, s = sc.rng, sc.size
    for _ in range(20):
        c = rng.uniform(0.15, 0.85, 2) * s
        ang = sc.theta + rng.integers(2) * math.pi / 2
        pts = to_image(*c, ang, rect(-a / 2, a / 2, -b / 2, b / 2))
        r = raster(pts, s)
        if r is None:
            continue
        x0, y0, m = r
        sl = np.s_[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        if (sc.water[sl] & m).sum() > 0.02 * m.sum() or (sc.zoned[sl] & m).any():
            continue
        canvas.poly(pts, color, ir)
        paved.polygon(pts.ravel().tolist(), fill=1)
        sc.zoned[sl] |= m
        return c, ang
    return None


# ------------------------------------------------------------------------------------------------ finish
def shadows_and_texture(sc: Scene, img: Image.Image, irimg: Image.Image) -> tuple[Image.Image, Image.Image]:
    """Fine ground texture (weaker on water and pavement) and the soft shadows of every planned item."""
    rng, s = sc.rng, sc.size
    mask = Image.new("L", (s, s), 0)
    md = ImageDraw.Draw(mask)
    for item in sc.items:
        for pts, h in item.shadows:
            if h > 0:
                md.polygon(convex_hull(np.concatenate([pts, pts + sc.sun * h])).ravel().tolist(), fill=255)
    sh = np.asarray(mask.filter(ImageFilter.GaussianBlur(0.8)), np.float32) / 255
    amp = np.where(sc.water, 0.04, np.where(sc.paved, 0.06, 0.14)).astype(np.float32)
    tex = value_noise(rng, s, max(s // 6, 4), 2) * amp
    strength = rng.uniform(0.35, 0.6)
    arr = np.asarray(img, np.float32) * ((1 + tex) * (1 - strength * sh))[..., None]
    ira = np.asarray(irimg, np.float32) * (1 + 0.5 * tex) * (1 - 0.3 * sh)
    return (
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)),
        Image.fromarray(ira.clip(0, 255).astype(np.uint8)),
    )


def sensor(sc: Scene, img: Image.Image, irimg: Image.Image | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Camera look: blur, haze, contrast and brightness change, gamma, noise. Returns uint8 arrays."""
    rng, irng = sc.rng, sc.irng
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(rng.uniform(0.35, 1.0))), np.float32)
    haze = rng.uniform(0, 0.22)
    arr = arr * (1 - haze) + np.asarray(jitter(rng, (175, 180, 190), 8), np.float32) * haze
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.75, 1.2) + mean + rng.uniform(-18, 15)
    arr = 255 * (arr.clip(0, 255) / 255) ** rng.uniform(0.85, 1.15)
    sigma = rng.uniform(1.5, 5.0)
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * sigma
    rgb = arr.clip(0, 255).round().astype(np.uint8)
    if irimg is None:
        return rgb, None
    ira = np.asarray(irimg.filter(ImageFilter.GaussianBlur(irng.uniform(0.8, 1.5))), np.float32)
    ira = (ira - 128) * irng.uniform(0.8, 1.15) + 128 + irng.uniform(-15, 15)
    ira += irng.standard_normal(ira.shape, dtype=np.float32) * irng.uniform(2, 5)
    return rgb, ira.clip(0, 255).round().astype(np.uint8)

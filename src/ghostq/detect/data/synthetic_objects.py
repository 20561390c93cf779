"""The five target classes of the synthetic aerial set, drawn from above at about 0.3 m per pixel.

Each function places one object at (cx, cy) with heading `ang` (radians, image coordinates) when the spot is
inside the image and free (`Scene.fits`), and returns whether it did. It records the label polygon (an
oriented rectangle in DOTA order, front-left corner first, clockwise on screen, rounded to 0.1 px) and plans
the drawing (RGB and IR values) and the shadow; nothing is drawn until the scene's shadow pass is done.
Sizes in px (width x length): small vehicle 6x12..9x18, large vehicle 10x28..14x40, plane 35..70 long,
ship 12x40..20x80, storage tank 14..40 across.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ghostq.detect.data.synthetic_scene import (
    Canvas,
    Color,
    Item,
    Scene,
    circle,
    jitter,
    rect,
    shade,
    to_image,
)

SMALL, LARGE, PLANE, SHIP, TANK = range(5)  # indices into classes.SYNTHETIC

# Palettes (RGB) and their probabilities; every instance also gets its own jitter.
CAR = [(232, 232, 230), (28, 28, 32), (150, 152, 156), (96, 98, 102), (150, 30, 30), (35, 60, 130),
       (205, 200, 185), (40, 90, 60), (200, 160, 40)]  # fmt: skip
CAR_P = [0.22, 0.17, 0.2, 0.1, 0.08, 0.1, 0.05, 0.04, 0.04]
CAB = [(230, 230, 228), (160, 35, 30), (40, 70, 140), (210, 170, 40), (120, 120, 125)]
TRAILER = [(225, 225, 222), (150, 150, 152), (90, 110, 80), (170, 60, 40), (60, 80, 130)]
BUS = [(215, 175, 40), (225, 225, 225), (60, 90, 150), (170, 40, 40)]
AIRCRAFT, AIRCRAFT_P = (
    [(235, 236, 238), (200, 202, 205), (150, 155, 160), (225, 225, 215)],
    [0.55, 0.2, 0.15, 0.1],
)
HULL = [(40, 40, 45), (120, 40, 35), (40, 55, 90), (150, 150, 150), (225, 225, 225)]
DECK = [(120, 60, 45), (80, 100, 80), (140, 140, 135), (190, 185, 175)]
CONTAINER = [(170, 50, 40), (40, 80, 150), (60, 130, 70), (210, 130, 40), (200, 200, 200)]
TANK_SHELL, TANK_P = (
    [(222, 222, 218), (200, 200, 196), (170, 175, 160), (190, 180, 160)],
    [0.45, 0.3, 0.15, 0.1],
)
GLASS, WHITE, PIPE, ENGINE = (38, 42, 50), (225, 225, 222), (200, 200, 190), (95, 98, 105)

Part = tuple[np.ndarray, Color, float]  # polygon in image coordinates, RGB, IR value


def _pick(
    rng: np.random.Generator, palette: list[Color], amount: float, p: list[float] | None = None
) -> Color:
    return jitter(rng, palette[rng.choice(len(palette), p=p)], amount)


def _draw_parts(parts: list[Part]) -> Callable[[Canvas], None]:
    def draw(c: Canvas) -> None:
        for pts, color, ir in parts:
            c.poly(pts, color, ir)

    return draw


def add_object(
    sc: Scene,
    label: int,
    poly: np.ndarray,
    draw: Callable[[Canvas], None],
    shadows: list[tuple[np.ndarray, float]],
    water: bool = False,
    occupancy: np.ndarray | None = None,
    max_overlap: float = 0.1,
) -> bool:
    """Place one labelled object if its spot is inside the image and free; plan its drawing."""
    poly = np.round(poly, 1)
    if not sc.inside(poly, 1.0):
        return False
    r = sc.fits(poly if occupancy is None else occupancy, max_overlap, water=water)
    if r is None:
        return False
    sc.occupy(r, obj=len(sc.objects))
    sc.object_area.append(max(int(r[2].sum()), 1))
    sc.objects.append((poly.reshape(-1).astype(np.float32), label))
    sc.items.append(Item(2, shadows, draw))
    return True


def small_vehicle(sc: Scene, cx: float, cy: float, ang: float) -> bool:
    """Car: body with cut corners, windshield, roof, rear window; in IR warm, the hood warmest."""
    rng, irng = sc.rng, sc.irng
    w = rng.uniform(6, 9)
    ln = float(np.clip(w * rng.uniform(1.85, 2.2), 12, 18))
    body = _pick(rng, CAR, 10, CAR_P)
    glass, roof = jitter(rng, GLASS, 12), shade(body, rng.uniform(0.88, 1.08))
    u, v, k = ln / 2, w / 2, 0.22 * w
    octagon = np.array([[u, -v + k], [u, v - k], [u - k, v], [-u + k, v], [-u, v - k], [-u, -v + k],
                        [-u + k, -v], [u - k, -v]])  # fmt: skip
    irb = irng.uniform(165, 230)
    local = [
        (octagon, body, irb),
        (rect(0.1 * ln, 0.3 * ln, -0.42 * w, 0.42 * w), glass, irb),
        (rect(-0.3 * ln, 0.1 * ln, -0.38 * w, 0.38 * w), roof, irb),
        (rect(-0.42 * ln, -0.3 * ln, -0.38 * w, 0.38 * w), glass, irb),
    ]
    parts = [(to_image(cx, cy, ang, p), col, ir) for p, col, ir in local]
    hood = to_image(cx, cy, ang, rect(0.3 * ln, 0.46 * ln, -0.4 * w, 0.4 * w))
    irh = min(255.0, irb + irng.uniform(15, 40))
    draw_body = _draw_parts(parts)

    def draw(c: Canvas) -> None:
        draw_body(c)
        c.poly_ir(hood, irh)

    poly = to_image(cx, cy, ang, rect(-u, u, -v, v))
    return add_object(sc, SMALL, poly, draw, [(parts[0][0], rng.uniform(1.2, 2.2))])


def large_vehicle(sc: Scene, cx: float, cy: float, ang: float) -> bool:
    """Truck (cab, trailer with ribs) or bus (one body, windshield, roof units)."""
    rng, irng = sc.rng, sc.irng
    w, ln = rng.uniform(10, 14), rng.uniform(28, 40)
    u, v = ln / 2, w / 2
    if rng.random() < 0.7:
        cab = w * rng.uniform(0.7, 0.95)
        cab_col, trailer = _pick(rng, CAB, 10), _pick(rng, TRAILER, 12)
        local = [
            (rect(-u, u - cab - 1.2, -v, v), trailer, irng.uniform(140, 190)),
            (rect(u - cab, u, -v + 0.6, v - 0.6), cab_col, irng.uniform(215, 250)),
            (rect(u - 1.8, u - 0.6, -v + 1.2, v - 1.2), GLASS, irng.uniform(200, 230)),
        ]
        ribs = np.arange(-u + 3, u - cab - 3, rng.uniform(3.5, 6))
        local += [(rect(t, t + 0.8, -v + 0.8, v - 0.8), shade(trailer, 0.88), local[0][2]) for t in ribs]
    else:
        body = _pick(rng, BUS, 10)
        irb = irng.uniform(180, 230)
        local = [(rect(-u, u, -v, v), body, irb), (rect(u - 2.2, u - 0.6, -v + 1, v - 1), GLASS, irb)]
        local += [(rect(t, t + rng.uniform(3, 5), -v * 0.5, v * 0.5), shade(body, 1.12), irb + 20)
                  for t in (-u * 0.5, u * 0.1)]  # fmt: skip
    parts = [(to_image(cx, cy, ang, p), col, ir) for p, col, ir in local]
    poly = to_image(cx, cy, ang, rect(-u, u, -v, v))
    return add_object(sc, LARGE, poly, _draw_parts(parts), [(poly, rng.uniform(2.5, 4))])


def plane(sc: Scene, cx: float, cy: float, ang: float) -> bool:
    """Airliner cross: pointed fuselage, swept wings with engines, tailplane; label = length x span."""
    rng, irng = sc.rng, sc.irng
    ln = rng.uniform(35, 70)
    half, fw = ln * rng.uniform(0.85, 1.05) / 2, ln * rng.uniform(0.09, 0.12)
    tan = rng.uniform(0.3, 0.7)  # wing sweep
    u, f = ln / 2, fw / 2
    fuselage = np.array([[u, 0], [u - 1.3 * fw, f], [-u + 1.5 * fw, f * 0.85], [-u, f * 0.3], [-u, -f * 0.3],
                         [-u + 1.5 * fw, -f * 0.85], [u - 1.3 * fw, -f]])  # fmt: skip

    def wing(front: float, chord: float, span: float, taper: float) -> list[np.ndarray]:
        tip = front - (span - f) * tan
        side = np.array([[front, f], [tip, span], [tip - chord * taper, span], [front - chord, f]])
        return [side, side * [1, -1]]

    wings = wing(ln * rng.uniform(0.05, 0.15), ln * rng.uniform(0.18, 0.24), half, 0.35)
    tail = wing(-u + ln * 0.16, ln * 0.1, half * rng.uniform(0.3, 0.4), 0.5)
    engines = []
    for at in [0.38] if ln < 55 else [0.3, 0.6]:
        ev, le = half * at, ln * 0.1 - (half * at - f) * tan
        engines += [
            rect(le - 0.06 * ln, le + 0.03 * ln, s * ev - 0.025 * ln, s * ev + 0.025 * ln) for s in (1, -1)
        ]
    col = _pick(rng, AIRCRAFT, 6, AIRCRAFT_P)
    irb = irng.uniform(115, 165)
    local = [(p, shade(col, 0.93), irb) for p in tail] + [(p, col, irb) for p in [*wings, fuselage]]
    local += [(p, ENGINE, irng.uniform(215, 250)) for p in engines]
    parts = [(to_image(cx, cy, ang, p), c, ir) for p, c, ir in local]
    h = rng.uniform(3, 6)
    poly = to_image(cx, cy, ang, rect(-u, u, -half, half))
    return add_object(sc, PLANE, poly, _draw_parts(parts), [(p, h) for p, _, _ in parts[:5]])


def ship(sc: Scene, cx: float, cy: float, ang: float, wake: bool) -> bool:
    """Hull with a pointed bow, deck (containers, tanker pipe or hatches), bridge aft; optional wake."""
    rng, irng = sc.rng, sc.irng
    ln = rng.uniform(40, 80)
    w = float(np.clip(ln * rng.uniform(0.17, 0.3), 12, 20))
    u, v, bow = ln / 2, w / 2, ln * rng.uniform(0.18, 0.3)
    hull = np.array([[u, 0], [u - bow * 0.45, v * 0.85], [u - bow, v], [-u + 2, v], [-u, v - 2], [-u, -v + 2],
                     [-u + 2, -v], [u - bow, -v], [u - bow * 0.45, -v * 0.85]])  # fmt: skip
    deck_col = _pick(rng, DECK, 12)
    irh = irng.uniform(100, 140)
    local = [(hull, _pick(rng, HULL, 10), irh), (hull * [(u - 1.5) / u, (v - 1.5) / v], deck_col, irh + 5)]
    kind, aft = rng.integers(3), -u + ln * 0.2
    if kind == 0:  # containers in bays
        bays = np.arange(aft + 2, u - bow, 5.0)
        local += [(rect(t, t + 4.2, -v + 2, v - 2), _pick(rng, CONTAINER, 15), irh + 15) for t in bays]
    elif kind == 1:  # tanker: pipe along the deck and a manifold across
        local += [(rect(aft, u - bow, -0.6, 0.6), PIPE, irh + 20)]
        local += [(rect(-ln * 0.05, ln * 0.05, -v + 2, v - 2), PIPE, irh + 20)]
    else:  # hatches
        hatches = np.arange(aft + 3, u - bow - 4, 9.0)
        local += [(rect(t, t + 6, -v + 3, v - 3), shade(deck_col, 0.75), irh) for t in hatches]
    local.append((rect(-u + ln * 0.04, aft, -v * 0.8, v * 0.8), jitter(rng, WHITE, 6), irh + 45))
    local.append(
        (rect(-u + ln * 0.06, -u + ln * 0.06 + 2.5, -1.2, 1.2), (50, 50, 55), irng.uniform(220, 250))
    )
    parts = [(to_image(cx, cy, ang, p), c, ir) for p, c, ir in local]
    poly = to_image(cx, cy, ang, rect(-u, u, -v, v))
    shadow = [(parts[0][0], rng.uniform(1, 2.5))]
    if not add_object(sc, SHIP, poly, _draw_parts(parts), shadow, water=True, max_overlap=0.02):
        return False
    lw = ln * rng.uniform(0.6, 1.4)
    foam = jitter(rng, tuple(np.minimum(np.asarray(sc.water_color) * 1.6 + 25, 235)), 6)
    streak = to_image(cx, cy, ang, np.array([[-u, -v / 2], [-u, v / 2], [-u - lw, v / 5], [-u - lw, -v / 5]]))
    arms = [
        to_image(cx, cy, ang, np.array([[u - bow, s * v], [-u - lw, s * (v + lw * 0.3)]])) for s in (1, -1)
    ]
    t = np.linspace(0, 1, 24)[:, None]
    edges = [(a[0], a[1]) for a in arms] + [(streak[0], streak[3]), (streak[1], streak[2])]
    if wake and sc.wet(np.concatenate([p + t * (q - p) for p, q in edges])):  # all of it on water

        def draw_wake(c: Canvas) -> None:
            c.poly(streak, foam, 60)
            for a in arms:
                c.line(a, shade(foam, 0.9), 1, 58)

        sc.items.append(Item(1, [], draw_wake))
    return True


def storage_tank(sc: Scene, cx: float, cy: float, d: float) -> bool:
    """Cylindrical tank: dark rim, floating roof lit on one side, shadow; label = its upright square."""
    rng, irng = sc.rng, sc.irng
    r = d / 2
    col = _pick(rng, TANK_SHELL, 6, TANK_P)
    sun = sc.sun / max(np.linalg.norm(sc.sun), 1e-6)
    o1, o2 = sun * r * 0.08, -sun * r * 0.06
    irv = irng.uniform(150, 210)

    def draw(c: Canvas) -> None:
        c.disk(cx, cy, r, shade(col, 0.62), irv - 20)
        c.disk(cx, cy, r - 1.2, col, irv)
        c.disk(cx + o1[0], cy + o1[1], r * 0.8, shade(col, 0.8), irv - 10)
        c.disk(cx + o2[0], cy + o2[1], r * 0.74, shade(col, 0.94), irv - 5)
        c.disk(cx, cy, max(1.0, r * 0.08), shade(col, 0.6), irv)

    poly = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    shadow = [(circle(cx, cy, r), d * rng.uniform(0.25, 0.5))]
    return add_object(sc, TANK, poly, draw, shadow, occupancy=circle(cx, cy, r + 1), max_overlap=0.02)

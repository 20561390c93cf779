"""Open-set object patches pasted into training images, for ODNL / Open-sampling (DESIGN §4).

A patch bank holds objects of no target class, as RGB + alpha cut-outs:
- ``synthetic``: the synthetic generator's distractors (rocks, sheds, bush / hay / pool blobs, container
  stacks: ``synthetic_scene.clutter``), rendered at the set's ground resolution on a transparent canvas;
- a folder: every image in it (PNG alpha is kept; other images are pasted as opaque rectangles), resized so
  the longest side is drawn from ``folder_size`` pixels.

:class:`OpenSetPasteDataset` wraps a training :class:`DetectionDataset`: after augmentation it pastes
``per_image`` patches (random 90-degree rotation and flips, where they overlap no annotated box by more than
10% of their area) and appends their boxes with the label :data:`OPEN_SET_LABEL` (-1).
:func:`collate_open_set` turns those rows into ``Targets.open_set`` flags (label placeholder 0), which
:class:`ghostq.detect.losses.open_set.OpenSetHook` relabels at every step. Randomness comes from
(seed, epoch, index), as in the base dataset, so items are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ghostq.core.errors import GhostqError
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection
from ghostq.detect.models.output import Targets

OPEN_SET_LABEL = -1  # label of a pasted open-set box in dataset items (before collation)
CLUTTER_KINDS = ("rock", "shed", "blob", "containers")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SENTINEL = (255, 0, 255)  # canvas colour of a synthetic patch, made transparent


@dataclass
class Patch:
    """An open-set object cut-out: rgb H x W x 3 uint8, alpha H x W float32 in [0, 1]."""

    rgb: np.ndarray
    alpha: np.ndarray


def synthetic_patches(n: int = 64, seed: int = 0) -> list[Patch]:
    """``n`` distractors of the synthetic generator, kinds in turn, cropped to their drawn pixels."""
    from ghostq.detect.data.synthetic_clutter import clutter
    from ghostq.detect.data.synthetic_scene import Canvas, Scene

    patches: list[Patch] = []
    rng = np.random.default_rng(seed)
    size = 96
    attempts = 0
    while len(patches) < n and attempts < 20 * n:
        attempts += 1
        sc = Scene(size=size, rng=np.random.default_rng(rng.integers(2**63)), irng=np.random.default_rng(0))
        if not clutter(sc, CLUTTER_KINDS[len(patches) % len(CLUTTER_KINDS)], size / 2, size / 2):
            continue
        img = Image.new("RGB", (size, size), _SENTINEL)
        canvas = Canvas(img, None)
        for item in sc.items:
            item.draw(canvas)
        arr = np.asarray(img)
        mask = np.any(arr != np.array(_SENTINEL, np.uint8), axis=-1)
        ys, xs = np.nonzero(mask)
        if len(ys) < 4:
            continue
        sl = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        patches.append(Patch(arr[sl].copy(), mask[sl].astype(np.float32)))
    return patches


def folder_patches(folder: str | Path) -> list[Patch]:
    """Every image of ``folder`` (sorted) as a patch; a missing or empty folder is a one-line error."""
    root = Path(folder)
    if not root.is_dir():
        raise GhostqError(f"{root}: open-set patch folder not found (loss.open_set.source)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GhostqError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the open-set patch folder")
    patches = []
    for path in files:
        try:
            with Image.open(path) as im:
                rgba = np.asarray(im.convert("RGBA"))
        except Exception as exc:  # PIL raises many types on bad data
            raise GhostqError(f"{path}: cannot decode open-set patch ({type(exc).__name__}: {exc})") from exc
        patches.append(Patch(rgba[..., :3].copy(), rgba[..., 3].astype(np.float32) / 255.0))
    return patches


def load_patch_bank(source: str, seed: int = 0) -> tuple[list[Patch], bool]:
    """The bank named by ``source`` (``synthetic`` or a folder), and whether it is synthetic (native scale)."""
    if source == "synthetic":
        return synthetic_patches(seed=seed), True
    return folder_patches(source), False


def _resize(p: Patch, scale: float) -> Patch:
    h, w = p.alpha.shape
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    rgb = np.asarray(Image.fromarray(p.rgb).resize(size, Image.BILINEAR))
    alpha = np.asarray(Image.fromarray(p.alpha).resize(size, Image.BILINEAR))
    return Patch(rgb, np.clip(alpha, 0.0, 1.0))


def paste_patches(
    image: np.ndarray,
    boxes: np.ndarray,
    patches: list[Patch],
    rng: np.random.Generator,
    count: int,
    native_scale: bool = True,
    folder_size: tuple[int, int] = (12, 48),
) -> tuple[np.ndarray, np.ndarray]:
    """Paste up to ``count`` random patches into ``image`` (H x W x C uint8, modified in place) away from
    ``boxes`` [N, 4]; returns the image and the pasted boxes [P, 4] xyxy (tight around the alpha > 0.5)."""
    h, w = image.shape[:2]
    placed: list[list[float]] = []
    taken = [list(map(float, b)) for b in boxes]
    for _ in range(count):
        p = patches[int(rng.integers(len(patches)))]
        if native_scale:
            p = _resize(p, float(rng.uniform(0.8, 1.25)))
        else:
            longest = max(p.alpha.shape)
            p = _resize(p, float(rng.uniform(*folder_size)) / longest)
        k = int(rng.integers(4))
        rgb, alpha = np.rot90(p.rgb, k), np.rot90(p.alpha, k)
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        ph, pw = alpha.shape
        if ph >= h or pw >= w:
            continue
        for _attempt in range(10):
            x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
            if all(_overlap(x0, y0, x0 + pw, y0 + ph, b) <= 0.1 * pw * ph for b in taken):
                break
        else:
            continue
        region = image[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32)
        a = alpha[..., None]
        src = rgb.astype(np.float32)
        if image.shape[2] == 4:  # RGB + IR: the patch's grey value stands in for its infrared
            src = np.concatenate([src, src.mean(-1, keepdims=True)], axis=-1)
        image[y0 : y0 + ph, x0 : x0 + pw] = np.clip(a * src + (1 - a) * region, 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(alpha > 0.5)
        if len(ys) == 0:
            continue
        box = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1.0, y0 + ys.max() + 1.0]
        placed.append([float(v) for v in box])
        taken.append(placed[-1])
    return image, np.asarray(placed, np.float32).reshape(-1, 4)


def _overlap(x0: float, y0: float, x1: float, y1: float, b: list[float]) -> float:
    return max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1]))


class OpenSetPasteDataset(Dataset):
    """A training DetectionDataset whose items also hold pasted open-set objects (label -1)."""

    def __init__(
        self, base: DetectionDataset, patches: list[Patch], per_image: int = 3, native_scale: bool = True
    ) -> None:
        if not patches:
            raise GhostqError("open-set pasting: the patch bank is empty")
        self.base, self.patches, self.per_image, self.native_scale = base, patches, per_image, native_scale

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> Any:
        image, boxes, labels, ignore, meta = self.base[index]
        rng = np.random.default_rng(np.random.SeedSequence([self.base.seed, self.base.epoch, int(index), 1]))
        hwc = np.ascontiguousarray((image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8))
        hwc, pasted = paste_patches(hwc, boxes.numpy(), self.patches, rng, self.per_image, self.native_scale)
        image = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1))).float().div_(255.0)
        n = len(pasted)
        boxes = torch.cat([boxes, torch.from_numpy(pasted)])
        labels = torch.cat([labels, torch.full((n,), OPEN_SET_LABEL, dtype=torch.int64)])
        ignore = torch.cat([ignore, torch.zeros(n, dtype=torch.bool)])
        return image, boxes, labels, ignore, {**meta, "open_set": n}


def collate_open_set(batch: list[Any]) -> tuple[torch.Tensor, Targets, list[dict[str, Any]]]:
    """``collate_detection``, with rows labelled -1 turned into ``Targets.open_set`` flags (label 0)."""
    images, t, metas = collate_detection(batch)
    flags = (t.labels == OPEN_SET_LABEL) & t.mask
    labels = torch.where(t.labels == OPEN_SET_LABEL, torch.zeros_like(t.labels), t.labels)
    return images, Targets(t.boxes, labels, t.mask, flags), metas

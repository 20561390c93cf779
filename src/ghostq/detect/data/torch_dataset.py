"""The training / validation dataset of the detector (torch Dataset) and its collate function.

Items: letterbox (validation, or training without augmentation) or the augmentation chain of
ghostq.detect.data.transforms (training): mosaic (or scale jitter + random placement), flips, rot90,
HSV on RGB.

Determinism: item i of epoch e draws all its randomness from a Generator seeded by (seed, e, i), so a
result depends neither on the number of DataLoader workers nor on the order items are asked for. Call
`set_epoch(e)` before iterating the loader of each epoch. The epoch lives in shared memory, so persistent
DataLoader workers (fork, spawn or forkserver) see it too.

Image cache: decoding a PNG costs more CPU than all augmentations together, so with `cache_images` decoded
images are kept in memory as uint8 H x W x C, up to `cache_max_bytes` (default 2 GiB per process; an image
that does not fit is decoded each time it is used). An image larger than the largest size it is ever drawn
at (img_size x the top of the scale jitter; img_size for validation) is first downscaled to that size, with
its boxes scaled alike, cached or not (so an item never depends on what the cache holds): a 1024 px image
costs 5x less memory at S=320, every later resize is cheaper, and a validation item is a plain copy into
the letterbox. Items fill the cache as they are read; `preload()` fills it at once. With DataLoader
workers: call `preload()` before the loader starts them (forked workers share the cached pages; spawned
ones receive a copy), or use persistent workers, each filling its own cache (a non-persistent worker's
additions are lost when it exits at the end of the epoch).

Train / validation: `train=False`, or `augment=None`, gives the plain centred letterbox (ratio and pad in
meta map predictions back); `train=True` with an AugmentConfig gives the augmentation chain.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import get_spawning_popen
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.core.image_io import load_record_image
from ghostq.core.records import ImageRecord
from ghostq.detect.data.transforms import (
    AugmentConfig,
    Sample,
    hsv_jitter,
    letterbox,
    mosaic,
    random_flip_rot90,
    random_scale_place,
    rescale,
)
from ghostq.detect.models.output import Targets

__all__ = ["DEFAULT_CACHE_BYTES", "DetectionDataset", "collate_detection"]

DEFAULT_CACHE_BYTES = 2 * 1024**3  # image cache budget per process

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]


class DetectionDataset(Dataset):
    """Images and boxes of `records` as fixed-size tensors.

    Item i: (image float32 [C, S, S] in [0, 1], boxes float32 [M, 4] xyxy input pixels, labels int64 [M],
    ignore bool [M] (difficult, or cut by augmentation), meta). meta: index, file_name, orig_size
    (width, height), ratio and pad (pad_x, pad_y) with x_in = x_orig * ratio + pad_x (exact for a letterboxed
    item; for an augmented item they describe the scale and offset of its own image before flips and
    rotations), augmented (bool), mosaic (bool).
    """

    def __init__(
        self,
        records: list[ImageRecord],
        img_size: int,
        in_channels: int = 3,
        train: bool = False,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache_images: bool = True,
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not records:
            raise GhostqError("DetectionDataset: no images (the dataset is empty)")
        if img_size <= 0:
            raise ValueError(f"img_size must be positive, got {img_size}")
        if in_channels not in (3, 4):
            raise ValueError(f"in_channels must be 3 (RGB) or 4 (RGB + IR), got {in_channels}")
        if in_channels == 4:
            for rec in records:
                if rec.ir_path is None:
                    raise DataFormatError(
                        rec.path, "in_channels=4 needs an infrared image, but the record has no ir_path"
                    )
        self.records = list(records)
        self.img_size = int(img_size)
        self.in_channels = in_channels
        self.train = train
        self.augment = augment if train else None
        self.seed = int(seed)
        self._epoch = multiprocessing.RawValue(ctypes.c_int64, 0)  # shared with (persistent) workers
        self.cache_images = cache_images
        self.cache_max_bytes = int(cache_max_bytes)
        self._cache: dict[int, tuple[np.ndarray, float]] = {}
        self._cache_bytes = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch (augmentations differ per epoch, equal per (seed, epoch))."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.value = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        # a DataLoader starting a worker passes the shared epoch on; any other copy (pickle, deepcopy) gets
        # its own, holding the current value
        state = self.__dict__.copy()
        if get_spawning_popen() is None:
            state["_epoch"] = self.epoch
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["_epoch"], int):
            state["_epoch"] = multiprocessing.RawValue(ctypes.c_int64, state["_epoch"])
        self.__dict__.update(state)

    # ------------------------------------------------------------------------------------------- images

    def _cache_scale(self, width: int, height: int) -> float:
        """Scale at which an image is cached: never up, down to the largest size an item draws it at."""
        top = self.augment.scale_range[1] if self.augment is not None else 1.0
        return min(1.0, self.img_size * top / max(width, height, 1))

    def _decode(self, index: int) -> tuple[np.ndarray, float]:
        img = load_record_image(self.records[index], self.in_channels)
        scale = self._cache_scale(img.shape[1], img.shape[0])
        if scale < 1.0:
            img = rescale(img, scale)
        return img, scale

    def _store(self, index: int, img: np.ndarray, scale: float) -> bool:
        if not self.cache_images or self._cache_bytes + img.nbytes > self.cache_max_bytes:
            return False
        img.setflags(write=False)  # shared by every later item: transforms never write into it
        self._cache[index] = (img, scale)
        self._cache_bytes += img.nbytes
        return True

    def image(self, index: int) -> tuple[np.ndarray, float]:
        """Image of record `index`, H x W x in_channels uint8, and its scale relative to the file (< 1 when
        cached downscaled, see the module doc)."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        img, scale = self._decode(index)  # downscaled even when not cached: items never depend on the cache
        self._store(index, img, scale)
        return img, scale

    def preload(self, num_threads: int = 2) -> int:
        """Decode every image into the cache, in order, until one does not fit the budget; returns the number
        of images cached. PIL releases the GIL while decoding and resizing, so a few threads use a few cores.
        """
        if not self.cache_images:
            return 0
        todo = [i for i in range(len(self)) if i not in self._cache]
        step = 4 * max(1, num_threads)
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                for i, (img, scale) in zip(chunk, pool.map(self._decode, chunk), strict=True):
                    if not self._store(i, img, scale):
                        return len(self._cache)
        return len(self._cache)

    @property
    def cache_bytes(self) -> int:
        """Bytes of decoded images held in this process's cache."""
        return self._cache_bytes

    def sample(self, index: int) -> tuple[Sample, float]:
        """Record `index` as an untransformed Sample (difficult boxes flagged ignore), and the scale of its
        image and boxes relative to the file."""
        rec = self.records[index]
        img, scale = self.image(index)
        return Sample(img, rec.boxes.astype(np.float64) * scale, rec.labels, rec.difficult), scale

    # ------------------------------------------------------------------------------------------- items

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of item `index` in the current epoch."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))

    def __getitem__(self, index: int) -> Item:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        rec = self.records[index]
        size, cfg = self.img_size, self.augment
        is_mosaic = False
        first, scale = self.sample(index)
        if cfg is None:
            s, ratio, pad = letterbox(first, size)
        else:
            rng = self.rng(index)
            if rng.random() < cfg.mosaic_prob:
                others = [self.sample(int(j))[0] for j in rng.integers(0, len(self), 3)]
                s = mosaic([first, *others], size, rng, cfg)
                is_mosaic = True
                ratio, pad = size / max(first.width, first.height), (0, 0)
            else:
                s, ratio, pad = random_scale_place(first, size, rng, cfg)
            s = random_flip_rot90(s, rng, cfg)
            if rng.random() < cfg.hsv_prob:
                image = np.ascontiguousarray(s.image)  # flips / rotations are views of the canvas
                hsv_jitter(image, rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
                s = Sample(image, s.boxes, s.labels, s.ignore)
        ratio *= scale  # relative to the image file, not to the cached copy
        chw = np.ascontiguousarray(s.image.transpose(2, 0, 1))
        image_t = torch.from_numpy(chw).to(torch.float32).div_(255.0)
        meta = {
            "index": index,
            "file_name": rec.file_name,
            "orig_size": (rec.width, rec.height),
            "ratio": float(ratio),
            "pad": (int(pad[0]), int(pad[1])),
            "augmented": cfg is not None,
            "mosaic": is_mosaic,
        }
        return (
            image_t,
            torch.from_numpy(s.boxes.astype(np.float32)),
            torch.from_numpy(s.labels.astype(np.int64)),
            torch.from_numpy(s.ignore.astype(bool)),
            meta,
        )


def collate_detection(batch: list[Item]) -> tuple[torch.Tensor, Targets, list[dict[str, Any]]]:
    """Stack items into images [B, C, S, S], Targets padded to M = max(1, most boxes in an image), metas.

    Padding rows: box (0, 0, 0, 0), label 0, mask False. Ignore boxes keep their box and label with mask
    False, so a consumer can tell them from padding by their positive area.
    """
    if not batch:
        raise ValueError("collate_detection: empty batch")
    images = torch.stack([item[0] for item in batch])
    m = max(1, max(len(item[1]) for item in batch))
    b = len(batch)
    boxes = torch.zeros((b, m, 4), dtype=torch.float32)
    labels = torch.zeros((b, m), dtype=torch.int64)
    mask = torch.zeros((b, m), dtype=torch.bool)
    for i, (_, bx, lb, ig, _) in enumerate(batch):
        n = len(bx)
        boxes[i, :n] = bx
        labels[i, :n] = lb
        mask[i, :n] = ~ig
    return images, Targets(boxes=boxes, labels=labels, mask=mask), [item[4] for item in batch]

"""The deployed input equals the training / PyTorch-path input; boxes map back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ghostq.deploy.preprocess import PAD_VALUE, letterbox_image, preprocess, unletterbox


@pytest.mark.parametrize(("w", "h"), [(100, 60), (37, 91), (64, 64), (500, 20)])
def test_letterbox_geometry(w: int, h: int) -> None:
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    canvas, lb = letterbox_image(image, 64)
    r = 64 / max(w, h)
    nw, nh = int(np.floor(w * r + 1e-6)), int(np.floor(h * r + 1e-6))
    assert canvas.shape == (64, 64, 3) and lb.ratio == pytest.approx(r)
    assert lb.pad == ((64 - nw) // 2, (64 - nh) // 2)
    px, py = lb.pad
    border = np.ones((64, 64), bool)
    border[py : py + nh, px : px + nw] = False
    assert (canvas[border] == PAD_VALUE).all()


def test_batch_equals_torch_path_input() -> None:
    torch = pytest.importorskip("torch")
    from ghostq.core.letterbox import Sample, letterbox

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (h, w, 4), dtype=np.uint8) for w, h in ((90, 50), (33, 70))]
    batch, _ = preprocess(images, 48)
    ref = (
        torch.stack([torch.from_numpy(letterbox(Sample(im), 48)[0].image).permute(2, 0, 1) for im in images])
        .float()
        .div_(255.0)
    )
    assert batch.dtype == np.float32 and batch.shape == (2, 4, 48, 48)
    np.testing.assert_array_equal(batch, ref.numpy())


def test_unletterbox_inverts_the_placement() -> None:
    _, lb = letterbox_image(np.zeros((50, 100, 3), np.uint8), 64)
    box = np.array([[10, 5, 60, 45]], np.float32)
    placed = box * lb.ratio + np.array([lb.pad[0], lb.pad[1], lb.pad[0], lb.pad[1]])
    np.testing.assert_allclose(unletterbox(placed, lb), box, atol=1e-4)
    np.testing.assert_allclose(unletterbox(np.array([[-5, -5, 70, 70]]), lb), [[0, 0, 100, 50]])

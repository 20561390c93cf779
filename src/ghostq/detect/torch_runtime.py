"""The PyTorch checkpoint as a runtime: the reference the exported graphs are compared with.

Registers the backend ``torch`` (``.pt`` / ``.pth``) through the ``ghostq.runtimes`` entry point, so
``ghostq predict --model best.pt`` runs the same predict path as an ONNX file. The model and its inference head
are rebuilt from the checkpoint alone (its model spec: classes, input, head, LogitClip, decode settings), and the
head is the module the export traces, so the outputs follow the export contract: ``scores`` [B, N, C] = class
probabilities of the LogitClip-ed logits, ``boxes`` [B, N, 4] xyxy in input pixels. torch is imported when a
runtime is opened, so listing the registered backends costs no torch import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.detections import DecodeSettings
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Backend, ModelInfo, Runtime


class TorchRuntime(Runtime):
    """A ghostq checkpoint (``best.pt``) rebuilt and run with torch on ``device``."""

    backend = "torch"

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        decode: DecodeSettings | None = None,
        overrides: Mapping[str, Any] | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(decode)
        import torch

        from ghostq.detect.checkpoint import checkpoint_spec, load_detector
        from ghostq.detect.models.inference_head import InferenceHead

        if any((overrides or {}).get(k) is not None for k in ("img_size", "in_channels", "classes")):
            raise GhostqError(
                f"{path}: --img-size / --channels / --classes are for files without metadata; a checkpoint "
                "carries its own"
            )
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch, self.threads, self.device = torch, threads, torch.device(device)
        model, payload = load_detector(path, map_location=self.device)
        spec = checkpoint_spec(payload)
        self.head = InferenceHead(model, spec).eval()  # the module the ONNX export traces
        self.info = ModelInfo(Path(path), spec.img_size, spec.in_channels, spec.classes, spec.head, spec=spec)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(self.check_batch(batch)).to(self.device)
        with torch.no_grad():
            scores, boxes = self.head(x)
        return {"scores": scores.cpu().numpy(), "boxes": boxes.cpu().numpy()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "threads": self.threads,
                "torch": self._torch.__version__}  # fmt: skip


def _open_checkpoint(
    path: Path, threads: int | None, decode: DecodeSettings | None, overrides: Any, **options: Any
) -> Runtime:
    """Registry opener."""
    return TorchRuntime(path, threads, decode, overrides, **options)


BACKEND = Backend(
    "torch", (".pt", ".pth"), _open_checkpoint, ("torch",), 'pip install "ghostq[train]"', options=("device",)
)

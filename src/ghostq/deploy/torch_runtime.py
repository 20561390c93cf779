"""The PyTorch checkpoint as a runtime: the reference the exported graphs are compared with.

torch is imported when a TorchRuntime is created, never when :mod:`ghostq.deploy` is imported. Its outputs
follow the export contract because it runs the very module the export traces
(:class:`ghostq.export.fused_head.FusedHeadExport`): ``scores`` [B, N, C] = class probabilities of the
LogitClip-ed logits (when the model was trained with LogitClip), ``boxes`` [B, N, 4] xyxy in input pixels.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.errors import GhostqError
from ghostq.deploy.postprocess import DecodeSettings
from ghostq.deploy.runtimes import ModelInfo, Runtime


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
        try:  # imported here, never at module level: ghostq.deploy runs without torch
            torch = self._torch = importlib.import_module("torch")
        except ImportError:
            raise GhostqError(
                'backend torch needs PyTorch, which is not installed here (pip install "ghostq[train]"); '
                "run the exported .onnx / engine instead"
            ) from None

        from ghostq.core.config import Config
        from ghostq.detect.checkpoint import load_detector
        from ghostq.detect.losses.robust import logit_clip_from_config
        from ghostq.export.fused_head import FusedHeadExport

        if threads is not None:
            torch.set_num_threads(threads)
        self.threads, self.device = threads, torch.device(device)
        self.model, payload = load_detector(path, map_location=self.device)
        cfg = Config.model_validate(payload["config"])
        head = cfg.model.head
        self.wrapper = FusedHeadExport(self.model, clip=logit_clip_from_config(cfg, head)).eval()
        ov = dict(overrides or {})
        if ov.get("in_channels") is not None and int(ov["in_channels"]) != cfg.data.in_channels:
            raise GhostqError(
                f"{path}: the requested --channels {ov['in_channels']} does not match; the checkpoint takes "
                f"{cfg.data.in_channels} channels"
            )
        self.info = ModelInfo(
            path=Path(path),
            img_size=int(ov.get("img_size") or cfg.data.img_size),
            in_channels=int(ov.get("in_channels") or cfg.data.in_channels),
            classes=tuple(ov.get("classes") or payload["classes"]),
            head=head,
            nms="none",
            input_name="images",
            output_names=("scores", "boxes"),
        )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(self.check_batch(batch)).to(self.device)
        with torch.no_grad():
            scores, boxes = self.wrapper(x)
        return {"scores": scores.cpu().numpy(), "boxes": boxes.cpu().numpy()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "threads": self.threads,
                "torch": self._torch.__version__}

"""The `export` config section (pydantic, no torch): which ONNX files, NMS, INT8 scales, TensorRT build.

Every default lives here with a one-line description; `ghostq export --help` and the README reuse them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ghostq.core.spec import DEPLOY_CONF, DEPLOY_MAX_DET, IOU


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NMSSection(_Section):
    kind: Literal["none", "onnx", "trt"] = Field(
        "none", description="none: raw scores/boxes; onnx: NonMaxSuppression + gather; trt: EfficientNMS_TRT plugin"
    )
    score_threshold: float = Field(DEPLOY_CONF, ge=0, le=1, description="candidates need a score above this")
    iou_threshold: float = Field(IOU, gt=0, le=1, description="class-wise NMS IoU threshold")
    max_per_class: int = Field(DEPLOY_MAX_DET, ge=1, description="onnx NMS: boxes kept per class and image")
    max_det: int = Field(DEPLOY_MAX_DET, ge=1, description="trt NMS: detections per image (fixed output size)")


class Int8Section(_Section):
    enabled: bool = Field(True, description="write model_int8.onnx (TensorRT Q/DQ) and model_int8_cpu.onnx")
    source: Literal["auto", "ghost", "ptq"] = Field(
        "auto", description="scales from the GHOST checkpoint (ghost), a min-max calibration (ptq), or auto"
    )
    calib_batches: int = Field(4, ge=1, description="ptq: batches of training images for the min-max ranges")
    calib_batch_size: int = Field(8, ge=1, description="ptq: images per calibration batch")
    quantize_prediction_convs: bool = Field(
        False, description="ptq: also quantize the final prediction convs (GHOST keeps them in FP)"
    )
    cpu: bool = Field(True, description="also write model_int8_cpu.onnx (UINT8 activations, fast in ORT on x86)")
    cpu_prediction_convs: Literal["int8", "int8_output", "fp"] = Field(
        "int8", description="model_int8_cpu.onnx: prediction convs with 8-bit inputs and weights (int8: the conv "
        "before each runs as an integer QLinearConv; scales calibrated where the source has none), also 8-bit "
        "outputs (int8_output: QLinearConvs themselves, rounds logits and boxes) or as the source left them (fp: "
        "GHOST's choice); the TensorRT form always keeps the source's choice"
    )
    prediction_calib: Literal["minmax", "percentile"] = Field(
        "minmax", description="cpu_prediction_convs=int8*: input scale of a prediction conv the source left in FP "
        "(max |x| or a percentile of |x| over the calibration batches; int8_output ranges are always min-max)"
    )
    prediction_percentile: float = Field(
        99.99, gt=50, le=100, description="prediction_calib=percentile: the percentile of |x| taken as the range"
    )
    share_scales: bool = Field(
        True, description="one scale per Concat / MaxPool / Resize group (TensorRT fuses); false: per conv input only"
    )


class TensorRTSection(_Section):
    enabled: bool = Field(False, description="build TensorRT engines where the tensorrt package imports")
    typing: Literal["weak", "strong"] = Field(
        "weak", description="TensorRT 10: weak (INT8 + FP16 flags) or strong typing; TensorRT 11 is always strong"
    )
    workspace_mb: int = Field(1024, ge=16, description="builder workspace limit in MiB")
    timing_cache: Path | None = Field(None, description="timing cache file; None: export/timing.cache")
    min_batch: int = Field(1, ge=1, description="optimization profile: smallest batch")
    opt_batch: int = Field(1, ge=1, description="optimization profile: batch the kernels are tuned for")
    max_batch: int = Field(8, ge=1, description="optimization profile: largest batch")

    @model_validator(mode="after")
    def _batches(self) -> TensorRTSection:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"need min_batch <= opt_batch <= max_batch, got {self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )
        return self


class ExportConfig(_Section):
    source: Path | None = Field(None, description="FP checkpoint; None: <run dir>/fp/best.pt")
    opset: int = Field(17, ge=17, le=21, description="ONNX opset (17 or later: per-channel Q/DQ, LayerNorm)")
    ood: Literal["msp", "energy"] | None = Field(
        None, description="add an out-of-distribution score output (per anchor; per detection with onnx NMS)"
    )
    fp16: bool = Field(True, description="also write model_fp16.onnx (FP16 inside, FP32 inputs and outputs)")
    nms: NMSSection = Field(default_factory=NMSSection, description="optional NMS inside the graph")
    int8: Int8Section = Field(default_factory=Int8Section, description="INT8 Q/DQ export")
    verify: bool = Field(True, description="check every file against PyTorch on the val set -> verify.json")
    verify_images: int | None = Field(None, ge=1, description="val images used by verify; None: all of them")
    tensorrt: TensorRTSection = Field(default_factory=TensorRTSection, description="TensorRT engine build")
    jetson_trtexec: str = Field(
        "/usr/src/tensorrt/bin/trtexec", description="trtexec path written into export/trtexec.sh"
    )
    tensorrt_major: Literal[10, 11] = Field(
        10, description="TensorRT major export/trtexec.sh is written for where the tensorrt package is absent "
        "(the installed one wins): 10 (JetPack 6) or 11 (always strongly typed, no --int8/--fp16)"
    )

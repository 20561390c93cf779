"""The experiment config: pydantic models of every section, YAML loading and dotted overrides.

One place for every default; each field says what it is. An unknown key, a wrong type or an impossible value
fails at load with the file, the dotted key and what is allowed (`ConfigError`), before any work starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ghostq.core.compress_config import CompressConfig
from ghostq.core.config_yaml import apply_overrides, load_yaml
from ghostq.core.errors import ConfigError
from ghostq.core.export_config import ExportConfig
from ghostq.core.spec import CONF, IOU, MAX_DET
from ghostq.core.strict_values import boolean_misuse, non_finite, under

# The validation-context key under which the stage layer passes what each registry holds (see `registered`).
REGISTRIES = "ghostq.registries"


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated, floats must be finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def registry(info: ValidationInfo, kind: str) -> Any:
    """What the registry of `kind` holds, as the stage layer passed it at load; None when not given."""
    return ((info.context or {}).get(REGISTRIES) or {}).get(kind)


def registered(value: str, info: ValidationInfo, kind: str, what: str) -> str:
    """`value` when the registry of `kind` names it; a ValueError listing the names otherwise.

    Core imports no registry (they live in the torch layers above it): `ghostq.stages.config.load_config` passes
    them in the validation context. Validated without them (a checkpoint's stored config), names go unchecked."""
    names = registry(info, kind)
    if names is not None and value not in names:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(names))}")
    return value


class RunConfig(Section):
    name: str = Field("demo", description="run folder name under `root`", pattern=r"^[A-Za-z0-9_.\-]+$")
    root: Path = Field(Path("runs"), description="folder holding every run folder")
    seed: int = Field(0, ge=0, description="global seed (data order, augmentation, init)")


class SynthConfig(Section):
    images: int = Field(240, ge=2, description="number of synthetic images")
    size: int = Field(384, ge=64, le=4096, description="synthetic image side in pixels")
    seed: int = Field(0, ge=0, description="generator seed (same seed -> same files)")
    ir: bool = Field(False, description="also write an infrared channel (4-channel models)")


class DataConfig(Section):
    format: str = Field("synthetic", description="dataset format: synthetic, or a name of the dataset format registry")
    root: Path | None = Field(None, description="dataset root (synthetic: generated here on first use)")
    val_root: Path | None = Field(None, description="separate validation root; else `val_frac` of `root`")
    val_frac: float = Field(0.2, gt=0.0, lt=1.0, description="share of images held out for validation")
    img_size: int = Field(320, ge=32, le=4096, description="square network input side in pixels")
    in_channels: Literal[3, 4] = Field(3, description="3 = RGB, 4 = RGB + infrared")
    classes: list[str] | None = Field(
        None, min_length=1, description="classes to train, in this order; objects of others are dropped"
    )
    max_images: int | None = Field(
        None, ge=2, description="use only N images, evenly spaced in file-name order, before splitting: smoke tests"
    )
    cache_images: bool = Field(True, description="keep decoded images in memory between epochs")
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    synthetic: SynthConfig = Field(default_factory=SynthConfig, description="built-in synthetic set")

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if any(not name.strip() for name in v):
            raise ValueError(f"class names must not be empty, got {v}")
        first: dict[str, str] = {}
        clashes = []
        for name in v:
            key = name.strip().casefold()
            if key in first:
                clashes.append(f"{first[key]!r} and {name!r}")
            first.setdefault(key, name)
        if clashes:
            raise ValueError(
                f"duplicate class names (names must differ by more than case or spaces): {', '.join(clashes)}"
            )
        return v

    @field_validator("format")
    @classmethod
    def _registered_format(cls, v: str, info: ValidationInfo) -> str:
        return registered(v, info, "data.format", "dataset format")

    @field_validator("img_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32 (the coarsest stride), got {v}")
        return v

    @model_validator(mode="after")
    def _root_for_real_data(self) -> DataConfig:
        if self.format != "synthetic" and self.root is None:
            raise ValueError(f"data.root is required for format {self.format!r}")
        return self


class ModelConfig(Section):
    backbone: str = Field("csp_n", description="backbone name (ghostq.detect.models.list_backbones())")
    strides: list[Literal[4, 8, 16, 32]] = Field([8, 16, 32], min_length=1, description="detection strides")
    head: Literal["sigmoid", "softmax"] = Field("sigmoid", description="sigmoid over C, or softmax over C+1")
    act: Literal["relu", "silu"] = Field("relu", description="activation (ReLU fuses into INT8 convs)")

    @field_validator("backbone")
    @classmethod
    def _registered_backbone(cls, v: str, info: ValidationInfo) -> str:
        return registered(v, info, "model.backbone", "backbone")

    @field_validator("strides")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if sorted(set(v)) != list(v) or any(b != 2 * a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(
                f"strides must be consecutive powers of two, increasing (e.g. [4, 8, 16]), got {v}"
            )
        return v


class AugmentSection(Section):
    mosaic: float = Field(0.5, ge=0.0, le=1.0, description="probability of a 4-image mosaic")
    flip: float = Field(
        0.5, ge=0.0, le=1.0, description="probability of each of the horizontal / vertical flips"
    )
    rot90: float = Field(0.5, ge=0.0, le=1.0, description="probability of a random 90-degree rotation")
    hsv: float = Field(0.5, ge=0.0, le=1.0, description="probability of HSV jitter (RGB channels only)")
    scale: tuple[float, float] = Field((0.7, 1.3), description="random resize factor range")

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"need 0 < low <= high, got {list(v)}")
        return v


class TrainConfig(Section):
    epochs: int = Field(30, ge=1, description="training epochs")
    batch_size: int = Field(16, ge=1, description="images per step (per process under DDP)")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="optimizer")
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay (not on norms and biases)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum / AdamW beta1")
    warmup_epochs: float = Field(1.0, ge=0, description="linear warmup length in epochs")
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="final LR as a share of the peak (cosine)")
    ema: bool = Field(True, description="keep an exponential moving average of the weights")
    ema_decay: float = Field(0.999, gt=0, lt=1, description="EMA decay (ramped up over the first steps)")
    grad_clip: float = Field(10.0, ge=0, description="max gradient norm; 0 disables clipping")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="training device")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = all cores")
    augment: AugmentSection = Field(default_factory=AugmentSection, description="augmentations")


class LogitClipSection(Section):
    p: Literal[2, "inf"] | None = Field(
        None, description="norm clipped: 2 or inf; null: by head (2 for softmax C+1 as in the paper, inf for sigmoid)"
    )
    bound: float = Field(1.0, gt=0, description="d = 1/tau: the largest logit-vector p-norm kept")
    mode: Literal["continuous", "official"] = Field(
        "continuous", description="continuous z*min(1, d/|z|), or the authors' code (norm -> d once > 1/d)"
    )

    @field_validator("p", mode="before")
    @classmethod
    def _p_inf(cls, v: Any) -> Any:
        if isinstance(v, float) and v == float("inf"):
            return "inf"  # YAML .inf
        return v

    def p_for(self, head: str) -> float:
        """p as a number (2.0 or inf) for a model with this head."""
        p = self.p if self.p is not None else ("inf" if head == "sigmoid" else 2)
        return float("inf") if p == "inf" else 2.0


class OpenSetSection(Section):
    method: Literal["odnl", "open_sampling"] = Field(
        "odnl", description="odnl: uniform random labels; open_sampling: labels from the complementary prior"
    )
    eta: float = Field(1.0, ge=0, description="weight of the open-set term (ODNL eta, Open-sampling lambda)")
    source: str = Field(
        "synthetic", description="open-set patches: 'synthetic' distractors or a folder of image patches"
    )
    per_image: int = Field(3, ge=1, le=64, description="open-set patches pasted into each training image")


class LossConfig(Section):
    cls: str = Field(
        "varifocal",
        description="classification loss: a name of ghostq.detect.losses.cls_loss_heads() "
        "(logitnorm = LogitNorm with bce (sigmoid) or ce (softmax))",
    )
    box: str = Field("giou", description="box regression loss (giou, ciou)")
    cls_weight: float = Field(1.0, ge=0, description="weight of the classification loss")
    box_weight: float = Field(2.5, ge=0, description="weight of the box loss")
    logitnorm_tau: float = Field(0.04, gt=0, description="LogitNorm temperature (cls: logitnorm)")
    cls_params: dict[str, float] = Field(
        default_factory=dict,
        description="hyper-parameters of loss.cls beyond its papers' defaults, e.g. {q: 0.5} (gce), "
        "{alpha: 0.1, beta: 1.0} (sce, nce_rce); the names are the loss function's keywords",
    )
    logit_clip: LogitClipSection | None = Field(
        None, description="LogitClip the logits before the classification loss; null: off"
    )
    open_set: OpenSetSection | None = Field(
        None, description="paste open-set objects with ODNL / Open-sampling labels; null: off"
    )

    @field_validator("cls")
    @classmethod
    def _registered_cls(cls, v: str, info: ValidationInfo) -> str:
        return registered(v, info, "loss.cls", "classification loss")

    @field_validator("box")
    @classmethod
    def _registered_box(cls, v: str, info: ValidationInfo) -> str:
        return registered(v, info, "loss.box", "box loss")

    @model_validator(mode="after")
    def _compatible(self) -> LossConfig:
        if self.logit_clip is not None and self.cls == "logitnorm":
            raise ValueError(
                "loss.logit_clip cannot be combined with loss.cls=logitnorm (both rescale the logits): "
                "drop one of them"
            )
        return self


class EvalConfig(Section):
    score_threshold: float = Field(CONF, ge=0, le=1, description="minimum score kept before NMS")
    iou_threshold: float = Field(IOU, gt=0, le=1, description="class-wise NMS IoU threshold")
    max_det: int = Field(MAX_DET, ge=1, description="detections kept per image")


class BenchConfig(Section):
    backend: str = Field("ort-cpu", description="runtime timed by `ghostq run` (ghostq.core.runtime.backend_names())")
    batches: list[Annotated[int, Field(ge=1)]] = Field([1, 4], min_length=1, description="batch sizes timed")
    warmup: int = Field(10, ge=0, description="untimed runs per batch size first")
    iters: int = Field(50, ge=1, description="timed runs per batch size and model")
    threads: int = Field(0, ge=0, description="runtime CPU threads; 0 = every core")
    samples: int = Field(4, ge=0, description="val images drawn with predictions for the report")

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, v: str, info: ValidationInfo) -> str:
        return registered(v, info, "bench.backend", "runtime backend")


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)

    @model_validator(mode="after")
    def _head_matches_loss(self, info: ValidationInfo) -> Config:
        head, loss_heads = self.model.head, registry(info, "loss.cls")
        if loss_heads is not None and head not in loss_heads.get(self.loss.cls, (head,)):
            default = LossConfig.model_fields["cls"].default
            fits = sorted((k for k, heads in loss_heads.items() if head in heads), key=lambda k: (k != default, k))
            raise ValueError(
                f"loss.cls={self.loss.cls!r} does not fit model.head={head!r}: "
                f"with a {head} head use one of {', '.join(fits)}"
            )
        return self

    @property
    def run_dir(self) -> Path:
        """The run folder `run.root / run.name`."""
        return self.run.root / self.run.name


def load_config(
    path: str | Path, overrides: list[str] | None = None, registries: Mapping[str, Sequence[str]] | None = None
) -> Config:
    """Load and validate a YAML config with dotted overrides; relative data paths resolve from the CWD.

    `registries` (config key -> the names its registry holds; `loss.cls` -> name -> heads) checks the pluggable
    names; the stage layer's loader passes every registry."""
    data = apply_overrides(load_yaml(path), list(overrides or []))
    context = {REGISTRIES: dict(registries)} if registries is not None else None
    return validate_sections(Config, data, str(path), context)  # type: ignore[return-value]


def format_validation_error(err: ValidationError, source: str) -> str:
    """One clause per problem, `source: dotted.key: message (got value)`, joined with '; '."""
    return f"{source}: " + "; ".join(_problems(err.errors()))


def _problems(errors: list[Any]) -> list[str]:
    """`dotted.key: message (got value)` for each pydantic error."""
    problems = []
    for e in errors:
        key = ".".join(str(p) for p in e["loc"]) or "config"
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = (
            isinstance(value, (str, int, float, bool)) and len(repr(value)) < 60 and repr(value) not in msg
        )
        problems.append(f"{key}: {msg}" + (f" (got {value!r})" if shown else ""))
    return problems


def validate_sections(
    model: type[BaseModel], data: dict[str, Any], source: str, context: dict[str, Any] | None = None
) -> BaseModel:
    """Validate a dict against a pydantic model, turning errors into one ConfigError.

    Stricter than pydantic's lax mode where lax hides mistakes: true/false is refused for numbers and text,
    and every float must be finite."""
    misuse = boolean_misuse(model, data)
    try:
        result = model.model_validate(data, context=context)
    except ValidationError as err:
        # a key already reported as a misused boolean is not reported again in pydantic's words
        rest = [e for e in err.errors() if not any(under(e["loc"], k) for k in misuse)]
        raise ConfigError(f"{source}: " + "; ".join([*misuse.values(), *_problems(rest)])) from None
    if misuse:
        raise ConfigError(f"{source}: " + "; ".join(misuse.values()))
    bad = [k.lstrip(".") for k in non_finite(result, "")]
    if bad:
        raise ConfigError(f"{source}: " + "; ".join(f"{k}: Input should be a finite number" for k in bad))
    return result


def config_hash(cfg: BaseModel, sections: list[str] | None = None) -> str:
    """sha256 of the canonical JSON of the config (or of the named sections): a stage's identity."""
    dumped = cfg.model_dump(mode="json")
    if sections is not None:
        dumped = {k: dumped[k] for k in sections if k in dumped}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()

"""The experiment config: pydantic models of every section, YAML loading and dotted overrides.

One place for every default; each field says what it is. An unknown key, a wrong type or an impossible value
fails at load with the file, the dotted key and what is allowed (`ConfigError`), before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ghostq.core.compress_config import CompressConfig
from ghostq.core.errors import ConfigError
from ghostq.core.export_config import ExportConfig


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated, floats must be finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _backbone_names() -> list[str] | None:
    """Registered backbone names; None where torch (which every backbone needs) is not installed."""
    try:
        from ghostq.detect.models.registry import list_backbones
    except ModuleNotFoundError:
        return None
    return list_backbones()


def _cls_loss_heads() -> dict[str, tuple[str, ...]] | None:
    """Every `loss.cls` name -> its heads, from the loss registry; None where torch is not installed."""
    try:
        from ghostq.detect.losses import cls_loss_heads
    except ModuleNotFoundError:
        return None
    return cls_loss_heads()


def _box_loss_names() -> list[str] | None:
    """Names of the box losses, from the loss module; None where torch is not installed."""
    try:
        from ghostq.detect.losses import list_box_losses
    except ModuleNotFoundError:
        return None
    return list_box_losses()


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
    format: Literal["synthetic", "dota", "dior", "dior-r", "nwpu", "vedai", "coco"] = Field(
        "synthetic", description="dataset format"
    )
    root: Path | None = Field(None, description="dataset root (synthetic: generated here on first use)")
    val_root: Path | None = Field(None, description="separate validation root; else `val_frac` of `root`")
    val_frac: float = Field(0.2, gt=0.0, lt=1.0, description="share of images held out for validation")
    img_size: int = Field(320, ge=32, le=4096, description="square network input side in pixels")
    in_channels: Literal[3, 4] = Field(3, description="3 = RGB, 4 = RGB + infrared")
    classes: list[str] | None = Field(
        None, min_length=1, description="classes to train, in this order; objects of others are dropped"
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
    def _registered_backbone(cls, v: str) -> str:
        names = _backbone_names()
        if names is not None and v not in names:
            raise ValueError(f"unknown backbone {v!r}; allowed: {', '.join(names)}")
        return v

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
    logit_clip: LogitClipSection | None = Field(
        None, description="LogitClip the logits before the classification loss; null: off"
    )
    open_set: OpenSetSection | None = Field(
        None, description="paste open-set objects with ODNL / Open-sampling labels; null: off"
    )

    @field_validator("cls")
    @classmethod
    def _registered_cls(cls, v: str) -> str:
        heads = _cls_loss_heads()
        if heads is not None and v not in heads:
            raise ValueError(f"unknown classification loss {v!r}; allowed: {', '.join(sorted(heads))}")
        return v

    @field_validator("box")
    @classmethod
    def _registered_box(cls, v: str) -> str:
        names = _box_loss_names()
        if names is not None and v not in names:
            raise ValueError(f"unknown box loss {v!r}; allowed: {', '.join(names)}")
        return v

    @model_validator(mode="after")
    def _compatible(self) -> LossConfig:
        if self.logit_clip is not None and self.cls == "logitnorm":
            raise ValueError(
                "loss.logit_clip cannot be combined with loss.cls=logitnorm (both rescale the logits): "
                "drop one of them"
            )
        return self


class EvalConfig(Section):
    score_threshold: float = Field(0.001, ge=0, le=1, description="minimum score kept before NMS")
    iou_threshold: float = Field(0.6, gt=0, le=1, description="class-wise NMS IoU threshold")
    max_det: int = Field(300, ge=1, description="detections kept per image")


class BenchConfig(Section):
    backend: Literal["ort-cpu", "ort-cuda", "ort-trt"] = Field("ort-cpu", description="runtime timed by `ghostq run`")
    batches: list[Annotated[int, Field(ge=1)]] = Field([1, 4], min_length=1, description="batch sizes timed")
    warmup: int = Field(10, ge=0, description="untimed runs per batch size first")
    iters: int = Field(50, ge=1, description="timed runs per batch size and model")
    threads: int = Field(0, ge=0, description="runtime CPU threads; 0 = every core")
    samples: int = Field(4, ge=0, description="val images drawn with predictions for the report")


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
    def _head_matches_loss(self) -> Config:
        head, loss_heads = self.model.head, _cls_loss_heads()
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


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config with dotted overrides; relative data paths resolve from the CWD."""
    data = apply_overrides(load_yaml(path), list(overrides or []))
    return validate_sections(Config, data, str(path))  # type: ignore[return-value]


# Bounds on what aliases may expand to: json / pydantic copy every alias, so `&a [*b, *b, ...]` chains explode.
_MAX_YAML_NODES = 100_000
_MAX_YAML_DEPTH = 64


class StrictYAMLError(yaml.MarkedYAMLError):
    """YAML that PyYAML reads but a config must not hold: a duplicate key, a recursive or exploding alias."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, an alias inside its own anchor, and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_anchors: list[str | None] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose as PyYAML does, refusing an alias to an anchor whose node is still open (a cycle)."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise StrictYAMLError(
                    None, None, f"alias *{event.anchor} refers to its own anchor (a recursive structure)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        self._open_anchors.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.pop()

    def get_single_node(self) -> yaml.Node | None:
        """The document's node, refused when aliases expand it past the size or depth bounds."""
        node = super().get_single_node()
        if node is not None:
            size, depth = _expanded_shape(node, {})
            if size > _MAX_YAML_NODES or depth > _MAX_YAML_DEPTH:
                raise StrictYAMLError(
                    None, None,
                    f"the document expands to {size} values nested {depth} deep "
                    f"(limits: {_MAX_YAML_NODES} values, {_MAX_YAML_DEPTH} levels); check the aliases",
                    node.start_mark,
                )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key written twice (merge keys `<<` may still be overridden)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise StrictYAMLError(
                    None, None, f"duplicate key {key!r} (first written on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_shape(node: yaml.Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, depth) of a composed node once every alias is copied; memoised, so shared nodes cost once."""
    known = memo.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        children = [_expanded_shape(c, memo) for c in node.value]
    elif isinstance(node, yaml.MappingNode):
        children = [_expanded_shape(c, memo) for pair in node.value for c in pair]
    else:
        children = []
    shape = (1 + sum(c[0] for c in children), 1 + max((c[1] for c in children), default=0))
    memo[id(node)] = shape
    return shape


def parse_yaml(text: str) -> Any:
    """Parse one YAML document strictly (no duplicate keys, no recursive or exploding aliases)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader


def _yaml_problem(err: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """(1-based line or None, one-line description) of a PyYAML error."""
    mark = getattr(err, "problem_mark", None)
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(err.position, 0)) + 1
        char = ord(err.character) if isinstance(err.character, str) else err.character
        return line, f"control character {char:#x} is not allowed"
    problem = str(getattr(err, "problem", None) or err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and problem.startswith("but "):
        problem = f"{context}, {problem}"
    elif context:
        problem += f" ({context}" + (f" on line {context_mark.line + 1})" if context_mark is not None else ")")
    return (mark.line + 1 if mark is not None else None), " ".join(problem.split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable, binary, empty or malformed file is a one-line ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: a binary file (NUL bytes), not a YAML config")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); save it as UTF-8"
        ) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        line, problem = _yaml_problem(err, text)
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty: write at least one section (e.g. `run: {{name: demo}}`)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(
    data: dict[str, Any], overrides: list[str], source: str = "command line"
) -> dict[str, Any]:
    """Apply `a.b=c` overrides (value parsed as YAML) to a nested dict, returning a new dict."""
    out = json.loads(json.dumps(_str_keys(data), default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: override {item!r} is not of the form section.key=value")
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except StrictYAMLError as err:
            raise ConfigError(f"{source}: override {item!r}: {_yaml_problem(err, raw)[1]}") from None
        except (yaml.YAMLError, RecursionError):
            value = raw
        parts = key.strip().split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {'.'.join(parts[: depth + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _str_keys(node: Any) -> Any:
    """A copy with every mapping key as text (YAML allows dates, numbers or null as keys; JSON does not)."""
    if isinstance(node, dict):
        return {k if isinstance(k, str) else str(k): _str_keys(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_str_keys(v) for v in node]
    return node


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


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field annotation admits `kind` anywhere (itself, a union member, a Literal value, Any)."""
    if annotation is kind or annotation is Any:
        return True
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return any(type(a) is kind for a in args)
    return any(_accepts(a, kind) for a in args if not isinstance(a, (str, int, float)))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic section a field holds (directly or as `Section | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg) if get_origin(annotation) is not Literal else None
        if found is not None:
            return found
    return None


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


def _boolean_misuse(model: type[BaseModel], data: Any, prefix: str = "") -> dict[str, str]:
    """Dotted key -> problem for every true/false given to a field that is not a boolean (pydantic would
    silently read it as 1 / 0)."""
    problems: dict[str, str] = {}
    if not isinstance(data, dict):
        return problems
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue
        dotted = f"{prefix}{key}"
        section = _model_in(field.annotation)
        if section is not None and isinstance(value, dict):
            problems.update(_boolean_misuse(section, value, dotted + "."))
        elif not _accepts(field.annotation, bool) and _holds_bool(value):
            problems[dotted] = (
                f"{dotted}: a boolean is not allowed here (got {value!r}; YAML also reads yes/no/on/off as booleans)"
            )
    return problems


def _under(loc: tuple[Any, ...], dotted: str) -> bool:
    """Whether a pydantic error location is the dotted key or inside it."""
    key = ".".join(map(str, loc))
    return key == dotted or key.startswith(dotted + ".")


def _non_finite(node: Any, key: str) -> list[str]:
    """Dotted keys of every NaN / infinite float in a validated model (sections whose base allows them too)."""
    if isinstance(node, BaseModel):
        return [k for name in type(node).model_fields for k in _non_finite(getattr(node, name), f"{key}.{name}")]
    if isinstance(node, dict):
        return [k for name, v in node.items() for k in _non_finite(v, f"{key}.{name}")]
    if isinstance(node, (list, tuple)):
        return [k for i, v in enumerate(node) for k in _non_finite(v, f"{key}.{i}")]
    return [key] if isinstance(node, float) and not math.isfinite(node) else []


def validate_sections(model: type[BaseModel], data: dict[str, Any], source: str) -> BaseModel:
    """Validate a dict against a pydantic model, turning errors into one ConfigError.

    Stricter than pydantic's lax mode where lax hides mistakes: true/false is refused for numbers and text,
    and every float must be finite."""
    misuse = _boolean_misuse(model, data)
    try:
        result = model.model_validate(data)
    except ValidationError as err:
        # a key already reported as a misused boolean is not reported again in pydantic's words
        rest = [e for e in err.errors() if not any(_under(e["loc"], k) for k in misuse)]
        raise ConfigError(f"{source}: " + "; ".join([*misuse.values(), *_problems(rest)])) from None
    if misuse:
        raise ConfigError(f"{source}: " + "; ".join(misuse.values()))
    bad = [k.lstrip(".") for k in _non_finite(result, "")]
    if bad:
        raise ConfigError(f"{source}: " + "; ".join(f"{k}: Input should be a finite number" for k in bad))
    return result


def config_hash(cfg: BaseModel, sections: list[str] | None = None) -> str:
    """sha256 of the canonical JSON of the config (or of the named sections): a stage's identity."""
    dumped = cfg.model_dump(mode="json")
    if sections is not None:
        dumped = {k: dumped[k] for k in sections if k in dumped}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()

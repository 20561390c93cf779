"""The facts of a deployed model file: its ``ghostq.spec`` metadata, else the older ``ghostq.*`` keys, the graph's
input shape and output names, and explicit overrides; the export contract of the outputs.

Model facts come from the spec the export writes (``ghostq.spec``, :class:`ghostq.core.spec.ModelSpec`): classes,
input size and channels, head, decode thresholds. Files exported before it carry separate keys (``ghostq.classes``
JSON list, ``ghostq.input_size`` JSON [h, w] or ``ghostq.img_size``, ``ghostq.in_channels``, ``ghostq.head``);
``ghostq.nms`` ("none" / "onnx" / "trt" or JSON {"kind": ...}) says whether NMS is in the graph. An engine's
metadata is its sidecar ``<engine>.json`` (same keys) or the same-stem ``.onnx`` beside it. What is missing
comes from the input shape and the output names, or from ``overrides`` (which also win over metadata).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ghostq.core.detections import FLAT_NMS_OUTPUTS, NMS_OUTPUTS, RAW_OUTPUTS
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import ModelInfo
from ghostq.core.spec import METADATA_KEY, ModelSpec

META_PREFIX = "ghostq."


def spec_metadata(path: Path, meta: Mapping[str, str]) -> tuple[dict[str, str], ModelSpec | None]:
    """The ``ghostq.*`` entries, those the file's spec (when it has one) gives taken from it, and the spec."""
    extra = {k: str(v) for k, v in meta.items() if k.startswith(META_PREFIX)}
    if METADATA_KEY not in extra:
        return extra, None
    spec = ModelSpec.from_metadata(extra, str(path))
    return {
        **extra,
        META_PREFIX + "classes": json.dumps(list(spec.classes)),
        META_PREFIX + "img_size": str(spec.img_size),
        META_PREFIX + "in_channels": str(spec.in_channels),
        META_PREFIX + "head": spec.head,
    }, spec


def model_info(
    path: Path,
    meta: Mapping[str, str],
    input_name: str,
    input_shape: tuple[Any, ...],
    output_names: tuple[str, ...],
    overrides: Mapping[str, Any] | None = None,
    output_shapes: Sequence[Sequence[Any] | None] | None = None,
) -> ModelInfo:
    """Merge metadata (``ghostq.*`` keys), the input's static shape and explicit overrides into a ModelInfo;
    sizes that contradict the graph's fixed input shape, and (given ``output_shapes``) outputs outside the
    export contract, are one-line errors here rather than a failed run later."""
    ov = dict(overrides or {})
    extra, spec = spec_metadata(path, meta)
    dims = [d if isinstance(d, int) and d > 0 else None for d in input_shape]
    if len(dims) != 4:
        raise GhostqError(f"{path}: input {input_name!r} has shape {list(input_shape)}, expected [B, C, S, S]")
    if dims[2] is not None and dims[3] is not None and dims[2] != dims[3]:
        raise GhostqError(f"{path}: input {dims[2]}x{dims[3]} is not square; ghostq letterboxes to squares")
    if output_shapes is not None:
        check_outputs(path, output_names, output_shapes)

    def pick(key: str, from_shape: Any, cast: Any) -> Any:
        if ov.get(key) is not None:
            return cast(ov[key])
        if META_PREFIX + key in extra:
            try:
                return cast(extra[META_PREFIX + key])
            except (ValueError, TypeError, json.JSONDecodeError) as err:
                raise GhostqError(
                    f"{path}: metadata {META_PREFIX}{key}={extra[META_PREFIX + key]!r} is invalid ({err})"
                ) from None
        return from_shape

    from_shape = dims[2] if dims[2] == dims[3] else None
    if META_PREFIX + "img_size" not in extra and META_PREFIX + "input_size" in extra:
        extra_size = extra[META_PREFIX + "input_size"]
        try:
            hw = json.loads(extra_size)
            hw = [hw, hw] if isinstance(hw, int) else [int(v) for v in hw]
        except (ValueError, TypeError) as err:
            raise GhostqError(f"{path}: metadata {META_PREFIX}input_size={extra_size!r} is invalid ({err})") from None
        if len(hw) != 2 or hw[0] != hw[1]:
            raise GhostqError(f"{path}: input {hw[0]}x{hw[1]} is not square; ghostq letterboxes to squares")
        from_shape = hw[0]
    img_size = pick("img_size", from_shape, int)
    in_channels = pick("in_channels", dims[1], int)
    if img_size is None or in_channels is None:
        raise GhostqError(
            f"{path}: input size unknown (no {META_PREFIX}img_size / {META_PREFIX}in_channels "
            "metadata, dynamic input shape): pass --img-size / --channels"
        )

    def source(key: str, flag: str) -> str:
        if ov.get(key) is not None:
            return f"the requested {flag} {ov[key]}"
        if META_PREFIX + key in extra:
            return f"metadata {META_PREFIX}{key}={extra[META_PREFIX + key]!r}"
        if key == "img_size" and META_PREFIX + "input_size" in extra:
            return f"metadata {META_PREFIX}input_size={extra[META_PREFIX + 'input_size']!r}"
        return f"the input shape {list(input_shape)}"

    for key, flag, value in (("img_size", "--img-size", img_size), ("in_channels", "--channels", in_channels)):
        if value < 1:
            raise GhostqError(f"{path}: {source(key, flag)} is not a positive {key}")
    if dims[2] is not None and img_size != dims[2]:
        raise GhostqError(
            f"{path}: input {input_name!r} is fixed at {dims[2]}x{dims[2]}, {source('img_size', '--img-size')} "
            f"does not match; the model's size is {dims[2]}"
        )
    if dims[1] is not None and in_channels != dims[1]:
        raise GhostqError(
            f"{path}: input {input_name!r} is fixed at {dims[1]} channels, {source('in_channels', '--channels')} "
            f"does not match; the model takes {dims[1]} channels"
        )
    classes = pick("classes", (), lambda v: tuple(str(c) for c in (json.loads(v) if isinstance(v, str) else v)))
    nms = pick("nms", None, _nms_kind)
    if nms is None:  # from the output names
        nms = "trt" if all(n in output_names for n in NMS_OUTPUTS) else "none"
        nms = "onnx" if all(n in output_names for n in FLAT_NMS_OUTPUTS) else nms
    if nms not in ("none", "onnx", "trt"):
        raise GhostqError(f"{path}: {META_PREFIX}nms must be none, onnx or trt, got {nms!r}")
    return ModelInfo(
        path=path,
        img_size=img_size,
        in_channels=in_channels,
        classes=classes,
        head=pick("head", "unknown", str),
        nms=nms,
        input_name=input_name,
        output_names=output_names,
        batch=dims[0],
        extra=extra,
        spec=spec,
    )


def _nms_kind(value: Any) -> str:
    """``ghostq.nms``: a plain kind ("none" / "onnx" / "trt") or a JSON object with its "kind"."""
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    if isinstance(value, dict):
        value = value.get("kind")
    return "none" if value in (None, "null", "") else str(value)


# the export contract: each output's layout (its rank; a 4 is a fixed last dimension)
OUTPUT_LAYOUTS: dict[str, tuple[str, ...]] = {
    "scores": ("B", "N", "C"),
    "boxes": ("B", "N", "4"),
    "num_detections": ("B", "1"),
    "detection_boxes": ("B", "K", "4"),
    "detection_scores": ("B", "K"),
    "detection_classes": ("B", "K"),
    "det_batch": ("M",),
    "det_boxes": ("M", "4"),
    "det_scores": ("M",),
    "det_labels": ("M",),
}


def check_outputs(path: Path, names: Sequence[str], shapes: Sequence[Sequence[Any] | None]) -> None:
    """The graph's outputs must be one of the three forms of the export contract, each of its rank (and 4
    box coordinates where the last dimension is fixed); else a one-line error naming the output."""
    forms = (RAW_OUTPUTS, NMS_OUTPUTS, FLAT_NMS_OUTPUTS)
    form = next((f for f in forms if all(n in names for n in f)), None)
    if form is None:
        raise GhostqError(
            f"{path}: outputs {list(names)} are none of {', '.join(str(list(f)) for f in forms)} "
            "(the ghostq export contract)"
        )
    for name in form:
        shape = shapes[list(names).index(name)]
        if shape is None:  # rank unknown to the runtime: checked when decoding
            continue
        layout = OUTPUT_LAYOUTS[name]
        want = "[" + ", ".join(layout) + "]"
        if len(shape) != len(layout):
            raise GhostqError(f"{path}: output {name!r} has rank {len(shape)} (shape {list(shape)}), expected {want}")
        last = shape[-1] if shape else None
        if layout[-1] == "4" and isinstance(last, int) and last > 0 and last != 4:
            raise GhostqError(f"{path}: output {name!r} has shape {list(shape)}, expected {want} (x1 y1 x2 y2)")


def sidecar_meta(engine: Path) -> dict[str, str]:
    """ghostq.* metadata of an engine: ``<engine>.json`` (a JSON object of the same keys), else the same-stem
    ``.onnx`` beside it (:func:`onnx_metadata`), else nothing."""
    side = engine.with_name(engine.name + ".json")
    if side.is_file():
        try:
            data = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise GhostqError(f"{side}: not a JSON object of ghostq.* metadata ({err})") from None
        if not isinstance(data, dict):
            raise GhostqError(f"{side}: not a JSON object of ghostq.* metadata")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    onnx_path = engine.with_suffix(".onnx")
    if onnx_path.is_file():
        return onnx_metadata(onnx_path)
    return {}


def onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file without running it: through the onnx package when installed (it also
    reads graphs that ONNX Runtime cannot load, such as EfficientNMS_TRT ones), else an ONNX Runtime session;
    empty when neither can read it (the metadata is optional: shapes and overrides still apply)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in model.metadata_props}
    except Exception:  # noqa: BLE001 - no onnx package, or it cannot read the file: try onnxruntime
        pass
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        return dict(sess.get_modelmeta().custom_metadata_map)
    except Exception:  # noqa: BLE001
        return {}

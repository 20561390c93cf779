"""A lint of TensorRT's explicit-quantization rules for Q/DQ ONNX graphs; runs without TensorRT.

``lint_qdq(model) -> list[Violation]``; every violation names its rule, the node and what is wrong. Rules
(DESIGN §6; onnx-tensorrt's operator notes, TensorRT's developer guide and NVIDIA's own quantizer):

- ``clip-between-q-dq``: a Clip on the INT8 tensor between QuantizeLinear (or an integer initializer) and
  DequantizeLinear (brevitas' QCDQ form); the parser rejects it: fold the clip into the INT8 values.
- ``zero-point-nonzero``: TensorRT quantization is symmetric; every zero point must be 0.
- ``uint8``: UINT8 zero points (or none, which means UINT8) where INT8 is required: anywhere but a network
  input or output.
- ``scale-not-positive``: scales must be finite and > 0.
- ``weight-per-tensor``: weights (constant input of a Conv / ConvTranspose / Gemm / MatMul) quantized with
  one scale instead of one per output channel (axis 0).
- ``weight-axis``: per-channel weight scales along another axis than the output channels.
- ``activation-per-channel``: activations must be quantized per tensor (one scale).
- ``qdq-between-conv-and-activation``: Q/DQ between a conv (or its BatchNorm) and its activation: it
  prevents the conv + activation fusion; quantize the activation's output (the next conv's input) instead.
- ``qdq-on-conv-output``: any other Q/DQ on a conv's (or its BatchNorm's) output that is not the input
  quantizer of a next weighted layer (a conv with no activation feeding a conv): a float round trip that no
  INT8 layer reads, e.g. on a prediction conv's output.
- ``concat-scale-mismatch``: Concat inputs (and the Q on its output) need one shared scale, else TensorRT
  requantizes each input instead of concatenating INT8 in place.
- ``maxpool-scale-mismatch``, ``resize-scale-mismatch``: a MaxPool / Resize quantized on both sides (wherever
  it leads, not only into a Concat) needs one scale on its input and output (SPPF's MaxPool chain, upsampling).
- ``add-skip-unquantized``: an Add reads a float tensor that also feeds a QuantizeLinear (the residual skip
  input beside the next conv's Q): read that Q's DequantizeLinear output instead, so TensorRT fuses the Add.
- ``requant-round-trip``: a DequantizeLinear feeding a QuantizeLinear directly (INT8 -> float -> INT8).
- ``opset-per-channel``: per-channel Q/DQ needs opset >= 13.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ghostq.core.errors import GhostqError

RULES = (
    "clip-between-q-dq",
    "zero-point-nonzero",
    "uint8",
    "scale-not-positive",
    "weight-per-tensor",
    "weight-axis",
    "activation-per-channel",
    "qdq-between-conv-and-activation",
    "qdq-on-conv-output",
    "concat-scale-mismatch",
    "maxpool-scale-mismatch",
    "resize-scale-mismatch",
    "add-skip-unquantized",
    "requant-round-trip",
    "opset-per-channel",
)
_Q, _DQ = "QuantizeLinear", "DequantizeLinear"
_WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # op -> index of the weight input
_ACTIVATIONS = {"Relu", "LeakyRelu", "Sigmoid", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
                "Tanh", "PRelu", "Gelu", "Mish"}


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``rule`` (one of RULES), ``node`` (name) and ``message``."""

    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.nodes = list(g.node)
        self.names = {id(n): n.name or f"{n.op_type}#{i}" for i, n in enumerate(self.nodes)}
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
        self.inputs = {i.name for i in g.input} - set(self.consts)
        self.outputs = {o.name for o in g.output}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def name(self, n: onnx.NodeProto) -> str:
        return self.names[id(n)]

    def const(self, tensor: str) -> np.ndarray | None:
        return self.consts.get(tensor)

    def is_int_const(self, tensor: str) -> bool:
        c = self.const(tensor)
        return c is not None and np.issubdtype(c.dtype, np.integer)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _is_weight_qdq(g: _Graph, node: onnx.NodeProto) -> bool:
    """A Q/DQ of constant data (a weight) rather than an activation."""
    if g.const(node.input[0]) is not None:
        return True
    prod = g.producer.get(node.input[0])  # DQ(Q(W)) or DQ(Clip(W_int))
    return prod is not None and prod.op_type in (_Q, "Clip") and g.const(prod.input[0]) is not None


def _scale_of(g: _Graph, node: onnx.NodeProto) -> np.ndarray | None:
    return g.const(node.input[1]) if len(node.input) > 1 else None


def lint_qdq(model: onnx.ModelProto) -> list[Violation]:
    """Every violation of TensorRT's explicit-quantization rules in ``model`` (empty list: clean)."""
    g = _Graph(model)
    out: list[Violation] = []
    for n in g.nodes:
        if n.op_type in (_Q, _DQ):
            out += _check_qdq(g, n)
        elif n.op_type == "Clip":
            out += _check_clip(g, n)
        elif n.op_type == "Concat":
            out += _check_concat(g, n)
        elif n.op_type in ("MaxPool", "Resize"):
            out += _check_passthrough(g, n)
        elif n.op_type == "Add":
            out += _check_add(g, n)
        if n.op_type in _WEIGHTED:
            out += _check_weight(g, n)
        if n.op_type == _DQ:
            for c in g.consumers.get(n.output[0], []):
                if c.op_type == _Q:
                    out.append(Violation("requant-round-trip", g.name(c),
                                         f"quantizes the output of DequantizeLinear {g.name(n)} again "
                                         "(INT8 -> float -> INT8); keep the INT8 tensor or share one Q/DQ"))
        if n.op_type in ("Conv", "BatchNormalization"):
            out += _check_conv_output(g, n)
    return out


def _check_qdq(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    out = []
    name = g.name(n)
    scale = _scale_of(g, n)
    if scale is not None and (not np.all(np.isfinite(scale)) or np.any(scale <= 0)):
        out.append(Violation("scale-not-positive", name, f"scale {scale.ravel()[:4].tolist()} is not finite > 0"))
    zp = g.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    int_side = n.output[0] if n.op_type == _Q else n.input[0]
    io_tensor = int_side in g.inputs or int_side in g.outputs
    if zp is None and (len(n.input) < 3 or not n.input[2]):
        if not io_tensor:
            out.append(Violation("uint8", name, "no zero point: the quantized type defaults to UINT8; "
                                 "give an INT8 zero point 0"))
    elif zp is not None:
        if zp.dtype == np.uint8 and not io_tensor:
            out.append(Violation("uint8", name, "UINT8 quantization; TensorRT needs INT8 (UINT8 only as a "
                                 "network input or output)"))
        if np.any(zp != 0):
            out.append(Violation("zero-point-nonzero", name,
                                 f"zero point {zp.ravel()[:4].tolist()}; TensorRT needs 0 (symmetric)"))
    per_channel = scale is not None and scale.size > 1
    weight = _is_weight_qdq(g, n)
    if per_channel and not weight:
        out.append(Violation("activation-per-channel", name,
                             f"activation quantized with {scale.size} scales; use one per tensor"))
    if per_channel and g.opset < 13:
        out.append(Violation("opset-per-channel", name, f"per-channel Q/DQ needs opset >= 13, model has {g.opset}"))
    return out


def _check_clip(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    prod = g.producer.get(n.input[0])
    from_int = (prod is not None and prod.op_type == _Q) or g.is_int_const(n.input[0])
    to_dq = any(c.op_type == _DQ for c in g.consumers.get(n.output[0], []))
    if from_int or to_dq:
        return [Violation("clip-between-q-dq", g.name(n),
                          "Clip on the INT8 tensor between Q and DQ; TensorRT's parser rejects it: fold the "
                          "clip into the INT8 weights / use a full-range activation quantizer")]
    return []


def _check_concat(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    scales = []
    for i in n.input:
        prod = g.producer.get(i)
        if prod is not None and prod.op_type == _DQ:
            s = _scale_of(g, prod)
            if s is not None:
                scales.append((g.name(prod), s))
    for c in g.consumers.get(n.output[0], []):
        if c.op_type == _Q and _scale_of(g, c) is not None:
            scales.append((g.name(c), _scale_of(g, c)))
    if len(scales) > 1:
        ref = scales[0][1]
        diff = [nm for nm, s in scales[1:] if s.shape != ref.shape or not np.allclose(s, ref, rtol=1e-6, atol=0)]
        if diff:
            return [Violation("concat-scale-mismatch", g.name(n),
                              f"inputs/output quantized with different scales ({scales[0][0]} vs "
                              f"{', '.join(diff)}); share one scale")]
    return []


def _check_passthrough(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    """MaxPool / Resize: the scale its input was quantized with equals the one its output is quantized with."""
    x = n.input[0]
    prod = g.producer.get(x)
    sources = [prod] if prod is not None and prod.op_type == _DQ else [c for c in g.consumers.get(x, [])
                                                                       if c.op_type == _Q]
    before = [(g.name(d), s) for d in sources if (s := _scale_of(g, d)) is not None]
    after = [(g.name(q), s) for q in g.consumers.get(n.output[0], [])
             if q.op_type == _Q and (s := _scale_of(g, q)) is not None]
    if not before or not after:
        return []
    ref_name, ref = before[0]
    diff = [nm for nm, s in after if s.shape != ref.shape or not np.allclose(s, ref, rtol=1e-6, atol=0)]
    if diff:
        return [Violation(f"{n.op_type.lower()}-scale-mismatch", g.name(n),
                          f"input quantized with the scale of {ref_name}, output by {', '.join(diff)} with "
                          "another; share one scale so it runs in INT8 in place")]
    return []


def _check_add(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    """Add: no input may be the float twin of a tensor that is also quantized (a residual skip input)."""
    out = []
    for i in dict.fromkeys(x for x in n.input if x):
        qs = [c for c in g.consumers.get(i, []) if c.op_type == _Q]
        if qs:
            out.append(Violation("add-skip-unquantized", g.name(n),
                                 f"reads {i!r} in float while {g.name(qs[0])} quantizes it; read its "
                                 "DequantizeLinear output (Q/DQ on the skip input, same scale) so TensorRT fuses"))
    return out


def _check_weight(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    idx = _WEIGHTED[n.op_type]
    if len(n.input) <= idx:
        return []
    dq = g.producer.get(n.input[idx])
    if dq is None or dq.op_type != _DQ or not _is_weight_qdq(g, dq):
        return []
    scale = _scale_of(g, dq)
    w = g.const(dq.input[0])
    if w is None:
        prod = g.producer.get(dq.input[0])
        w = g.const(prod.input[0]) if prod is not None else None
    if scale is None or w is None or w.ndim < 2:
        return []
    channels = w.shape[1] if n.op_type in ("ConvTranspose", "MatMul") else w.shape[0]
    if scale.size == 1 and channels > 1:
        return [Violation("weight-per-tensor", g.name(dq),
                          f"weights of {g.name(n)} quantized per tensor; TensorRT fuses per output channel "
                          f"(axis 0, {channels} scales)")]
    want = 1 if n.op_type in ("ConvTranspose", "MatMul") else 0
    if scale.size > 1 and _attr(dq, "axis", 1) != want:
        return [Violation("weight-axis", g.name(dq),
                          f"per-channel weight scales along axis {_attr(dq, 'axis', 1)}; use axis {want}")]
    return []


def _check_conv_output(g: _Graph, n: onnx.NodeProto) -> list[Violation]:
    """Q/DQ on a conv's (or BN's) output: legal only as the input quantizer of a next weighted layer."""
    out = []
    for q in g.consumers.get(n.output[0], []):
        if q.op_type != _Q:
            continue
        dq_outs = [dq.output[0] for dq in g.consumers.get(q.output[0], []) if dq.op_type == _DQ]
        readers = [c for t in dq_outs for c in g.consumers.get(t, [])]
        act = next((c for c in readers if c.op_type in _ACTIVATIONS or c.op_type == "BatchNormalization"), None)
        if act is not None:
            out.append(Violation("qdq-between-conv-and-activation", g.name(q),
                                 f"Q/DQ between {g.name(n)} and {act.op_type} {g.name(act)} blocks the fusion; "
                                 "quantize the activation's output instead"))
            continue
        if not any(c.op_type in _WEIGHTED and c.input[0] in dq_outs for c in readers):
            what = f"{readers[0].op_type} {g.name(readers[0])}" if readers else "nothing"
            out.append(Violation("qdq-on-conv-output", g.name(q),
                                 f"Q/DQ on the output of {g.name(n)} (read by {what}): a float round trip that "
                                 "blocks the fusion; quantize only the next conv's input"))
    return out


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file; a missing file or one that is not ONNX is a one-line GhostqError."""
    path = Path(path)
    if not path.is_file():
        raise GhostqError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf raises DecodeError and friends
        raise GhostqError(f"{path}: not an ONNX model ({type(err).__name__}: {str(err)[:120]})") from None
    if not model.graph.node:
        raise GhostqError(f"{path}: not an ONNX model (no graph nodes)")
    return model


def lint_file(path: str | Path) -> list[Violation]:
    """``lint_qdq`` of an ONNX file."""
    return lint_qdq(load_onnx(path))

"""INT8 Q/DQ ONNX from an FP32 ONNX of the model and per-conv scales given as plain data.

``write_qdq(fp32, spec, form)`` rewrites the FP32 graph (BatchNorm already folded into the convs by the
exporter) so that TensorRT builds it in explicit-quantization mode (``form="trt"``, ``model_int8.onnx``) or
ONNX Runtime runs it with its fast u8s8 integer kernels (``form="cpu"``, ``model_int8_cpu.onnx``).

``spec`` maps a conv's module name (``backbone.stem.conv``: the ONNX node ``/model/backbone/stem/conv/Conv``)
to a :class:`ConvQuant`: per-output-channel weight scales, optionally the integer weights themselves (for
sub-8-bit layers: INT8 values on the coarser grid, e.g. [-7, 7] for 4 bits), and the per-tensor scale of the
conv's input activation. Convs not in ``spec`` stay in floating point (e.g. the prediction convs GHOST keeps
in FP). Any source fills ``spec``: :func:`ptq_minmax` (min-max calibration of the FP32 ONNX on a few batches,
the fallback) or the compressed checkpoint's learned scales.

Placement (DESIGN §6, NVIDIA's QAT guidance for detectors):
- weights: INT8 initializer + DequantizeLinear (axis 0, zero point 0); nothing to clip (values are in range);
- activations: QuantizeLinear + DequantizeLinear on each quantized conv's input, INT8 zero point 0, one scale
  per tensor; nothing between a conv and its activation, nothing on a conv's output;
- Concat, MaxPool and Resize are transparent: a quantized tensor made by one of them pulls its inputs into
  the same group, every tensor of a group gets a Q/DQ with one shared scale (Concat inputs and output, SPPF's
  MaxPool chain, a Resize feeding a Concat), so they run in INT8 with no requantization;
- a group's scale is the largest given scale of its convs' inputs (it covers all of their ranges);
- a residual Add reads its skip input (a tensor that already has a Q/DQ, e.g. the next conv's input) through
  that Q/DQ, with its scale: no float copy of a quantized tensor is left (NVIDIA: quantize the skip input only).
Names and order of the added nodes and initializers follow the graph, so an export is the same byte for byte.

The CPU form uses the same weights and the same groups with UINT8 activations: a group that is non-negative
(ReLU outputs and what MaxPool / Resize / Concat make of them, or a calibrated minimum >= 0) gets scale
``127 s / 255`` and zero point 0 (one-sided, twice the resolution); any other group scale ``s`` and zero point
128 (the same grid as INT8).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ghostq.export.qdq_graph import (  # noqa: F401 (drop_relu_before_unsigned_quantize re-exported)
    MIN_SCALE,
    drop_relu_before_unsigned_quantize,
    quantize_conv_outputs,
    safe_name,
    toposort,
    unique_name,
)
from ghostq.export.scale_groups import _TRANSPARENT, _groups, conv_module_name, conv_nodes  # noqa: F401 (re-exported)

# CPU form: also Split and residual Add, so every quantized conv's (ReLU) output meets a QuantizeLinear and
# ONNX Runtime fuses DQ -> Conv -> Relu -> Q into QLinearConv (a conv whose output reaches a Q only behind a
# Split or an Add stays a float conv); the Add inputs share the output's scale, which covers both of them.
_TRANSPARENT_CPU = _TRANSPARENT | {"Split", "Add"}
_NONNEG_OPS = {"Relu", "Sigmoid", "Softplus"}
_MOVES = {"MaxPool", "Resize", "Concat", "Split", "Slice", "Reshape", "Transpose", "Flatten", "Identity"}


@dataclass
class ConvQuant:
    """Quantization of one conv: weight scales [C_out], input scale (per tensor), optional integer weights."""

    weight_scale: np.ndarray  # [C_out] > 0: weight = weight_int * weight_scale[c]
    input_scale: float  # > 0: the conv's input x ~ round(x / s) * s, INT8 full range
    weight_int: np.ndarray | None = None  # integer weights (shape of the conv weight); None: round(W / s)
    weight_bits: int = 8  # grid of the weights: |weight_int| <= 2^(bits-1) - 1
    input_min: float | None = None  # observed minimum of the input (CPU form: >= 0 -> one-sided UINT8)
    output_range: tuple[float, float] | None = None  # CPU form only: (min, max) of the output -> its own Q/DQ

    def __post_init__(self) -> None:
        self.weight_scale = np.asarray(self.weight_scale, np.float32).reshape(-1)
        if not np.all(np.isfinite(self.weight_scale)) or np.any(self.weight_scale <= 0):
            raise ValueError("weight_scale must be finite and > 0")
        if not (np.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"input_scale must be finite and > 0, got {self.input_scale}")
        if not 2 <= self.weight_bits <= 8:
            raise ValueError(f"weight_bits must be 2..8, got {self.weight_bits}")
        if self.output_range is not None:
            lo, hi = (float(v) for v in self.output_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(f"output_range must be finite (min, max) with min <= max, got {self.output_range}")
            self.output_range = (lo, hi)


# ------------------------------------------------------------------------------------------- calibration
def activation_ranges(
    model: onnx.ModelProto, tensors: Iterable[str], batches: Iterable[np.ndarray], threads: int = 1
) -> dict[str, tuple[float, float]]:
    """(min, max) of each named tensor over the batches, running ``model`` (FP32) in ONNX Runtime."""
    tensors = list(dict.fromkeys(tensors))
    lo = dict.fromkeys(tensors, np.inf)
    hi = dict.fromkeys(tensors, -np.inf)
    for values in tensor_values(model, tensors, batches, threads):
        for t in tensors:
            lo[t] = min(lo[t], float(values[t].min()))
            hi[t] = max(hi[t], float(values[t].max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def tensor_values(
    model: onnx.ModelProto, tensors: Iterable[str], batches: Iterable[np.ndarray], threads: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Per batch, the values of the named tensors of ``model`` (FP32, unoptimized) in ONNX Runtime."""
    import onnxruntime as ort

    tensors = list(dict.fromkeys(tensors))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output} | {i.name for i in m.graph.input}
    for t in tensors:
        if t not in known:
            m.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    seen = False
    for batch in batches:
        seen = True
        batch = np.ascontiguousarray(batch, np.float32)
        values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {input_name: batch}), strict=True))
        values[input_name] = batch
        yield {t: values[t] for t in tensors}
    if not seen:
        raise ValueError("activation_ranges: no calibration batches")


def ptq_minmax(
    model: onnx.ModelProto,
    batches: Iterable[np.ndarray],
    convs: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    threads: int = 1,
) -> dict[str, ConvQuant]:
    """Min-max PTQ of an FP32 ONNX: per-channel max|W| / 127, per-tensor max|x| / 127 of each conv input.

    ``convs``: module names to quantize (None: every conv); ``skip``: names left in FP.
    """
    nodes = conv_nodes(model)
    names = [n for n in (list(convs) if convs is not None else list(nodes)) if n not in set(skip)]
    missing = [n for n in names if n not in nodes]
    if missing:
        raise ValueError(f"no Conv node for {missing[:5]}")
    inits = {t.name: t for t in model.graph.initializer}
    ranges = activation_ranges(model, [nodes[n].input[0] for n in names], batches, threads)
    spec = {}
    for n in names:
        node = nodes[n]
        w = numpy_helper.to_array(inits[node.input[1]])
        w_amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        lo, hi = ranges[node.input[0]]
        amax = max(abs(lo), abs(hi))
        spec[n] = ConvQuant(
            weight_scale=np.maximum(w_amax / 127.0, MIN_SCALE),
            input_scale=max(amax / 127.0, MIN_SCALE),
            input_min=lo,
        )
    return spec


# ------------------------------------------------------------------------------------------- the writer
def _nonnegative(model: onnx.ModelProto, tensor: str, known_min: dict[str, float]) -> bool:
    """True when ``tensor`` cannot be negative: a calibrated minimum >= 0, or made by ReLU / Sigmoid /
    Softplus and data movement, Add or Max of such tensors."""
    producer = {o: n for n in model.graph.node for o in n.output}
    memo: dict[str, bool] = {}

    def rec(t: str) -> bool:
        if t in known_min:
            return known_min[t] >= 0
        if t in memo:
            return memo[t]
        memo[t] = False  # provisional (an ONNX graph has no cycles)
        n = producer.get(t)
        if n is None:
            result = False
        elif n.op_type in _NONNEG_OPS:
            result = True
        elif n.op_type in _MOVES:
            data = [i for i in n.input if i] if n.op_type == "Concat" else [n.input[0]]
            result = all(rec(i) for i in data)
        elif n.op_type in ("Add", "Max"):  # sums / maxima of non-negative tensors (residuals of ReLU blocks)
            result = all(rec(i) for i in n.input if i)
        else:
            result = False
        memo[t] = result
        return result

    return rec(tensor)


def write_qdq(
    fp32: onnx.ModelProto, spec: dict[str, ConvQuant], form: str = "trt", share_scales: bool = True
) -> onnx.ModelProto:
    """The Q/DQ model (``form="trt"``: signed INT8, zero points 0; ``"cpu"``: UINT8 activations, INT8 weights).

    See the module docstring for the placement. ``share_scales=False`` quantizes each conv's input with its own
    scale and nothing else (no groups: what a model quantized per conv computes, at the cost of FP Concats).
    Raises ValueError for a name in ``spec`` with no Conv node or
    integer weights off their grid.
    """
    if form not in ("trt", "cpu"):
        raise ValueError(f"form must be 'trt' or 'cpu', got {form!r}")
    m = onnx.ModelProto()
    m.CopyFrom(fp32)
    g = m.graph
    for k, n in enumerate(g.node):  # nodes are tracked by name (protobuf wrappers have no stable identity)
        if not n.name:
            n.name = f"{n.op_type}_{k}"
    if len({n.name for n in g.node}) != len(g.node):
        raise ValueError("node names must be unique to place Q/DQ nodes")
    nodes = conv_nodes(m)
    missing = sorted(set(spec) - set(nodes))
    if missing:
        raise ValueError(f"quantization spec names convs not in the graph: {missing[:5]}")
    inits = {t.name: t for t in g.initializer}
    new_inits: list[TensorProto] = []
    new_nodes: list[tuple[int, onnx.NodeProto]] = []  # (insert before this node index, node)
    order = {n.name: k for k, n in enumerate(g.node)}

    # weights: INT8 initializer + DequantizeLinear(axis 0)
    for name, q in spec.items():
        node = nodes[name]
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if q.weight_scale.size != w.shape[0]:
            raise ValueError(f"{name}: {q.weight_scale.size} weight scales for {w.shape[0]} output channels")
        qmax = 2 ** (q.weight_bits - 1) - 1
        if q.weight_int is None:
            wi = np.clip(np.round(w / q.weight_scale.reshape(-1, 1, 1, 1)), -qmax, qmax)
        else:
            wi = np.asarray(q.weight_int)
            if wi.shape != w.shape:
                raise ValueError(f"{name}: integer weights of shape {wi.shape}, the conv has {w.shape}")
            if np.any(np.abs(wi) > qmax + 1) or np.any(wi != np.round(wi)):
                raise ValueError(f"{name}: integer weights off the {q.weight_bits}-bit grid")
        base = f"{name}.weight"
        new_inits += [
            numpy_helper.from_array(wi.astype(np.int8), f"{base}_int8"),
            numpy_helper.from_array(q.weight_scale.astype(np.float32), f"{base}_scale"),
            numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{base}_zero_point"),
        ]
        dq = helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_scale", f"{base}_zero_point"],
                              [f"{base}_dq"], axis=0, name=f"{base}_DequantizeLinear")
        new_nodes.append((order[node.name], dq))
        old = node.input[1]
        node.input[1] = f"{base}_dq"
        if not any(old in n.input for n in g.node):
            g.initializer.remove(inits[old])

    # activations: one Q/DQ per tensor of each group, one scale per group (or per conv: share_scales=False)
    known_min = {nodes[n].input[0]: spec[n].input_min for n in spec if spec[n].input_min is not None}
    placements: list[tuple[list[str], float, set[str]]] = []  # (tensors, scale, names of the nodes to rewire)
    producer_index = {o: k for k, n in enumerate(g.node) for o in n.output}

    def position(t: str) -> tuple[int, str]:  # graph order, so names and order never depend on set order
        return producer_index.get(t, -1), t

    if share_scales:
        group_of, inside = _groups(m, {nodes[n].input[0] for n in spec},
                                   _TRANSPARENT if form == "trt" else _TRANSPARENT_CPU)
        scale: dict[str, float] = {}
        for name, q in spec.items():  # a group's scale covers every conv reading it
            r = group_of[nodes[name].input[0]]
            scale[r] = max(scale.get(r, 0.0), float(q.input_scale))
        members: dict[str, list[str]] = {}
        for t, r in group_of.items():
            members.setdefault(r, []).append(t)
        consumers = {nodes[n].name for n in spec} | inside
        ordered = sorted((sorted(ts, key=position) for ts in members.values()), key=lambda ts: position(ts[0]))
        placements = [(tensors, scale[group_of[tensors[0]]], consumers) for tensors in ordered]
    else:
        for name, q in spec.items():
            placements.append(([nodes[name].input[0]], float(q.input_scale), {nodes[name].name}))
    # signs are read from the graph as exported, before any consumer is rewired to a DequantizeLinear output
    one_sided = [form == "cpu" and all(_nonnegative(m, t, known_min) for t in p[0]) for p in placements]
    used: set[str] = set()
    dequantized: dict[str, str] = {}  # tensor -> the output of its (first) DequantizeLinear
    for (tensors, s, consumers), nonneg in zip(placements, one_sided, strict=True):
        if form == "trt":
            qs, zp = s, np.array(0, np.int8)
        elif nonneg:
            qs, zp = 127.0 * s / 255.0, np.array(0, np.uint8)
        else:
            qs, zp = s, np.array(128, np.uint8)
        tag = unique_name(safe_name(tensors[0]), used)
        new_inits += [numpy_helper.from_array(np.array(qs, np.float32), f"{tag}_act_scale"),
                      numpy_helper.from_array(zp, f"{tag}_act_zero_point")]
        for t in tensors:
            tt = unique_name(safe_name(t), used) if t != tensors[0] else tag
            tq, tdq = f"{tt}_q", f"{tt}_dq"
            dequantized.setdefault(t, tdq)
            at = producer_index.get(t, -1) + 1
            new_nodes.append((at, helper.make_node("QuantizeLinear", [t, f"{tag}_act_scale", f"{tag}_act_zero_point"],
                                                   [tq], name=f"{tt}_QuantizeLinear")))
            new_nodes.append((at, helper.make_node("DequantizeLinear", [tq, f"{tag}_act_scale",
                                                                         f"{tag}_act_zero_point"],
                                                   [tdq], name=f"{tt}_DequantizeLinear")))
            for n in g.node:
                if n.name in consumers:
                    for k, i in enumerate(n.input):
                        if i == t and (n.op_type != "Conv" or k == 0):
                            n.input[k] = tdq

    if form == "cpu":
        quantize_conv_outputs(g, spec, nodes, new_inits, new_nodes, producer_index, used)
    elif any(q.output_range is not None for q in spec.values()):
        raise ValueError("the TensorRT form quantizes no conv output (output_range is for the CPU form)")

    # a residual Add reads its skip input through the Q/DQ already placed on that tensor (same scale): reading
    # the float tensor beside its QuantizeLinear is a round trip TensorRT cannot fuse (DESIGN §6)
    for n in g.node:
        if n.op_type == "Add":
            for k, i in enumerate(n.input):
                if i in dequantized:
                    n.input[k] = dequantized[i]

    g.initializer.extend(new_inits)
    nodes_out = list(g.node)
    for at, node in sorted(new_nodes, key=lambda p: p[0], reverse=True):
        nodes_out.insert(at, node)
    del g.node[:]
    g.node.extend(toposort(nodes_out, {i.name for i in g.input} | {t.name for t in g.initializer}))
    if form == "cpu":
        drop_relu_before_unsigned_quantize(m)
    onnx.checker.check_model(m)
    return m

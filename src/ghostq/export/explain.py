"""What ONNX Runtime actually runs as integer and as float in an ONNX file (`ghostq export --explain FILE`).

A Q/DQ file is only a request: ONNX Runtime's graph optimizer fuses what it has integer kernels for (QLinearConv,
NhwcMaxPool on uint8, QLinearConcat, ...) and leaves the rest in float between DequantizeLinear and
QuantizeLinear. This reads the optimized graph ORT writes (`SessionOptions.optimized_model_filepath`) and
counts, per op type, the nodes that compute on 8-bit tensors and those that compute in float, plus the
transitions (QuantizeLinear: float -> int8, DequantizeLinear: int8 -> float, Reorder*: float NCHWc layout) and
the shape arithmetic on int64 tensors (Shape and what computes on its output: no data, not float work).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ghostq.core.errors import GhostqError

_INT8 = {2, 3}  # onnx.TensorProto.UINT8, INT8
_INT32 = 6
_INT64 = 7
_FLOAT = 1
KINDS = ("integer", "float", "transition", "shape")
TRANSITIONS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ReorderInput", "ReorderOutput")
# Ops whose output has the element type of their first input (layout and selection ops, pooling).
_SAME_TYPE = {
    "MaxPool", "NhwcMaxPool", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Slice",
    "Split", "Resize", "Identity", "Gather", "Pad", "Upsample", "GlobalMaxPool", "Expand", "Tile",
}


def optimized_graph(path: str | Path, level: str = "all") -> Any:
    """The graph ONNX Runtime's CPU provider runs for `path` (an onnx.ModelProto), at optimization `level`."""
    import onnx
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    path = Path(path)
    if not path.is_file():
        raise GhostqError(f"{path}: file not found")
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[level]
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3  # the "hardware-specific optimizations" warning is expected here
        try:
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            return onnx.load(so.optimized_model_filepath)
        except Exception as err:  # ORT raises its own exception types for invalid graphs
            first = " ".join(str(err).split())
            raise GhostqError(f"{path}: ONNX Runtime cannot load it ({first})") from None


def _output_type(node: Any, types: dict[str, int]) -> int:
    first = types.get(node.input[0], _FLOAT) if node.input else _FLOAT
    if node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear"):
        return types.get(node.input[2], 2) if len(node.input) > 2 and node.input[2] else 2
    if node.op_type == "DequantizeLinear":
        return _FLOAT
    if node.op_type in ("Shape", "Size"):
        return _INT64
    if node.op_type.startswith("QLinear"):  # 8-bit out; QLinearConcat's first input is the output scale
        return next((types[i] for i in node.input if types.get(i) in _INT8), 2)
    if node.op_type in _SAME_TYPE:
        return first
    if node.op_type in ("ConvInteger", "MatMulInteger"):
        return _INT32
    return _FLOAT


def explain_graph(model: Any) -> dict[str, Any]:
    """Per-op-type counts of integer and float nodes, and transition counts, for an onnx.ModelProto."""
    g = model.graph
    types = {i.name: i.type.tensor_type.elem_type for i in g.input}
    types.update({t.name: t.data_type for t in g.initializer})
    per_op: dict[str, Counter] = {}
    for node in g.node:  # ORT writes the optimized graph in topological order
        out_type = _output_type(node, types)
        for name in node.output:
            types[name] = out_type
        in_type = types.get(node.input[0], _FLOAT) if node.input else _FLOAT
        if node.op_type in TRANSITIONS:
            kind = "transition"
        elif in_type in _INT8 or out_type in _INT8 | {_INT32}:
            kind = "integer"
        else:
            kind = "shape" if _INT64 in (in_type, out_type) else "float"
        per_op.setdefault(node.op_type, Counter())[kind] += 1
    ops = {op: {k: c[k] for k in KINDS} for op, c in sorted(per_op.items())}
    compute = [v for op, v in ops.items() if op not in TRANSITIONS]
    return {
        "ops": ops,
        "nodes": len(g.node),
        "integer_nodes": sum(v["integer"] for v in compute),
        "float_nodes": sum(v["float"] for v in compute),
        "shape_nodes": sum(v["shape"] for v in compute),
        "quantize": ops.get("QuantizeLinear", {}).get("transition", 0),
        "dequantize": ops.get("DequantizeLinear", {}).get("transition", 0),
        "reorder": sum(ops.get(k, {}).get("transition", 0) for k in ("ReorderInput", "ReorderOutput")),
    }


def explain(path: str | Path, level: str = "all") -> dict[str, Any]:
    """`explain_graph` of what ORT runs for the file at `path`, with the file name."""
    return {"file": str(path), "optimization": level, **explain_graph(optimized_graph(path, level))}


def explain_markdown(result: dict[str, Any]) -> str:
    """The per-op table as markdown (what `ghostq export --explain` prints)."""
    lines = [f"ONNX Runtime CPU graph of {result['file']} ({result['nodes']} nodes; "
             f"{result['integer_nodes']} integer, {result['float_nodes']} float, "
             f"{result.get('shape_nodes', 0)} shape arithmetic; "
             f"{result['quantize']} Quantize, {result['dequantize']} Dequantize, {result['reorder']} Reorder)", "",
             "| op | integer | float | transition | shape |", "|---|---:|---:|---:|---:|"]
    for op, v in result["ops"].items():
        lines.append(f"| {op} | {v['integer']} | {v['float']} | {v['transition']} | {v.get('shape', 0)} |")
    return "\n".join(lines) + "\n"

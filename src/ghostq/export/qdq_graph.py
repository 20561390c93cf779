"""Graph rewrites the INT8 Q/DQ writer (``qdq_export``) shares: unique names, topological order, and the CPU
form's own edits (a Q/DQ on a conv's output so ONNX Runtime runs it as QLinearConv, and dropping a ReLU that an
unsigned QuantizeLinear already applies). ONNX only, no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from ghostq.export.qdq_export import ConvQuant

MIN_SCALE = 1e-8


def quantize_conv_outputs(g: onnx.GraphProto, spec: dict[str, ConvQuant], nodes: dict[str, onnx.NodeProto],
                      new_inits: list[TensorProto], new_nodes: list[tuple[int, onnx.NodeProto]],
                      producer_index: dict[str, int], used: set[str]) -> None:
    """CPU form: a UINT8 Q/DQ (asymmetric min-max scale) on the output of each conv with an ``output_range``,
    so ONNX Runtime runs it as QLinearConv (it fuses DQ -> Conv -> Q only) and dequantizes its result."""
    for name, q in spec.items():
        if q.output_range is None:
            continue
        t = nodes[name].output[0]
        if any(o.name == t for o in g.output):
            raise ValueError(f"{name}: its output is a graph output; a Q/DQ there would change the outputs")
        lo, hi = min(q.output_range[0], 0.0), max(q.output_range[1], 0.0)
        s = max((hi - lo) / 255.0, MIN_SCALE)
        zp = np.array(np.clip(np.round(-lo / s), 0, 255), np.uint8)
        tag = unique_name(safe_name(t), used)
        new_inits += [numpy_helper.from_array(np.array(s, np.float32), f"{tag}_out_scale"),
                      numpy_helper.from_array(zp, f"{tag}_out_zero_point")]
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == t:
                    n.input[k] = f"{tag}_dq"
        at = producer_index[t] + 1
        new_nodes.append((at, helper.make_node("QuantizeLinear", [t, f"{tag}_out_scale", f"{tag}_out_zero_point"],
                                               [f"{tag}_q"], name=f"{tag}_QuantizeLinear")))
        new_nodes.append((at, helper.make_node("DequantizeLinear", [f"{tag}_q", f"{tag}_out_scale",
                                                                     f"{tag}_out_zero_point"],
                                               [f"{tag}_dq"], name=f"{tag}_DequantizeLinear")))


def drop_relu_before_unsigned_quantize(m: onnx.ModelProto) -> int:
    """Remove each Relu whose every consumer is a QuantizeLinear to UINT8 with zero point 0; returns the count.

    Exact: such a QuantizeLinear already clamps negatives to 0, so Q(relu(x)) == Q(x). It leaves Conv -> Q, the
    pattern ONNX Runtime fuses (with the DequantizeLinear before the conv) into one integer QLinearConv.
    """
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def unsigned_zero(q: onnx.NodeProto) -> bool:
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        return zp is not None and zp.data_type == TensorProto.UINT8 and not numpy_helper.to_array(zp).any()

    dropped = [n for n in g.node if n.op_type == "Relu" and n.output[0] not in outputs and consumers.get(n.output[0])
               and all(c.op_type == "QuantizeLinear" and unsigned_zero(c) for c in consumers[n.output[0]])]
    for relu in dropped:
        for q in consumers[relu.output[0]]:
            q.input[0] = relu.input[0]
        g.node.remove(relu)
    return len(dropped)


def unique_name(name: str, used: set[str]) -> str:
    out, k = name, 1
    while out in used:
        out, k = f"{name}_{k}", k + 1
    used.add(out)
    return out


def safe_name(name: str) -> str:
    return name.strip("/").replace("/", ".").replace(":", "_")


def toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes in an order where every input exists before use (stable for already-sorted parts)."""
    done = set(available) | {""}
    out, pending = [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in done for i in n.input):
                out.append(n)
                done.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"cycle or missing input around {rest[0].name}")
        pending = rest
    return out

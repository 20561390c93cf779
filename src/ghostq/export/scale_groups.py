"""Which conv inputs share one activation scale in the INT8 Q/DQ graph (TensorRT's placement rules).

A tensor read by several convs gets one QuantizeLinear; Concat, MaxPool and Resize are transparent (a Concat's
inputs and output share one scale, as do SPPF's MaxPool chain and a Resize feeding a Concat). The export places
Q/DQ by these groups (``qdq_export``); ``scale_groups_trace`` finds them for a quantized torch model (an ONNX
trace of its float twin), and compression ties the input quantizers of each group's convs with them
(``ghostq.compress.quantize.share_input_quantizers``), so QAT learns exactly the scales the exported graph
uses. ONNX only, no torch.
"""

from __future__ import annotations

import onnx

_TRANSPARENT = frozenset({"Concat", "MaxPool", "Resize"})  # TensorRT form: NVIDIA's placement
_MULTI_INPUT = {"Concat", "Add"}


def conv_module_name(node_name: str) -> str:
    """``/model/backbone/stages.0/stages.0.1/cv1/conv/Conv`` -> ``backbone.stages.0.1.cv1.conv``: the module
    name of an ONNX node from the TorchScript exporter's scope path."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return node_name
    parts = parts[:-1]  # the op ("Conv", "Conv_1")
    if parts[0] == "model":  # the export wrapper's attribute
        parts = parts[1:]
    merged: list[str] = []
    for p in parts:  # a container's child is scoped "stages.0/stages.0.1": keep the longer one
        if merged and p.startswith(merged[-1] + "."):
            merged[-1] = p
        else:
            merged.append(p)
    return ".".join(merged)


def conv_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Module name -> Conv node of an exported ghostq model."""
    out: dict[str, onnx.NodeProto] = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            name = conv_module_name(n.name)
            if name in out:
                raise ValueError(f"two Conv nodes map to module {name!r}: {out[name].name}, {n.name}")
            out[name] = n
    return out


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def add(self, x: str) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.add(a)
        self.add(b)
        self.parent[self.find(a)] = self.find(b)


def _groups(
    model: onnx.ModelProto, conv_inputs: set[str], transparent: frozenset[str] = _TRANSPARENT
) -> tuple[dict[str, str], set[str]]:
    """Tensor -> group root over conv inputs and the transparent ops feeding them; names of the transparent
    nodes inside a group (their inputs are rewired to the quantized tensors)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    graph_inputs = {x.name for x in model.graph.input}
    uf = _UnionFind()
    for t in sorted(conv_inputs):  # sorted: set order varies between processes (hash seed), exports must not
        uf.add(t)
    inside: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in model.graph.node:
            outs = [o for o in n.output if o]
            if n.op_type not in transparent or n.name in inside or not any(o in uf.parent for o in outs):
                continue
            data_inputs = [i for i in n.input if i] if n.op_type in _MULTI_INPUT else [n.input[0]]
            for t in [*outs[1:], *(i for i in data_inputs if i in producer or i in graph_inputs)]:
                uf.union(t, outs[0])
            inside.add(n.name)
            changed = True
    return {t: uf.find(t) for t in uf.parent}, inside


def conv_scale_groups(model: onnx.ModelProto, conv_names: set[str]) -> list[list[str]]:
    """Module names of the convs (among ``conv_names``) whose inputs share one scale, one list per group."""
    nodes = {k: v for k, v in conv_nodes(model).items() if k in conv_names}
    group_of, _ = _groups(model, {n.input[0] for n in nodes.values()})
    groups: dict[str, list[str]] = {}
    for name, node in sorted(nodes.items()):
        groups.setdefault(group_of[node.input[0]], []).append(name)
    return list(groups.values())


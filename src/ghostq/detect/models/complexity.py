"""Parameter and MAC counts per layer, measured by running the model once with forward hooks.

Counted layers: every nn.Conv2d and nn.Linear (what quantization replaces and what BOPs are made of).
  Conv2d MACs = C_out * H_out * W_out * (C_in / groups) * k_h * k_w   (per image; bias adds no MAC)
  Linear MACs = in_features * out_features * (number of output vectors per image)
Per image: the report is for batch 1 (the batch dimension of ``input_shape`` divides the count).
A module called several times in one forward counts once per call (its MACs add up; shapes of the first call).
``total_params`` counts every parameter of the model (BatchNorm, LayerNorm, GRN included);
``layer_params`` only those of the counted layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

_COUNTED = (nn.Conv2d, nn.Linear)


@dataclass
class LayerComplexity:
    """One Conv2d / Linear layer: its module name, type, parameter count, MACs per image, I/O shapes."""

    name: str
    type: str
    params: int
    macs: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


@dataclass
class ComplexityReport:
    """Per-layer rows (execution order) and totals for one input shape."""

    input_shape: tuple[int, ...]
    layers: list[LayerComplexity] = field(default_factory=list)
    total_params: int = 0

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self.layers)

    @property
    def layer_params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def gmacs(self) -> float:
        return self.total_macs / 1e9

    def by_name(self) -> dict[str, LayerComplexity]:
        return {row.name: row for row in self.layers}

    def to_dict(self) -> dict:
        """JSON-ready: rows as dicts (shapes as lists) and the totals."""
        return {
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "layer_params": self.layer_params,
            "total_macs": self.total_macs,
            "layers": [{**asdict(r), "in_shape": list(r.in_shape), "out_shape": list(r.out_shape)}
                       for r in self.layers],
        }

    def table(self) -> str:
        """Plain-text table, one line per layer, then the totals."""
        w = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'layer':<{w}}  {'type':<7} {'params':>10} {'MACs':>14}  in -> out"]
        for r in self.layers:
            lines.append(f"{r.name:<{w}}  {r.type:<7} {r.params:>10,} {r.macs:>14,}  "
                         f"{list(r.in_shape)} -> {list(r.out_shape)}")
        lines.append(f"{'total':<{w}}  {'':<7} {self.total_params:>10,} {self.total_macs:>14,}  "
                     f"(params: whole model; MACs: conv + linear, per image)")
        return "\n".join(lines)


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    """MACs of one call, per image (the first dimension of ``out`` is the batch)."""
    batch = out.shape[0]
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        per_output = (module.in_channels // module.groups) * k
        return out[0].numel() * per_output  # C_out * H_out * W_out * (C_in / groups) * k * k
    # Linear: every output element is in_features MACs
    return (out.numel() // batch) * module.in_features


def count_params_macs(model: nn.Module, input_shape: Sequence[int]) -> ComplexityReport:
    """Run ``model`` once on zeros of ``input_shape`` ([B, C, H, W]; B >= 1, counts are per image) and
    return per-layer params / MACs of every Conv2d and Linear, plus totals.

    The model runs in eval mode under no_grad on its own device and dtype; its training flag is restored.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) < 2 or input_shape[0] < 1:
        raise ValueError(f"input_shape must be [B, ...] with B >= 1, got {list(input_shape)}")
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32

    calls: dict[str, LayerComplexity] = {}
    order: list[str] = []

    def hook(name: str):  # noqa: ANN202
        def record(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            macs = _layer_macs(module, out)
            row = calls.get(name)
            if row is None:
                params = sum(p.numel() for p in module.parameters(recurse=False))
                calls[name] = LayerComplexity(name, type(module).__name__, params, macs,
                                              tuple(inputs[0].shape[1:]), tuple(out.shape[1:]))
                order.append(name)
            else:
                row.macs += macs
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, _COUNTED)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    rows = [calls[n] for n in order]
    total = sum(p.numel() for p in model.parameters())
    return ComplexityReport(input_shape=input_shape, layers=rows, total_params=total)


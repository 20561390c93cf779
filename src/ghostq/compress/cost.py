"""Model cost: params, MACs, size (MB) and BOPs (G) of an FP or quantized model, every layer counted.

GHOST's definitions (DESIGN §5), applied to every conv / linear (heads included):
    size  = sum(params * bits) / 8 bytes            MB = 2^20 bytes
    BOPs  = sum(MACs * weight bits * input activation bits)
A layer left in full precision counts at 32 bits (weights and input). Biases stay FP32 in the executed model
(TensorRT adds them in float), so they count at 32 bits; parameters outside the counted layers (BatchNorm,
LayerNorm, GRN) count at 32 bits too. Quantizer scales are not counted. Params and MACs are measured on the
real model (``count_params_macs``: one forward with hooks, per image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from torch import nn

from ghostq.compress.quantize import FP_BITS, layer_bits
from ghostq.detect.models.complexity import count_params_macs

MB = 2**20


@dataclass
class LayerCost:
    """One conv / linear: weight and bias counts, MACs per image, weight and input-activation bits."""

    name: str
    weight_params: int
    bias_params: int
    macs: int
    weight_bits: int
    act_bits: int

    @property
    def bits_total(self) -> int:
        return self.weight_params * self.weight_bits + self.bias_params * FP_BITS

    @property
    def bops(self) -> int:
        return self.macs * self.weight_bits * self.act_bits


@dataclass
class ModelCost:
    """Per-layer costs and the totals for one input shape."""

    input_shape: tuple[int, ...]
    layers: list[LayerCost] = field(default_factory=list)
    other_params: int = 0  # parameters outside the counted layers (norms), at 32 bits

    @property
    def params(self) -> int:
        return sum(r.weight_params + r.bias_params for r in self.layers) + self.other_params

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def size_mb(self) -> float:
        return (sum(r.bits_total for r in self.layers) + self.other_params * FP_BITS) / 8 / MB

    @property
    def bops_g(self) -> float:
        return sum(r.bops for r in self.layers) / 1e9

    @property
    def avg_weight_bits(self) -> float:
        """Average bits per conv / linear weight, weighted by parameter count (biases and norms excluded)."""
        n = sum(r.weight_params for r in self.layers)
        return sum(r.weight_params * r.weight_bits for r in self.layers) / max(1, n)

    def totals(self) -> dict[str, float]:
        return {"params": self.params, "macs": self.macs, "gmacs": self.macs / 1e9,
                "size_mb": self.size_mb, "bops_g": self.bops_g, "avg_weight_bits": self.avg_weight_bits}

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), **self.totals(),
                "layers": [asdict(r) for r in self.layers]}

    def table(self) -> str:
        """Plain-text table: one line per layer, then the totals."""
        w = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'layer':<{w}} {'params':>9} {'MACs':>13} {'W':>3} {'A':>3} {'size KB':>9} {'GBOPs':>9}"]
        for r in self.layers:
            lines.append(f"{r.name:<{w}} {r.weight_params + r.bias_params:>9,} {r.macs:>13,} {r.weight_bits:>3} "
                         f"{r.act_bits:>3} {r.bits_total / 8 / 1024:>9.2f} {r.bops / 1e9:>9.3f}")
        lines.append(f"{'total':<{w}} {self.params:>9,} {self.macs:>13,} {self.avg_weight_bits:>7.2f} "
                     f"{self.size_mb * 1024:>9.2f} {self.bops_g:>9.3f}   (size {self.size_mb:.3f} MB)")
        return "\n".join(lines)


def model_cost(model: nn.Module, input_shape: Sequence[int],
               bits: Mapping[str, int | tuple[int, int]] | None = None, act_bits: int = 8) -> ModelCost:
    """Cost of ``model`` (FP or quantized) on ``input_shape``.

    Bits come from the model's quantized layers, or, for an FP model, from ``bits`` (layer -> weight bits,
    or (weight, act) bits; layers absent or at 32 stay FP; quantized inputs take ``act_bits``), which is how
    HQ prices a bit assignment before quantizing.
    """
    report = count_params_macs(model, input_shape)
    found = layer_bits(model)
    rows = []
    counted = 0
    for r in report.layers:
        module = model.get_submodule(r.name)
        w_params = module.weight.numel()
        b_params = module.bias.numel() if getattr(module, "bias", None) is not None else 0
        counted += w_params + b_params
        wb, ab = found.get(r.name, (FP_BITS, FP_BITS))
        if bits is not None and r.name in bits:
            given = bits[r.name]
            wb, ab = given if isinstance(given, tuple) else (given, FP_BITS if given == FP_BITS else act_bits)
        rows.append(LayerCost(r.name, w_params, b_params, r.macs, wb, ab))
    other = sum(p.numel() for p in model.parameters()) - counted - _quantizer_params(model)
    return ModelCost(tuple(int(d) for d in input_shape), rows, other)


def _quantizer_params(model: nn.Module) -> int:
    """Number of quantizer parameters (learned scales), which the size does not count."""
    return sum(p.numel() for n, p in model.named_parameters() if "_quant." in n)

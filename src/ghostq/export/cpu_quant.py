"""The CPU form's prediction convs in 8 bits (``export.int8.cpu_prediction_convs``), calibrated on images.

GHOST keeps the final prediction convs (class logits and box distances per level) in full precision, and the
TensorRT form keeps that choice. On a CPU that choice is expensive, and not because of the prediction convs
themselves (1x1 convs with few outputs): the conv *before* each of them cannot fuse into an integer QLinearConv
(ONNX Runtime fuses DQ -> Conv -> Q only, and its output never meets a QuantizeLinear), so 12 of the network's
convs run in float NCHWc layout behind Dequantize / Reorder transitions. The CPU form therefore quantizes the
prediction convs' inputs and weights (W8A8 as TensorRT places it: per-output-channel INT8 weights, max |W| / 127,
and a per-tensor input scale): the conv before each becomes a QLinearConv and the prediction conv runs on the
dequantized 8-bit input with its float output unrounded (``int8``, the default). ``int8_output`` also gives
each an 8-bit output range, so ONNX Runtime runs it as a QLinearConv too; that rounds the logits and box
distances to 256 levels, which costs accuracy for little time (measured in benchmarks/cpu_int8.py).

Where the source has no scale for a prediction conv (GHOST, a PTQ that skipped them) the input scale is
calibrated on the calibration batches: ``minmax`` (max |x| / 127) or ``percentile`` (the given percentile of
|x|, which ignores rare outliers). The output range is always the min-max: the largest logits are the
detections, and clipping them would tie the best scores. A prediction conv the source did quantize keeps its
weights and input scale and only gains the output range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ghostq.export.qdq_export import MIN_SCALE, ConvQuant, conv_nodes, tensor_values

CALIBRATIONS = ("minmax", "percentile")


def with_quantized_convs(
    base: onnx.ModelProto,
    spec: dict[str, ConvQuant],
    names: Sequence[str],
    batches: Iterable[np.ndarray],
    method: str = "minmax",
    percentile: float = 99.99,
    threads: int = 1,
    output: bool = False,
) -> dict[str, ConvQuant]:
    """``spec`` plus the convs ``names`` (module names in ``base``, the FP32 graph the Q/DQ file is written from)
    quantized in 8 bits with calibrated input scales, and with min-max output ranges when ``output`` (see the
    module docstring)."""
    if method not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {method!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    nodes = conv_nodes(base)
    missing = [n for n in names if n not in nodes]
    if missing:
        raise ValueError(f"no Conv node for {missing[:5]}")
    if not names:
        return dict(spec)
    inputs = {n: nodes[n].input[0] for n in names}
    outputs = {n: nodes[n].output[0] for n in names}
    lo = dict.fromkeys([*inputs.values(), *outputs.values()], np.inf)
    hi = dict.fromkeys(lo, -np.inf)
    magnitudes: dict[str, list[np.ndarray]] = {t: [] for t in inputs.values()}
    for values in tensor_values(base, list(lo), batches, threads):
        for t, v in values.items():
            lo[t], hi[t] = min(lo[t], float(v.min())), max(hi[t], float(v.max()))
            if method == "percentile" and t in magnitudes:
                magnitudes[t].append(np.abs(v).ravel())
    inits = {t.name: t for t in base.graph.initializer}
    out = dict(spec)
    for n in names:
        x, y = inputs[n], outputs[n]
        if n in spec:  # the source quantized it: its weights and input scale stay, only the output is added
            q = spec[n]
            out[n] = ConvQuant(q.weight_scale, q.input_scale, q.weight_int, q.weight_bits, q.input_min,
                               output_range=(lo[y], hi[y]) if output else None)
            continue
        w = numpy_helper.to_array(inits[nodes[n].input[1]]).astype(np.float32)
        w_amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        if method == "percentile":
            amax = float(np.percentile(np.concatenate(magnitudes[x]), percentile))
        else:
            amax = max(abs(lo[x]), abs(hi[x]))
        out[n] = ConvQuant(weight_scale=np.maximum(w_amax / 127.0, MIN_SCALE), input_scale=max(amax / 127.0, MIN_SCALE),
                           input_min=lo[x], output_range=(lo[y], hi[y]) if output else None)
    return out



def prediction_convs_tag(spec: dict[str, ConvQuant], names: Sequence[str]) -> str:
    """What a Q/DQ file does with the prediction convs ``names`` (ONNX metadata ``ghostq.prediction_convs``):
    ``int8_output`` (integer QLinearConvs: 8-bit outputs too), ``int8`` (8-bit inputs and weights, float
    outputs) or ``fp``."""
    if names and all(n in spec and spec[n].output_range is not None for n in names):
        return "int8_output"
    return "int8" if names and all(n in spec for n in names) else "fp"

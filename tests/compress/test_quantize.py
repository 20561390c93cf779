"""BN folding, the module swap, per-layer bits as data, fake-quant equality, checkpoint rebuild."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ghostq.compress.fold_bn import conv_bn_pairs, fold_bn
from ghostq.compress.quantize import (
    QConv2d,
    QuantConfig,
    act_scale,
    calibrate_activations,
    init_weight_scales,
    int8_weight,
    layer_bits,
    quantize,
    rebuild_quantized,
    resolve_bits,
)
from ghostq.compress.quantizers import ActPerTensorPercentile
from ghostq.detect.models import build_detector


def test_bn_folding_keeps_outputs(toy):
    x = torch.randn(2, 3, 16, 16)
    ref = toy(x)
    folded = fold_bn(copy.deepcopy(toy))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert (folded(x) - ref).abs().max().item() < 1e-5


def test_bn_folding_detector_within_1e5(randomize):
    model = randomize(build_detector("csp_n", 3, strides=(8, 16, 32))).eval()
    x = torch.rand(1, 3, 64, 64)
    ref = model(x)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(conv_bn_pairs(model)) == n_bn
    out = fold_bn(model)(x)
    assert (out.cls_logits - ref.cls_logits).abs().max().item() < 1e-5
    assert (out.boxes - ref.boxes).abs().max().item() < 1e-3 * ref.boxes.abs().max().item()


def test_quantized_conv_equals_hand_fake_quant():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    q = QConv2d(conv, weight_bits=4, act_bits=8, act_quant=ActPerTensorPercentile)
    init_weight_scales(q, "mse")
    x = torch.randn(2, 4, 8, 8)
    calibrate_activations(q, [x])
    q.eval()
    # hand-written fake quant: weights narrow signed 4 bit per output channel, input full-range signed int8
    s_w = q.weight_quant.tensor_quant.scaling_impl.value.detach().exp2().reshape(-1, 1, 1, 1) / 7
    s_a = act_scale(q)
    w_q = torch.clamp(torch.round(conv.weight / s_w), -7, 7) * s_w
    x_q = torch.clamp(torch.round(x / s_a), -128, 127) * s_a
    ref = F.conv2d(x_q, w_q, conv.bias, padding=1)
    assert torch.allclose(q(x), ref, atol=1e-6, rtol=0)
    ints, scales = int8_weight(q)
    assert ints.dtype == torch.int8 and int(ints.abs().max()) <= 7  # 4-bit values on the INT8 grid
    assert torch.allclose(scales, s_w.reshape(-1))
    assert (scales > 0).all()


def test_layer_bits_patterns_and_switches():
    model = fold_bn(build_detector("csp_n", 3))
    cfg = QuantConfig(weight_bits=8, layer_bits={"neck.*": 4, "neck.down_convs.0.conv": 6})
    bits = resolve_bits(model, cfg)
    assert bits["backbone.stem.conv"] == 8
    assert bits["neck.td_blocks.0.cv1.conv"] == 4
    assert bits["neck.down_convs.0.conv"] == 6
    assert all(bits[n] == 32 for n in model.prediction_layer_names())
    cfg2 = QuantConfig(quantize_first_conv=False, quantize_prediction_convs=True)
    bits2 = resolve_bits(model, cfg2)
    assert bits2["backbone.stem.conv"] == 32 and bits2["head.cls_preds.0"] == 8
    with pytest.raises(ValueError, match="matches no Conv2d"):
        resolve_bits(model, QuantConfig(layer_bits={"nothing.*": 4}))
    with pytest.raises(ValueError, match="2..8"):
        QuantConfig(weight_bits=9)


def test_quantize_requires_folded_bn(toy):
    with pytest.raises(ValueError, match="fold BatchNorm"):
        quantize(toy, QuantConfig())


def test_quantized_detector_checkpoint_roundtrip(tmp_path, randomize):
    torch.manual_seed(0)
    fp = randomize(build_detector("csp_n", 3)).eval()
    model = quantize(fold_bn(copy.deepcopy(fp)), QuantConfig(layer_bits={"neck.*": 4}))
    init_weight_scales(model)
    x = torch.rand(2, 3, 64, 64)
    calibrate_activations(model, [x])
    model.eval()
    ref = model(x)
    stored = {n: wb for n, (wb, _ab) in layer_bits(model).items()}
    assert stored["neck.td_blocks.0.cv1.conv"] == 4 and stored["head.box_preds.0"] == 32
    path = tmp_path / "q.pt"
    torch.save({"model": model.state_dict(), "bits": stored}, path)
    payload = torch.load(path, weights_only=True)
    rebuilt = rebuild_quantized(build_detector("csp_n", 3), payload["bits"])
    rebuilt.load_state_dict(payload["model"])
    rebuilt.eval()
    out = rebuilt(x)
    assert torch.equal(out.cls_logits, ref.cls_logits)
    # 8-bit W/A on a detector stays close to FP (SQNR in dB)
    q8 = quantize(fold_bn(copy.deepcopy(fp)), QuantConfig())
    init_weight_scales(q8)
    calibrate_activations(q8, [x])
    q8.eval()
    a, b = fp(x).cls_logits, q8(x).cls_logits
    sqnr = 10 * torch.log10(a.pow(2).mean() / (a - b).pow(2).mean())
    assert sqnr > 20, sqnr


@pytest.mark.parametrize("backbone", ["convnextv2_atto", "csp_n"])
def test_every_conv_swapped_for_registered_backbones(backbone, randomize):
    fp = randomize(build_detector(backbone, 2)).eval()
    model = quantize(fold_bn(copy.deepcopy(fp)), QuantConfig(weight_bits=6))
    init_weight_scales(model)
    x = torch.rand(1, 3, 64, 64)
    calibrate_activations(model, [x])
    bits = layer_bits(model.eval())
    preds = set(fp.prediction_layer_names())
    assert all(b == ((32, 32) if n in preds else (6, 8)) for n, b in bits.items())
    assert torch.isfinite(model(x).cls_logits).all()


@pytest.mark.parametrize("calib", ["minmax", "percentile", "mse"])
def test_activation_calibration_methods_give_finite_scales(calib):
    from ghostq.compress.quantizers import act_quant_for

    x = torch.distributions.Laplace(0.0, 1.0).sample((2, 4, 12, 12))
    q = QConv2d(nn.Conv2d(4, 4, 3, padding=1), 8, 8, act_quant_for(calib))
    init_weight_scales(q)
    calibrate_activations(q, [x])
    clip = float(act_scale(q)) * 128  # full-range signed 8 bit: the clip level is 128 scales
    assert 0.3 * x.abs().max() < clip <= x.abs().max() * 1.01
    q.eval()
    assert torch.isfinite(q(x)).all()


def test_convs_of_one_scale_group_share_their_input_quantizer() -> None:
    """Convs reading one tensor, or tensors joined by a Concat, end with one input quantizer (one scale)."""
    import copy

    from ghostq.compress.fold_bn import fold_bn
    from ghostq.compress.quantize import QConv2d, QuantConfig, quantize, share_input_quantizers
    from ghostq.detect.models import build_detector
    from ghostq.export.scale_groups_trace import trace_scale_groups

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = quantize(fold_bn(build_detector("csp_n", 3).eval()), QuantConfig(weight_bits=8))
    before = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    groups = trace_scale_groups(model, torch.zeros(1, 3, 64, 64))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # the trace left the model as it was
    assert sorted(n for g in groups for n in g) == sorted(n for n, m in model.named_modules() if isinstance(m, QConv2d))
    tied = share_input_quantizers(model, groups)
    assert tied == sum(len(g) - 1 for g in groups) > 0
    convs = dict(model.named_modules())
    head_cls, head_box = convs["head.cls_convs.0.0.conv"], convs["head.box_convs.0.0.conv"]
    assert isinstance(head_cls, QConv2d) and head_cls.input_quant is head_box.input_quant  # same input tensor
    distinct = {id(m.input_quant) for m in model.modules() if isinstance(m, QConv2d)}
    assert len(distinct) == sum(isinstance(m, QConv2d) for m in before.modules()) - tied
    with pytest.raises(ValueError, match="scale group names convs that are not quantized: nope"):
        share_input_quantizers(model, [["nope"]])


def test_quantizer_registries_give_the_config_its_allowed_values():
    """`compress.ptq.calib` / `compress.weight_scale_init` accept exactly the registered quantizer kinds."""
    from ghostq.compress.quantizers import act_quantizer_names, weight_scale_init_names, weight_thresholds
    from ghostq.core.config import REGISTRIES, Config

    torch.set_num_threads(1)
    assert act_quantizer_names() == ("minmax", "mse", "percentile")
    assert weight_scale_init_names() == ("max", "mse")
    context = {REGISTRIES: {"compress.ptq.calib": act_quantizer_names(),
                            "compress.weight_scale_init": weight_scale_init_names()}}
    for calib in act_quantizer_names():
        Config.model_validate({"compress": {"ptq": {"calib": calib}}}, context=context)
    with pytest.raises(ValueError, match="unknown activation calibration 'kl'; allowed: minmax, mse, percentile"):
        Config.model_validate({"compress": {"ptq": {"calib": "kl"}}}, context=context)
    with pytest.raises(ValueError, match="unknown weight scale init 'absmax'; allowed: max, mse"):
        Config.model_validate({"compress": {"weight_scale_init": "absmax"}}, context=context)
    w = torch.randn(4, 3, 3, 3)
    assert torch.allclose(weight_thresholds(w, 8, "max"), w.reshape(4, -1).abs().amax(dim=1))
    assert (weight_thresholds(w, 4, "mse") <= weight_thresholds(w, 4, "max") + 1e-6).all()

"""Detector models, parametrized over the backbone registry: a newly registered backbone gets these tests.

Tiny inputs (64x64) so the whole file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ghostq.detect.models import (
    SUPPORTED_STRIDES,
    DetectorOutput,
    build_detector,
    count_params_macs,
    create_backbone,
    list_backbones,
)

BACKBONES = list_backbones()
STRIDE_SETS = [(8, 16, 32), (4, 8, 16)]
SIZE = 64
NUM_CLASSES = 3


def _num_points(strides: tuple[int, ...], h: int = SIZE, w: int = SIZE) -> int:
    return sum((h // s) * (w // s) for s in strides)


def _calibrate_norms(model: nn.Module, in_channels: int = 3, seed: int = 0) -> None:
    """Realistic BatchNorm statistics (those of one train-mode batch) and non-zero GRN
    parameters, so eval-mode features are neither ~0 nor exploding."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
            elif type(m).__name__ == "GRN2d":
                m.gamma.copy_(torch.randn(m.gamma.shape, generator=g) * 0.1)
                m.beta.copy_(torch.randn(m.beta.shape, generator=g) * 0.1)
        model.train()(torch.randn(4, in_channels, SIZE, SIZE, generator=g))
    model.eval()


def test_registry_lists_the_required_backbones() -> None:
    assert {"csp_n", "csp_s", "convnextv2_atto", "convnextv2_femto"} <= set(BACKBONES)
    assert BACKBONES == sorted(BACKBONES)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_gives_strides_4_to_32(name: str) -> None:
    body = create_backbone(name, in_channels=3, out_strides=SUPPORTED_STRIDES).eval()
    with torch.no_grad():
        feats = body(torch.zeros(1, 3, SIZE, SIZE))
    assert [f.shape[-1] for f in feats] == [SIZE // s for s in SUPPORTED_STRIDES]
    assert [f.shape[1] for f in feats] == list(body.out_channels)


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("strides", STRIDE_SETS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("name", BACKBONES)
def test_forward_shapes(name: str, strides: tuple[int, ...], in_channels: int, head: str) -> None:
    torch.manual_seed(0)
    model = build_detector(name, NUM_CLASSES, in_channels=in_channels, strides=strides, head=head)
    k = NUM_CLASSES + (head == "softmax")
    n = _num_points(strides)
    x = torch.randn(2, in_channels, SIZE, SIZE)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(x)
        assert isinstance(out, DetectorOutput)
        assert out.cls_logits.shape == (2, n, k)
        assert out.boxes.shape == (2, n, 4)
        assert out.points.shape == (n, 2) and out.strides.shape == (n,)
        assert torch.isfinite(out.cls_logits).all() and torch.isfinite(out.boxes).all()
        assert (out.boxes[..., 2] > out.boxes[..., 0]).all() and (out.boxes[..., 3] > out.boxes[..., 1]).all()
    attrs = (model.num_classes, model.head_type, model.strides, model.num_outputs)
    assert attrs == (NUM_CLASSES, head, strides, k)
    # points: level by level, row-major, cell centres
    s0 = strides[0]
    assert out.points[0].tolist() == [s0 / 2, s0 / 2]
    assert out.points[1].tolist() == [1.5 * s0, s0 / 2]
    assert out.points[SIZE // s0].tolist() == [s0 / 2, 1.5 * s0]
    counts = [(SIZE // s) ** 2 for s in strides]
    assert out.strides.tolist() == [float(s) for s, c in zip(strides, counts, strict=True) for _ in range(c)]
    assert out.points[-1].tolist() == [SIZE - strides[-1] / 2] * 2


@pytest.mark.parametrize("strides", STRIDE_SETS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("name", BACKBONES)
def test_backward_gives_finite_grads_to_every_parameter(name: str, strides: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_detector(name, NUM_CLASSES, strides=strides).train()
    out = model(torch.randn(2, 3, SIZE, SIZE))
    loss = out.cls_logits.sigmoid().mean() + out.boxes.mean() / SIZE
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (unused): {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad


def test_box_decoding_is_softplus_times_stride_around_points() -> None:
    model = build_detector("csp_n", NUM_CLASSES, strides=(8, 16, 32)).eval()
    raw = torch.tensor([0.3, -1.0, 2.0, 0.0])
    with torch.no_grad():
        for conv in model.head.box_preds:
            conv.weight.zero_()
            conv.bias.copy_(raw)
        out = model(torch.randn(1, 3, SIZE, SIZE))
    d = torch.nn.functional.softplus(raw)
    expected = torch.cat(
        (out.points - d[:2] * out.strides[:, None], out.points + d[2:] * out.strides[:, None]), dim=1
    )
    torch.testing.assert_close(out.boxes[0], expected)


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_head_init_prior_and_box_size(head: str) -> None:
    torch.manual_seed(0)
    model = build_detector("csp_n", 5, head=head).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, SIZE, SIZE))
    if head == "sigmoid":
        fg = out.cls_logits.sigmoid()
    else:
        probs = out.cls_logits.softmax(-1)
        fg = probs[..., :-1].sum(-1)
        assert probs[..., -1].mean().item() == pytest.approx(0.99, abs=0.005)
    assert fg.mean().item() == pytest.approx(0.01, abs=0.005)
    widths = (out.boxes[..., 2] - out.boxes[..., 0]) / out.strides  # softplus(b) = 1 -> 2 strides wide
    assert widths.mean().item() == pytest.approx(2.0, abs=0.1)


def test_prediction_layers_and_first_conv() -> None:
    model = build_detector("convnextv2_atto", NUM_CLASSES, in_channels=4, strides=(4, 8, 16), head="softmax")
    modules = dict(model.named_modules())
    names = model.prediction_layer_names()
    assert len(names) == 6
    for name in names:
        conv = modules[name]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
        assert conv.out_channels == (NUM_CLASSES + 1 if ".cls_" in name else 4)
    seen = []
    first = modules[model.first_conv_name()]
    handle = first.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    model.eval()(torch.zeros(1, 4, SIZE, SIZE))
    handle.remove()
    assert seen == [torch.Size([1, 4, SIZE, SIZE])]  # it reads the input image itself


def test_activation_is_selectable() -> None:
    relu = build_detector("csp_n", 2)
    silu = build_detector("csp_n", 2, act="silu")
    by_class = build_detector("convnextv2_atto", 2, act=nn.SiLU)
    assert any(isinstance(m, nn.ReLU) for m in relu.modules())
    assert not any(isinstance(m, nn.SiLU) for m in relu.modules())
    for model in (silu, by_class):
        assert any(isinstance(m, nn.SiLU) for m in model.modules())
        assert not any(isinstance(m, nn.ReLU | nn.GELU) for m in model.modules())
    with pytest.raises(ValueError, match="unknown activation"):
        build_detector("csp_n", 2, act="swishy")


def test_no_inplace_activations_and_bn_after_every_backbone_conv() -> None:
    model = build_detector("csp_s", 2)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    preds = set(model.prediction_layer_names())
    modules = dict(model.named_modules())
    for name in convs:  # every conv but the prediction convs sits in a ConvBNAct (conv, bn, act)
        if name in preds:
            continue
        parent = modules[name.rsplit(".", 1)[0]]
        assert isinstance(parent.bn, nn.BatchNorm2d), name


def test_neck_width_and_anchor_cache() -> None:
    model = build_detector("csp_n", 2, neck_width=48).eval()
    assert model.neck.out_channels == (48, 48, 48)
    with torch.no_grad():
        a = model(torch.zeros(1, 3, SIZE, SIZE))
        b = model(torch.zeros(3, 3, SIZE, SIZE))
        c = model(torch.zeros(1, 3, 2 * SIZE, SIZE))
    assert a.points is b.points  # cached per input size
    assert c.points.shape[0] == 2 * a.points.shape[0]
    assert not any("point" in k for k in model.state_dict())  # not buffers


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_detector("resnet_zzz", 2)
    with pytest.raises(ValueError, match="unsupported stride"):
        build_detector("csp_n", 2, strides=(8, 64))
    with pytest.raises(ValueError, match="consecutive"):
        build_detector("csp_n", 2, strides=(8, 32))
    with pytest.raises(ValueError, match="head"):
        build_detector("csp_n", 2, head="tanh")
    with pytest.raises(ValueError, match="num_classes"):
        build_detector("csp_n", 0)
    model = build_detector("csp_n", 2)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 48, 64))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(1, 4, 64, 64))


class _ExportWrapper(nn.Module):
    """ONNX outputs of the detector: (cls_logits, boxes); points/strides are constants of the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out.cls_logits, out.boxes


@pytest.mark.parametrize("name", BACKBONES)
def test_onnx_export_matches_torch(name: str) -> None:
    """TorchScript-based exporter (dynamo=False: the dynamo exporter needs onnxscript, not installed here)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    strides = STRIDE_SETS[BACKBONES.index(name) % 2]
    head = ("sigmoid", "softmax")[BACKBONES.index(name) // 2 % 2]
    torch.manual_seed(0)
    model = build_detector(name, NUM_CLASSES, strides=strides, head=head)
    _calibrate_norms(model)
    wrapper = _ExportWrapper(model).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (torch.randn(1, 3, SIZE, SIZE),), buf, opset_version=17, dynamo=False,
            input_names=["images"], output_names=["cls_logits", "boxes"],
            dynamic_axes={"images": {0: "batch"}, "cls_logits": {0: "batch"}, "boxes": {0: "batch"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, SIZE, SIZE)  # another batch size than the traced one
    cls_ort, boxes_ort = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = model.eval()(x)
    assert float(ref.cls_logits.abs().max()) > 1.0  # a non-trivial comparison
    assert np.abs(cls_ort - ref.cls_logits.numpy()).max() < 1e-4
    # Boxes in units of their level's stride (what the head predicts): in pixels the stride-32 level
    # multiplies float32 rounding by 32 (~2e-4 px at these magnitudes, as much as torch's own float32
    # error against a float64 run of the same model).
    box_err = np.abs(boxes_ort - ref.boxes.numpy()) / ref.strides.numpy()[None, :, None]
    assert box_err.max() < 1e-4
    assert np.abs(boxes_ort - ref.boxes.numpy()).max() < 1e-3


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)  # 8x8 out
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)  # 4x4 out
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.bn(self.conv1(x)))
        return self.fc(x.flatten(1))


def test_complexity_hand_count() -> None:
    report = count_params_macs(_Toy(), (2, 3, 8, 8))
    rows = report.by_name()
    assert list(rows) == ["conv1", "dw", "fc"]
    # conv1: params 8*3*3*3 + 8; MACs Cout*Hout*Wout*(Cin/groups)*k*k = 8*8*8*3*9
    assert (rows["conv1"].params, rows["conv1"].macs) == (224, 13824)
    assert rows["conv1"].in_shape == (3, 8, 8) and rows["conv1"].out_shape == (8, 8, 8)
    # depthwise stride 2: params 8*1*9; MACs 8*4*4*1*9
    assert (rows["dw"].params, rows["dw"].macs) == (72, 1152)
    # linear: params 128*10 + 10; MACs 128*10 (per image, batch 2 divided out)
    assert (rows["fc"].params, rows["fc"].macs) == (1290, 1280)
    assert report.total_macs == 13824 + 1152 + 1280
    assert report.layer_params == 224 + 72 + 1290
    assert report.total_params == 224 + 72 + 1290 + 16  # + BatchNorm weight and bias
    assert report.to_dict()["total_macs"] == report.total_macs
    assert "conv1" in report.table()


def test_complexity_of_a_detector_counts_every_conv() -> None:
    model = build_detector("csp_n", 5, strides=(4, 8, 16)).train()
    report = count_params_macs(model, (1, 3, SIZE, SIZE))
    assert model.training  # mode restored
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(report.by_name()) == set(convs)
    assert report.total_params == sum(p.numel() for p in model.parameters())
    stem = report.by_name()["backbone.stem.conv"]  # 3 -> 16 channels, 3x3 stride 2 on 64x64
    assert stem.macs == 16 * 32 * 32 * 3 * 9
    pred = report.by_name()["head.cls_preds.0"]  # 1x1 conv on the stride-4 map
    assert pred.macs == 5 * 16 * 16 * pred.in_shape[0]
    assert math.isclose(report.gmacs, report.total_macs / 1e9)

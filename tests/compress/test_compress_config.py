"""The `compress` config section: defaults, validation, and no torch import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from ghostq.core.compress_config import CompressConfig


def test_defaults_follow_ghost():
    c = CompressConfig()
    assert (c.method, c.hq.mode, c.hq.threshold, c.distill.w_det, c.distill.w_kd) == ("ghost", "rule", 0.1, 2.0, 400.0)
    assert c.quantize_first_conv and not c.quantize_prediction_convs and c.act_bits == 8


@pytest.mark.parametrize("bad", [{"method": "dorefa"}, {"layer_bits": {"neck.*": 9}}, {"hq": {"mode": "x"}},
                                 {"distill": {"scm": "always"}}, {"act_bits": 4}, {"typo": 1}])
def test_bad_values_fail(bad):
    with pytest.raises(ValidationError):
        CompressConfig(**bad)


def test_config_imports_no_torch():
    code = ("import sys; sys.modules['torch'] = None; import ghostq.compress; "
            "from ghostq.core.compress_config import CompressConfig; CompressConfig()")
    subprocess.run([sys.executable, "-c", code], check=True)

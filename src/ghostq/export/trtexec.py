"""The trtexec command lines equivalent to ``tensorrt_build.build_engine``, written to ``export/trtexec.sh``.

For a Jetson (JetPack 6 ships TensorRT 10.3 with trtexec at /usr/src/tensorrt/bin/trtexec) or any machine
where the Python package is missing. The commands are written for one TensorRT major: the installed tensorrt
package's when it imports, else the configured one (``export.tensorrt_major``, default 10).
TensorRT 10: ``typing="weak"`` adds ``--fp16`` (FP16 file), ``--int8 --fp16`` (Q/DQ file: explicit
quantization, unquantized layers in FP16); ``typing="strong"`` passes ``--stronglyTyped`` and no precision
flags (the ONNX's types decide). TensorRT 11 is always strongly typed: ``--stronglyTyped`` whatever ``typing``
says, never a precision flag (its trtexec removed ``--int8`` / ``--fp16``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from ghostq.core.atomic import atomic_write_text

PRECISIONS = ("fp32", "fp16", "int8")
MAJORS = (10, 11)


def target_tensorrt_major(configured: int = 10) -> int:
    """The TensorRT major to write commands for: the installed package's (10 or later), else ``configured``."""
    from ghostq.export.tensorrt_build import tensorrt_version

    version = tensorrt_version()
    installed = int(version.split(".")[0]) if version and version.split(".")[0].isdigit() else 0
    return installed if installed >= 10 else configured


def trtexec_command(
    onnx_file: str,
    engine_file: str,
    input_shape: Sequence[int],
    precision: str = "fp32",
    typing: str = "weak",
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    workspace_mb: int = 1024,
    timing_cache: str | None = "timing.cache",
    input_name: str = "images",
    trtexec: str = "/usr/src/tensorrt/bin/trtexec",
    extra: Sequence[str] = (),
    tensorrt_major: int | None = None,
) -> list[str]:
    """trtexec argv that builds ``engine_file`` from ``onnx_file``; ``input_shape`` is (C, H, W).

    ``tensorrt_major``: the TensorRT the command is for (None: :func:`target_tensorrt_major` with default 10);
    11 and later are always strongly typed, whatever ``typing`` says.
    """
    major = target_tensorrt_major() if tensorrt_major is None else int(tensorrt_major)
    if major < 10:
        raise ValueError(f"tensorrt_major must be 10 or later, got {major}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if typing not in ("weak", "strong"):
        raise ValueError(f"typing must be 'weak' or 'strong', got {typing!r}")
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    chw = "x".join(str(int(d)) for d in input_shape)
    cmd = [
        trtexec,
        f"--onnx={onnx_file}",
        f"--saveEngine={engine_file}",
        f"--minShapes={input_name}:{min_batch}x{chw}",
        f"--optShapes={input_name}:{opt_batch}x{chw}",
        f"--maxShapes={input_name}:{max_batch}x{chw}",
        f"--memPoolSize=workspace:{int(workspace_mb)}M",
    ]
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if typing == "strong" or major >= 11:
        cmd.append("--stronglyTyped")
    elif precision == "fp16":
        cmd.append("--fp16")
    elif precision == "int8":
        cmd += ["--int8", "--fp16"]
    return [*cmd, *extra]


def write_trtexec_script(
    path: str | Path, commands: Sequence[Sequence[str]], note: str = "", tensorrt_major: int | None = None
) -> Path:
    """A bash script running each command from the script's own folder (the export folder).

    ``tensorrt_major``: the major the commands were written for (None: :func:`target_tensorrt_major`), in the
    header so a reader on another TensorRT knows to regenerate them.
    """
    major = target_tensorrt_major() if tensorrt_major is None else int(tensorrt_major)
    kind = ("strongly typed (TensorRT 11 has no precision flags)" if major >= 11
            else "JetPack 6 ships 10.3; TensorRT 11 needs export.tensorrt_major=11")
    lines = [
        "#!/usr/bin/env bash",
        "# Build TensorRT engines from the exported ONNX files (written by `ghostq export`).",
        f"# For TensorRT {major} ({kind}).",
    ]
    if note:
        lines += [f"# {line}" for line in note.splitlines()]
    lines += ["set -euo pipefail", 'cd "$(dirname "$0")"', ""]
    lines += [shlex.join(list(c)) for c in commands]
    path = atomic_write_text(path, "\n".join(lines) + "\n")
    path.chmod(0o755)
    return path

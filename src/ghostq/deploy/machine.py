"""What a benchmark ran on: CPU model and cores, GPU (nvidia-smi), library versions, Jetson power mode.

Versions come from the installed distributions' metadata, so recording them imports nothing (torch stays out).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ghostq.deploy.jetson import jetson_info

LIBRARIES = ("ghostq", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "pillow", "torch", "onnx")
# /proc/cpuinfo flags that decide CPU inference speed (x86 "flags", ARM "Features"), in the kernel's spelling
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name from /proc/cpuinfo (x86 ``model name``; ARM ``Model`` / ``Hardware`` or the implementer
    and part numbers), else platform.processor()."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return re.sub(r"\s+", " ", fields[key])
    if "CPU implementer" in fields and "CPU part" in fields:
        return f"ARM implementer {fields['CPU implementer']} part {fields['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


def _cpuinfo_text(cpuinfo: str | None) -> str:
    if cpuinfo is not None:
        return cpuinfo
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_isa(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU's instruction sets that matter for inference, from the first ``flags`` / ``Features`` line of
    /proc/cpuinfo: the flags present (of :data:`ISA_FLAGS`), and the best int8 dot-product and bf16 paths
    (``int8``: AMX-INT8 > AVX512-VNNI > AVX-VNNI > AVX2 > NEON-DOTPROD; ``bf16``: AMX-BF16 > AVX512-BF16 > ARM-BF16)."""
    flags: set[str] = set()
    for line in _cpuinfo_text(cpuinfo).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags = set(value.split())
            break
    have = [f for f in ISA_FLAGS if f in flags]
    int8 = [("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"),
            ("i8mm", "NEON-I8MM"), ("asimddp", "NEON-DOTPROD")]  # fmt: skip
    bf16 = [("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("bf16", "ARM-BF16")]
    return {
        "flags": have,
        "int8": next((name for flag, name in int8 if flag in flags), "none"),
        "bf16": next((name for flag, name in bf16 if flag in flags), "none"),
        "amx": "amx_tile" in flags,
    }


def gpus() -> list[dict[str, str]]:
    """GPUs that nvidia-smi lists (name, driver, memory); empty without nvidia-smi or a working driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    out = []
    for line in proc.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            out.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return out


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that matter for speed (absent ones left out)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def memory_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (VmRSS / VmHWM), in MB."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        import resource

        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def machine_info() -> dict[str, Any]:
    """CPU, cores, OS, GPUs, library versions, and on a Jetson its model, L4T, power mode and clocks."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "os": platform.platform(),
        "machine": platform.machine(),
        "gpus": gpus(),
        "versions": library_versions(),
    }
    jetson = jetson_info()
    if jetson is not None:
        info["jetson"] = jetson
    return info


def cpu_threads_default() -> int:
    """Cores this process may run on (the affinity mask), the default thread count of benchmarks."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1

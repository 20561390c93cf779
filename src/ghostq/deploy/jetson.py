"""Jetson telemetry: power mode (``nvpmodel -q``), clocks (sysfs), power and load (``tegrastats``).

``tegrastats`` prints one line per interval; its fields differ by module and JetPack:
- JetPack 6 (L4T 36) starts with a timestamp and has ``GR3D_FREQ 12%`` (no clock), rails ``NAME cur mW/avg mW``
  (``VDD_IN``, ``VDD_CPU_GPU_CV``, ``VDD_SOC`` on Orin Nano / NX);
- JetPack 5 (L4T 35) has ``EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305]`` (one clock per GPC) and the same rail form
  (AGX Orin: ``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``, ``VDDQ_VDD2_1V8AO``);
- JetPack 4 (Nano, TX2, Xavier) has rails without units (``POM_5V_IN 1163/1163``, ``VDD_IN 3812/3812``),
  values in mW, and ``GR3D_FREQ 0%@76``.
Rails are read as (current, average) in mW whatever the form. The board's input power is ``VDD_IN`` (Orin
Nano / NX, Xavier NX) or ``POM_5V_IN`` (Nano, TX2); AGX Orin has no input rail: the sum of its module rails
is reported instead, and named so (``total_from``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TegraSample",
    "TegrastatsMonitor",
    "is_jetson",
    "jetson_info",
    "parse_nvpmodel",
    "parse_tegrastats",
    "read_clocks",
    "summarize",
]

_RAIL = re.compile(r"(?<![\w@])([A-Za-z][A-Za-z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_TEMP = re.compile(r"(?<![\w@])([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_STAMP = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "lfb", "cached"}
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # whole-board input power where the module reports it


@dataclass
class TegraSample:
    """One tegrastats line. Power in mW, clocks in MHz, memory in MB, temperatures in degrees C."""

    rails: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (current, average) mW
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    swap_used_mb: int | None = None
    gpu_load: int | None = None  # GR3D_FREQ %, of the current GPU clock
    gpu_mhz: list[int] = field(default_factory=list)  # one per GPC (JetPack 5); empty where not printed
    emc_load: int | None = None
    emc_mhz: int | None = None
    cpu: list[tuple[int, int | None] | None] = field(default_factory=list)  # (load %, MHz) per core, None = off
    temps: dict[str, float] = field(default_factory=dict)
    timestamp: str | None = None

    def total_power_mw(self) -> tuple[int | None, str | None]:
        """Board input power (current, mW) and the rail it comes from; else the sum of all rails."""
        for name in INPUT_RAILS:
            if name in self.rails:
                return self.rails[name][0], name
        rails = {k: v for k, v in self.rails.items() if k != "NC"}
        if not rails:
            return None, None
        return sum(v[0] for v in rails.values()), "sum(" + "+".join(rails) + ")"


def parse_tegrastats(line: str) -> TegraSample:
    """Parse one tegrastats line (JetPack 4, 5 or 6 forms); fields that are absent stay None / empty."""
    s = TegraSample()
    if m := _STAMP.match(line):
        s.timestamp = m.group(1)
    if m := _RAM.search(line):
        s.ram_used_mb, s.ram_total_mb = int(m.group(1)), int(m.group(2))
    if m := _SWAP.search(line):
        s.swap_used_mb = int(m.group(1))
    if m := _GR3D.search(line):
        s.gpu_load = int(m.group(1))
        s.gpu_mhz = [int(v) for v in m.group(2).split(",") if v] if m.group(2) else []
    if m := _EMC.search(line):
        s.emc_load = int(m.group(1))
        s.emc_mhz = int(m.group(2)) if m.group(2) else None
    if m := _CPU.search(line):
        for core in m.group(1).split(","):
            core = core.strip()
            cm = re.fullmatch(r"(\d+)%(?:@(\d+))?", core)
            s.cpu.append((int(cm.group(1)), int(cm.group(2)) if cm.group(2) else None) if cm else None)
    rest = _CPU.sub(" ", line)  # "CPU [..]" is not a rail
    for name, cur, avg in _RAIL.findall(rest):
        if name not in _NOT_RAILS:
            s.rails[name] = (int(cur), int(avg))
    for name, value in _TEMP.findall(rest):
        s.temps[name] = float(value)
    return s


def summarize(samples: list[TegraSample]) -> dict[str, Any]:
    """Mean / max over samples: input power, every rail, GPU load, RAM used (samples without a field skip it)."""
    if not samples:
        return {"samples": 0}
    out: dict[str, Any] = {"samples": len(samples)}
    totals = [s.total_power_mw() for s in samples]
    power = [p for p, _ in totals if p is not None]
    if power:
        out["power_mw_mean"] = sum(power) / len(power)
        out["power_mw_max"] = max(power)
        out["power_from"] = next(src for p, src in totals if p is not None)
    rails: dict[str, list[int]] = {}
    for s in samples:
        for name, (cur, _) in s.rails.items():
            rails.setdefault(name, []).append(cur)
    out["rails_mw_mean"] = {k: sum(v) / len(v) for k, v in rails.items()}
    loads = [s.gpu_load for s in samples if s.gpu_load is not None]
    if loads:
        out["gpu_load_mean"] = sum(loads) / len(loads)
        out["gpu_load_max"] = max(loads)
    mhz = [max(s.gpu_mhz) for s in samples if s.gpu_mhz]
    if mhz:
        out["gpu_mhz_max"] = max(mhz)
    ram = [s.ram_used_mb for s in samples if s.ram_used_mb is not None]
    if ram:
        out["ram_used_mb_max"] = max(ram)
        out["ram_total_mb"] = samples[-1].ram_total_mb
    return out


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """``nvpmodel -q`` output -> {"power_mode": "MAXN", "power_mode_id": 0} (either may be None)."""
    name, mode_id = None, None
    for line in text.splitlines():
        t = line.strip()
        if t.lower().startswith("nv power mode:"):
            name = t.split(":", 1)[1].strip() or None
        elif name is not None and mode_id is None and t.isdigit():
            mode_id = int(t)
    return {"power_mode": name, "power_mode_id": mode_id}


def is_jetson(root: Path = Path("/")) -> bool:
    """A Jetson (L4T) board: /etc/nv_tegra_release, or a device-tree model naming Jetson."""
    if (root / "etc/nv_tegra_release").is_file():
        return True
    model = root / "proc/device-tree/model"
    return model.is_file() and "jetson" in model.read_bytes().decode(errors="replace").lower()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def read_clocks(root: Path = Path("/")) -> dict[str, Any]:
    """Current clocks from sysfs (no root needed): CPU cores (MHz), GPU / other devfreq devices (MHz)."""
    cpus = sorted(
        (root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"),
        key=lambda p: int(p.parent.parent.name[3:]),
    )
    out: dict[str, Any] = {}
    cpu = [v // 1000 for p in cpus if (v := _read_int(p)) is not None]  # kHz -> MHz
    if cpu:
        out["cpu_mhz"] = cpu
    devfreq = {}
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        cur = _read_int(dev / "cur_freq")
        if cur is not None:
            devfreq[dev.name] = cur // 1_000_000  # Hz -> MHz
    if devfreq:
        out["devfreq_mhz"] = devfreq
    return out


def jetson_info(run_nvpmodel: bool = True) -> dict[str, Any] | None:
    """Model, L4T release, power mode and clocks of this Jetson; None elsewhere."""
    if not is_jetson():
        return None
    info: dict[str, Any] = {}
    model = Path("/proc/device-tree/model")
    if model.is_file():
        info["model"] = model.read_bytes().decode(errors="replace").strip("\x00 \n")
    release = Path("/etc/nv_tegra_release")
    if release.is_file():
        info["l4t"] = release.read_text(errors="replace").splitlines()[0].strip("# ").strip()
    if run_nvpmodel and shutil.which("nvpmodel"):
        try:
            proc = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
            info.update(parse_nvpmodel(proc.stdout))
        except (OSError, subprocess.SubprocessError) as err:
            info["power_mode_error"] = str(err)
    info["clocks"] = read_clocks()
    return info


class TegrastatsMonitor:
    """``tegrastats --interval MS`` in the background while a benchmark runs; ``stop()`` returns the samples.

    A no-op (no samples) where tegrastats is not installed. Use as a context manager.
    """

    def __init__(self, interval_ms: int = 100, command: list[str] | None = None) -> None:
        exe = shutil.which("tegrastats")
        self.command = command or ([exe, "--interval", str(interval_ms)] if exe else None)
        self.samples: list[TegraSample] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TegrastatsMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.command is None:
            return
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                self.samples.append(parse_tegrastats(line))

    def stop(self) -> list[TegraSample]:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._proc = None
        return self.samples

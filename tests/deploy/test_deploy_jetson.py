"""tegrastats / nvpmodel parsing on recorded lines of JetPack 4, 5 and 6 boards; sysfs clocks on a fake root.

The tegrastats lines are recorded output as published in public test fixtures and READMEs (the Datadog
agent's Jetson check tests, a tegrastats-parser README, jetson_stats notes), not written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ghostq.deploy.jetson import (
    TegrastatsMonitor,
    is_jetson,
    parse_nvpmodel,
    parse_tegrastats,
    read_clocks,
    summarize,
)

# JetPack 6 (L4T 36), Orin Nano: timestamp first, GR3D_FREQ without a clock, one average without its unit
JP6_ORIN_NANO = (
    "12-23-2024 22:54:11 RAM 3162/7620MB (lfb 4x2MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,off,off] GR3D_FREQ 1% cpu@62.843C soc2@61.968C soc0@60.625C "
    "gpu@61.687C tj@62.843C soc1@61.687C VDD_IN 3913mW/3922mW VDD_CPU_GPU_CV 598mW/598 VDD_SOC 1238mW/1237mW"
)
# JetPack 5 (L4T 35), AGX Orin: one GPU clock per GPC, no input rail (the often-quoted AGX Orin dev-kit
# sample, written down from memory of it rather than copied from a file: the one line here not copied)
JP5_AGX_ORIN = (
    "RAM 2448/30536MB (lfb 6478x4MB) SWAP 0/15268MB (cached 0MB) CPU [0%@729,0%@729,0%@729,0%@729,0%@729,"
    "0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] VIC_FREQ 729 "
    "APE 174 CV0@-256C CPU@45.968C Tboard@33C SOC2@42.375C Tdiode@34.75C SOC0@42.968C CV1@-256C GPU@-256C "
    "tj@45.968C SOC1@41.937C CV2@-256C VDD_GPU_SOC 3204mW/3204mW VDD_CPU_CV 801mW/801mW "
    "VIN_SYS_5V0 4219mW/4219mW NC 0mW/0mW VDDQ_VDD2_1V8AO 503mW/503mW NC 0mW/0mW"
)
# JetPack 5, Orin NX 16GB: the three rails of the Orin Nano / NX modules, GR3D_FREQ with one clock
JP5_ORIN_NX = (
    "RAM 6334/15388MB (lfb 1770x4MB) SWAP 491/7694MB (cached 0MB) CPU [6%@729,9%@729,5%@729,16%@729,off,off,"
    "off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@611 VIC_FREQ 729 APE 174 CV0@45.812C CPU@47.937C SOC2@46.093C "
    "SOC0@46.968C CV1@46.406C GPU@45.875C tj@48.875C SOC1@48.875C CV2@45.75C VDD_IN 5299mW/5299mW "
    "VDD_CPU_GPU_CV 773mW/773mW VDD_SOC 1424mW/1424mW"
)
# JetPack 6 (L4T 36), AGX Orin: engine fields ("NVENC off") and runs of spaces between fields
JP6_AGX_ORIN = (
    "RAM 29114/30697MB (lfb 3x4MB)    SWAP 4915/15348MB (cached 1MB) CPU [3%@729,4%@729,0%@729,1%@729,0%@2201,"
    "100%@2201,1%@2201,0%@2201,100%@2201,0%@2201,0%@2201,0%@2201] EMC_FREQ 1%@2133 GR3D_FREQ 0%@[305,305] "
    "NVENC      off  NVDEC    off NVJPG off NVJPG1    off         VIC        off          OFA           off    "
    "      NVDLA0    off       NVDLA1     off          PVA0_FREQ off         APE           174        "
    "cpu@53.062C soc2@48.25C soc0@48.843C  gpu@47.812C tj@53.062C soc1@48.968C    VDD_GPU_SOC 3205mW/3205mW "
    "VDD_CPU_CV 4405mW/4405mW VIN_SYS_5V0 4767mW/4767mW"
)
# JetPack 4 (L4T 32), Jetson Nano: rails without a unit
JP4_NANO = (
    "RAM 1766/3964MB (lfb 197x4MB) SWAP 0/2048MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [24%@1224,15%@1224,off,off] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@21C CPU@25C PMIC@100C "
    "GPU@23.5C AO@33.5C thermal@24.5C POM_5V_IN 2545/2547 POM_5V_GPU 0/0 POM_5V_CPU 549/529"
)


def test_jetpack6_orin_nano() -> None:
    s = parse_tegrastats(JP6_ORIN_NANO)
    assert s.timestamp == "12-23-2024 22:54:11"
    assert s.rails == {"VDD_IN": (3913, 3922), "VDD_CPU_GPU_CV": (598, 598), "VDD_SOC": (1238, 1237)}
    assert s.total_power_mw() == (3913, "VDD_IN")
    assert (s.ram_used_mb, s.ram_total_mb, s.swap_used_mb) == (3162, 7620, 0)
    assert s.gpu_load == 1 and s.gpu_mhz == []
    assert s.cpu == [(1, 729), (0, 729), (0, 729), (0, 729), None, None]
    assert s.temps["gpu"] == pytest.approx(61.687) and s.temps["tj"] == pytest.approx(62.843)


def test_jetpack5_agx_orin_sums_module_rails() -> None:
    s = parse_tegrastats(JP5_AGX_ORIN)
    assert s.timestamp is None
    assert s.rails["VDD_GPU_SOC"] == (3204, 3204) and s.rails["VIN_SYS_5V0"] == (4219, 4219)
    assert "RAM" not in s.rails and "SWAP" not in s.rails and "CPU" not in s.rails
    power, source = s.total_power_mw()
    assert power == 3204 + 801 + 4219 + 503 and source.startswith("sum(")
    assert s.gpu_load == 0 and s.gpu_mhz == [305, 305]
    assert (s.emc_load, s.emc_mhz) == (0, 2133)
    assert len(s.cpu) == 12 and s.temps["CV0"] == -256.0


def test_jetpack5_orin_nx() -> None:
    s = parse_tegrastats(JP5_ORIN_NX)
    assert s.rails == {"VDD_IN": (5299, 5299), "VDD_CPU_GPU_CV": (773, 773), "VDD_SOC": (1424, 1424)}
    assert s.total_power_mw() == (5299, "VDD_IN")
    assert s.gpu_load == 0 and s.gpu_mhz == [611] and s.swap_used_mb == 491
    assert s.cpu[:4] == [(6, 729), (9, 729), (5, 729), (16, 729)] and s.cpu[4:] == [None] * 4


def test_jetpack6_agx_orin_with_engine_fields_and_spaces() -> None:
    s = parse_tegrastats(JP6_AGX_ORIN)
    assert s.rails == {"VDD_GPU_SOC": (3205, 3205), "VDD_CPU_CV": (4405, 4405), "VIN_SYS_5V0": (4767, 4767)}
    assert s.total_power_mw()[0] == 3205 + 4405 + 4767
    assert (s.ram_used_mb, s.ram_total_mb) == (29114, 30697) and s.gpu_mhz == [305, 305]
    assert s.cpu[5] == (100, 2201) and s.temps["gpu"] == pytest.approx(47.812)


def test_jetpack4_nano_unitless_rails() -> None:
    s = parse_tegrastats(JP4_NANO)
    assert s.rails == {"POM_5V_IN": (2545, 2547), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (549, 529)}
    assert s.total_power_mw() == (2545, "POM_5V_IN")
    assert s.gpu_load == 0 and s.gpu_mhz == [76]
    assert s.cpu == [(24, 1224), (15, 1224), None, None]


def test_summarize_power_load_and_energy_inputs() -> None:
    samples = [parse_tegrastats(JP6_ORIN_NANO), parse_tegrastats(JP5_ORIN_NX)]
    out = summarize(samples)
    assert out["samples"] == 2
    assert out["power_mw_mean"] == pytest.approx((3913 + 5299) / 2) and out["power_mw_max"] == 5299
    assert out["power_from"] == "VDD_IN" and out["rails_mw_mean"]["VDD_SOC"] == pytest.approx((1238 + 1424) / 2)
    assert out["gpu_load_max"] == 1 and out["gpu_mhz_max"] == 611 and out["ram_used_mb_max"] == 6334
    assert summarize([]) == {"samples": 0}


def test_nvpmodel_query() -> None:
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"power_mode": "MAXN", "power_mode_id": 0}
    assert parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n") == {
        "power_mode": "15W",
        "power_mode_id": 2,
    }
    assert parse_nvpmodel("nvpmodel: command failed") == {"power_mode": None, "power_mode_id": None}


def test_clocks_and_board_detection_on_a_fake_root(tmp_path: Path) -> None:
    for cpu, khz in ((0, 1984000), (1, 729600), (10, 115200)):
        d = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
    gpu = tmp_path / "sys/class/devfreq/17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("918000000\n")
    assert read_clocks(tmp_path) == {"cpu_mhz": [1984, 729, 115], "devfreq_mhz": {"17000000.ga10b": 918}}
    assert not is_jetson(tmp_path)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert is_jetson(tmp_path)


def test_monitor_collects_lines_from_a_stand_in_tegrastats() -> None:
    script = f"import time\nfor _ in range(3):\n    print({JP6_ORIN_NANO!r}, flush=True)\ntime.sleep(30)"
    mon = TegrastatsMonitor(command=[sys.executable, "-c", script])
    mon.start()
    import time

    deadline = time.monotonic() + 20
    while len(mon.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = mon.stop()
    assert len(samples) == 3 and samples[0].total_power_mw() == (3913, "VDD_IN")

"""Hardware config: presets load, every figure is cited, bad values name field and range."""
import json
import subprocess
import sys

import pytest

from azsim import hw
from azsim.errors import ConfigError


def test_three_presets_span_mcu_to_large():
    names = hw.preset_names()
    assert {"default", "mcu", "large"} <= set(names)
    macs = {n: hw.load(n).mac_array.macs for n in names}
    assert 128 <= macs["mcu"] <= 256
    assert macs["mcu"] < macs["default"] < macs["large"]
    mcu = hw.load("mcu")
    assert mcu.offchip.kind == "flash"
    gbps = mcu.offchip.bytes_per_cycle * mcu.clock_hz / 1e9
    assert 0.4 <= gbps <= 0.6


def test_native_dict_resolves_energy_by_bits_and_sram_size():
    cfg = hw.load("default")
    n = cfg.to_native()
    assert n["mac_pj"] == cfg.energy.mac_int8_pj
    assert hw.load("default").with_overrides({"mac_array.bits": 4}).to_native()["mac_pj"] == cfg.energy.mac_int4_pj
    # 1 MiB is a table point: exact; 256 KiB lies between 32 KiB (2.5) and 1 MiB (12.5) at 3/5 in log size.
    assert n["weight_sram_pj_per_byte"] == pytest.approx(12.5)
    assert n["act_sram_pj_per_byte"] == pytest.approx(2.5 + 0.6 * 10.0)


@pytest.mark.parametrize("path,value,needle", [
    ("mac_array.rows", 0, "mac_array.rows = 0 is out of range: allowed [1, 1024]"),
    ("mac_array.cols", -4, "mac_array.cols = -4 is out of range"),
    ("mac_array.bits", 2, "mac_array.bits = 2: allowed values are 8, 4"),
    ("mac_array.dataflow", "rs", "allowed values are ws, os, is"),
    ("mac_array.zero", "drop", "allowed values are none, gate, skip"),
    ("sram.weight_bytes", 1024, "smaller than two weight tiles"),
    ("sram.activation_bytes", 0, "sram.activation_bytes = 0 is out of range"),
    ("offchip.bytes_per_cycle", 0.0, "offchip.bytes_per_cycle = 0.0 is out of range"),
    ("offchip.burst_bytes", 48, "must be a power of two"),
    ("decoder.formats", ["dense", "zip"], "unknown format 'zip'"),
    ("clock_hz", float("nan"), "clock_hz = nan is out of range"),
    ("mac_array.rows", 3.5, "must be an integer"),
])
def test_bad_values_name_field_and_range(path, value, needle):
    with pytest.raises(ConfigError) as err:
        hw.load("default").with_overrides({path: value})
    assert needle in str(err.value)


def test_unknown_and_missing_fields_and_uncited_figures(tmp_path):
    text = (hw.PRESET_DIR / "default.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[vector]\nlanes = 16", "[vector]\nlanes = 16\nwidth = 3"))
    with pytest.raises(ConfigError, match=r"bad.toml: \[vector\] has unknown field\(s\) width"):
        hw.load(bad)
    bad.write_text(text.replace('"vector.lanes" = ', '"vector.lanez" = '))
    with pytest.raises(ConfigError, match="missing: vector.lanes"):
        hw.load(bad)
    bad.write_text(text.replace("burst_bytes = 64\n", ""))
    with pytest.raises(ConfigError, match=r"\[offchip\] is missing field\(s\) burst_bytes"):
        hw.load(bad)
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        hw.load(bad)
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        hw.load("nope")
    with pytest.raises(ConfigError, match="unknown field 'rowz'"):
        hw.load("default").with_overrides({"mac_array.rowz": 3})


def test_known_formats_match_native_registry():
    from azsim._native import formats

    assert set(formats.codec_names()) == set(hw.KNOWN_FORMATS)


def test_presets_cli_lists_and_shows_with_units():
    out = subprocess.run([sys.executable, "-m", "azsim.cli", "presets"], capture_output=True, text=True, check=True)
    assert "default" in out.stdout and "mcu" in out.stdout and "GB/s" in out.stdout
    out = subprocess.run([sys.executable, "-m", "azsim.cli", "presets", "show", "mcu"],
                         capture_output=True, text=True, check=True)
    assert "offchip.bytes_per_cycle" in out.stdout and "bytes/cycle" in out.stdout and "Horowitz" in out.stdout
    out = subprocess.run([sys.executable, "-m", "azsim.cli", "presets", "show", "default", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["mac_array"]["rows"] == 32
    bad = subprocess.run([sys.executable, "-m", "azsim.cli", "presets", "show", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown preset 'nope'" in bad.stderr

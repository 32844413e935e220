"""`azsim layer`: JSON contract, flag overrides, directions, and errors."""
from __future__ import annotations

import json
import math

import pytest

from azsim.cli import main


def layer(capsys, *args) -> dict:
    rc = main(["layer", *args, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


def test_json_has_the_contract_fields(capsys):
    d = layer(capsys, "--preset", "default", "--gemm", "4,96,64")
    for key in ("compute_cycles", "total_cycles", "offchip_bytes", "weight_bytes", "macs",
                "macs_skipped"):
        assert isinstance(d[key], int), key
    for comp in ("offchip", "sram", "mac", "decoder", "vector", "leakage", "total"):
        assert comp in d["energy_pj"]
    assert d["macs"] == 4 * 96 * 64
    assert d["total_cycles"] >= d["compute_cycles"] > 0
    assert d["energy_pj"]["total"] == pytest.approx(
        sum(v for k, v in d["energy_pj"].items() if k != "total"))


def test_flags_override_preset_and_dense_cycles_follow_scalesim(capsys):
    M, K, N, r, c = 5, 40, 24, 8, 16
    d = layer(capsys, "--gemm", f"{M},{K},{N}", "--rows", str(r), "--cols", str(c),
              "--dataflow", "os", "--zero", "none")
    assert (d["rows"], d["cols"], d["dataflow"], d["zero"]) == (r, c, "os", "none")
    assert d["compute_cycles"] == math.ceil(M / r) * math.ceil(N / c) * (r + c + K - 2) - 1


def test_sparsity_directions(capsys):
    base = ["--gemm", "1,512,256", "--format", "bitmask"]
    skip = [layer(capsys, *base, "--zero", "skip", "--sparsity", s) for s in ("0", "0.5", "0.9")]
    assert skip[0]["compute_cycles"] > skip[1]["compute_cycles"] > skip[2]["compute_cycles"]
    assert skip[0]["weight_bytes"] > skip[1]["weight_bytes"] > skip[2]["weight_bytes"]
    assert skip[2]["macs_skipped"] > 0
    gate = [layer(capsys, *base, "--zero", "gate", "--sparsity", s) for s in ("0", "0.9")]
    assert gate[0]["compute_cycles"] == gate[1]["compute_cycles"]
    assert gate[1]["energy_pj"]["mac"] < gate[0]["energy_pj"]["mac"]


def test_int4_and_codebook(capsys):
    d8 = layer(capsys, "--gemm", "1,256,128")
    d4 = layer(capsys, "--gemm", "1,256,128", "--bits", "4")
    assert d4["format"] == "int4" and d4["weight_bytes"] < 0.6 * d8["weight_bytes"]
    cb = layer(capsys, "--gemm", "1,256,128", "--format", "codebook")
    assert cb["weight_bytes"] < 0.6 * d8["weight_bytes"]


def test_deterministic_with_seed(capsys):
    a = layer(capsys, "--gemm", "2,64,64", "--sparsity", "0.5", "--seed", "3")
    b = layer(capsys, "--gemm", "2,64,64", "--sparsity", "0.5", "--seed", "3")
    assert a == b


@pytest.mark.parametrize("args, needle", [
    (["--gemm", "1,2"], "--gemm"),
    (["--gemm", "1,0,4"], "--gemm"),
    (["--gemm", "1,8,8", "--sparsity", "1.0"], "--sparsity"),
    (["--gemm", "1,8,8", "--rows", "0"], "mac_array.rows"),
    (["--gemm", "1,8,8", "--format", "zip"], "format"),
    (["--gemm", "1,8,8", "--preset", "nope"], "unknown preset"),
])
def test_bad_input_is_a_clear_error(capsys, args, needle):
    rc = main(["layer", *args, "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err

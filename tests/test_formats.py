"""Weight codecs: exact round trips, golden bytes, exact sizes, hostile streams.

Run once under AddressSanitizer + UBSan (the libstdc++ preload lets ASan
intercept C++ throws from inside the extension):
  AZSIM_ASAN=1 python setup.py -q build_ext --inplace --force
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1 \
    PYTHONPATH=. python -m pytest tests/test_formats.py -q
then rebuild without AZSIM_ASAN.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azsim import compress
from azsim.compress import FORMATS
from azsim.errors import ConfigError, FormatError

CODEBOOK = ("codebook", "codebook-bitmask")


def varint_len(v):
    return max(1, math.ceil(v.bit_length() / 7))


# ---------------------------------------------------------------- generators
@st.composite
def weights(draw, bits, palette_size=None):
    """Random int8 tensors with random sparsity, long zero runs and extremes."""
    n = draw(st.one_of(st.integers(0, 3), st.integers(0, 400), st.integers(1000, 3000)))
    seed = draw(st.integers(0, 2**32 - 1))
    sparsity = draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 0.99, 1.0]) | st.floats(0.0, 1.0))
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 127) if bits == 8 else (-8, 7)
    if palette_size is None:
        vals = rng.integers(lo, hi + 1, n)
        # extremes appear often: they are where sign handling breaks
        ext = rng.random(n) < 0.2
        vals[ext] = rng.choice([lo, hi, -1, 1], ext.sum())
    else:
        palette = np.unique(np.concatenate([[lo, hi], rng.integers(lo, hi + 1, palette_size)]))
        palette = palette[:palette_size]
        vals = rng.choice(palette, n)
    w = np.where(rng.random(n) < sparsity, 0, vals).astype(np.int8)
    if n > 10 and draw(st.booleans()):  # one long zero run somewhere (EIE padding entries)
        a = int(rng.integers(0, n))
        w[a : a + int(rng.integers(1, 700))] = 0
    return w


def roundtrip(w, fmt, bits, k=16):
    data = compress.encode(w, fmt, bits=bits, codebook_k=k)
    assert isinstance(data, bytes)
    out = compress.decode(data, fmt, w.size)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, w)
    return data


# ---------------------------------------------------------------- round trips
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("fmt", ["dense", "bitmask", "rle"])
@SETTINGS
@given(data=st.data())
def test_roundtrip_value_formats(fmt, bits, data):
    w = data.draw(weights(bits))
    roundtrip(w, fmt, bits)


@pytest.mark.parametrize("bits", [8, 4])
@SETTINGS
@given(w=weights(4))
def test_roundtrip_int4(bits, w):
    roundtrip(w, "int4", bits)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("fmt", CODEBOOK)
@SETTINGS
@given(data=st.data())
def test_roundtrip_codebooks(fmt, bits, data):
    k = data.draw(st.sampled_from([2, 4, 16, 256] if bits == 8 else [2, 4, 16]))
    # zeros take a table slot in `codebook` only; codebook-bitmask may hold k nonzeros
    w = data.draw(weights(bits, palette_size=k - 1 if fmt == "codebook" else k))
    roundtrip(w, fmt, bits, k)


@pytest.mark.parametrize("fmt", FORMATS)
def test_edge_tensors(fmt):
    for w in (np.zeros(0, np.int8), np.zeros(1, np.int8), np.array([-8], np.int8),
              np.array([7], np.int8), np.zeros(5000, np.int8), np.array([0] * 1000 + [-8], np.int8),
              np.array([-8] + [0] * 1000, np.int8)):
        for bits in (8, 4):
            roundtrip(w, fmt, bits)
    if fmt not in ("int4",):
        roundtrip(np.array([-128, 127, 0, -128], np.int8), fmt, 8)


def test_accepts_wider_integer_dtypes_without_wrapping():
    w = np.array([[1, -2], [0, 127]], dtype=np.int64)
    np.testing.assert_array_equal(compress.decode(compress.encode(w, "dense"), "dense", 4), w.ravel())
    with pytest.raises(ConfigError, match=r"\[-128, 127\]"):
        compress.encode(np.array([128]), "dense")
    with pytest.raises(ConfigError, match="dtype"):
        compress.encode(np.array([0.5]), "dense")


# ---------------------------------------------------------------- golden bytes
# w = [0, 3, 0, 0, -2], derived by hand from the layouts in each codec file.
W5 = np.array([0, 3, 0, 0, -2], np.int8)
GOLDEN = [
    # header 0x01, n=5, raw bytes
    ("dense", 8, 16, "01 05 00 03 00 00 fe"),
    # nibbles (0,3)->0x30, (0,0)->0x00, (-2)->0x0e
    ("int4", 8, 16, "02 05 30 00 0e"),
    # mask 0b10010 (bits 0-4), 3 at bit 5, 0xfe at bit 13 -> 0x1fc072
    ("bitmask", 8, 16, "03 05 72 c0 1f"),
    # flag 0x08; mask 0x12, 3 at bit 5, 0xe at bit 9 -> 0x1c72
    ("bitmask", 4, 16, "0b 05 72 1c"),
    # r=2 wins (4 bytes, tie with r=3,4 -> smaller r); E=2: (1,3) (2,-2) -> 0x0fe80d
    ("rle", 8, 16, "14 05 02 0d e8 0f"),
    # log2k=2; m=3 table [-2,0,3]; indices [1,2,1,1,0] -> 0x59 at byte 3
    ("codebook", 8, 4, "15 05 03 fe 00 03 59 00"),
    # log2k=4, 4-bit table 0xe,0,3 -> 0x30e; indices 0x1121 << 12
    ("codebook", 4, 16, "3d 05 03 0e 13 12 01"),
    # log2k=1; table [-2,3]; mask 0x12 at bit 16; indices [1,0] at bit 21
    ("codebook-bitmask", 8, 2, "06 05 02 fe 03 32"),
]


@pytest.mark.parametrize("fmt,bits,k,hexstr", GOLDEN)
def test_golden_bytes(fmt, bits, k, hexstr):
    data = compress.encode(W5, fmt, bits=bits, codebook_k=k)
    assert data.hex(" ") == hexstr
    np.testing.assert_array_equal(compress.decode(bytes.fromhex(hexstr), fmt, 5), W5)


def test_golden_rle_padding_entry():
    # 300 zeros then 1: r=8 wins; a padding entry (255, 0) covers 256 weights,
    # then (44, 1). n=301 is LEB128 ad 02.
    w = np.array([0] * 300 + [1], np.int8)
    assert compress.encode(w, "rle").hex(" ") == "74 ad 02 02 ff 00 2c 01"
    # A hand-built non-optimal stream: r=1, 4-bit values, padding (1,0) then (1,7)
    np.testing.assert_array_equal(compress.decode(bytes.fromhex("0c 04 02 e1 01"), "rle", 4), [0, 0, 0, 7])


def test_golden_decode_rejects_value_zero_non_padding():
    # r=1, 4-bit: one entry (0, 0) is neither a nonzero nor a padding entry
    with pytest.raises(FormatError, match="padding"):
        compress.decode(bytes.fromhex("0c 01 01 00"), "rle", 1)


# ---------------------------------------------------------------- exact sizes
def header(n):
    return 1 + varint_len(n)


def rle_size(w, bits):
    nz = np.flatnonzero(w)
    runs = np.diff(np.concatenate([[-1], nz])) - 1
    best = None
    for r in range(1, 9):
        e = int(len(nz) + np.sum(runs >> r))
        s = varint_len(e) + math.ceil(e * (r + bits) / 8)
        best = s if best is None else min(best, s)
    return header(w.size) + best


def test_sizes_hand_examples():
    n, nnz = 1000, 100
    w = np.zeros(n, np.int8)
    w[::10] = 5
    assert compress.size_bytes(w, "dense") == 1 + 2 + 1000
    assert compress.size_bytes(w, "int4") == 1 + 2 + 500
    assert compress.size_bytes(w, "bitmask", bits=8) == 1 + 2 + (1000 + 800) // 8
    assert compress.size_bytes(w, "bitmask", bits=4) == 1 + 2 + (1000 + 400) // 8
    # runs of 9 zeros: r=4 keeps one entry per nonzero -> 100 entries x 12 bits = 150 bytes
    # (r=3 needs padding: 200 x 11 bits = 275 bytes); the first run is 0.
    assert compress.size_bytes(w, "rle", bits=8) == 1 + 2 + 1 + 150
    # one table entry (5) plus zero -> m=2, k=2: 1-bit indices
    assert compress.size_bytes(w, "codebook", bits=8, codebook_k=2) == 1 + 2 + 1 + math.ceil((16 + 1000) / 8)
    assert compress.size_bytes(w, "codebook-bitmask", bits=8, codebook_k=2) == (
        1 + 2 + 1 + math.ceil((8 + 1000 + nnz) / 8))
    assert compress.bits_per_weight(w, "int4") == pytest.approx(8 * 503 / 1000)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bits", [8, 4])
def test_size_formulas_random(seed, bits):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    lo, hi = (-128, 127) if bits == 8 else (-8, 7)
    w = rng.integers(lo, hi + 1, n).astype(np.int8)
    w[rng.random(n) < [0.0, 0.3, 0.6, 0.9, 0.97, 1.0][seed]] = 0
    nnz = int(np.count_nonzero(w))
    assert compress.size_bytes(w, "dense", bits) == header(n) + n
    assert compress.size_bytes(w, "bitmask", bits) == header(n) + math.ceil((n + nnz * bits) / 8)
    assert compress.size_bytes(w, "rle", bits) == rle_size(w, bits)
    if bits == 4:
        assert compress.size_bytes(w, "int4", bits) == header(n) + math.ceil(n / 2)
    k = 256 if bits == 8 else 16
    m = len(np.unique(w))
    mnz = len(np.unique(w[w != 0]))
    lk = int(math.log2(k))
    assert compress.size_bytes(w, "codebook", bits, k) == header(n) + varint_len(m) + math.ceil(
        (m * bits + n * lk) / 8)
    assert compress.size_bytes(w, "codebook-bitmask", bits, k) == header(n) + varint_len(mnz) + math.ceil(
        (mnz * bits + n + nnz * lk) / 8)


def test_rle_trailing_zeros_are_free():
    w = np.array([3] + [0] * 10000, np.int8)
    base = np.array([3], np.int8)
    # only the header's n grows (1 -> 2 LEB128 bytes); no entries for the tail
    assert compress.size_bytes(w, "rle") == compress.size_bytes(base, "rle") + 1


# ---------------------------------------------------------------- hostile input
def sample_streams():
    rng = np.random.default_rng(7)
    w8 = rng.integers(-128, 128, 300).astype(np.int8)
    w8[rng.random(300) < 0.7] = 0
    w8[100:250] = 0
    w4 = np.clip(w8, -8, 7).astype(np.int8)
    pal = np.where(w8 != 0, rng.choice([-100, -3, 5, 90], 300), 0).astype(np.int8)
    out = []
    for fmt in FORMATS:
        for bits in (8, 4):
            src = pal if fmt in CODEBOOK and bits == 8 else w4 if bits == 4 or fmt == "int4" else w8
            for w in (src, src[:1], src[:0]):
                out.append((fmt, bits, w, compress.encode(w, fmt, bits=bits, codebook_k=16)))
    return out


STREAMS = sample_streams()


def test_every_truncated_prefix_raises():
    for fmt, _, w, data in STREAMS:
        for cut in range(len(data)):
            with pytest.raises(FormatError):
                compress.decode(data[:cut], fmt, w.size)
        with pytest.raises(FormatError):
            compress.decode(data + b"\x00", fmt, w.size)


def test_wrong_count_or_format_raises():
    for fmt, _, w, data in STREAMS:
        with pytest.raises(FormatError, match="weights"):
            compress.decode(data, fmt, w.size + 1)
        other = FORMATS[(FORMATS.index(fmt) + 1) % len(FORMATS)]
        with pytest.raises(FormatError, match="format id"):
            compress.decode(data, other, w.size)


def test_random_corruption_decodes_or_raises():
    rng = np.random.default_rng(11)
    decoded = raised = 0
    for fmt, _, w, data in STREAMS:
        if not data:
            continue
        for _ in range(150):
            buf = bytearray(data)
            for _ in range(int(rng.integers(1, 4))):
                buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
            try:
                out = compress.decode(bytes(buf), fmt, w.size)
            except FormatError:
                raised += 1
            else:
                assert out.shape == (w.size,) and out.dtype == np.int8
                assert compress.decode_cycles(bytes(buf), fmt, w.size, 2.0, 4.0) >= 0
                decoded += 1
    assert raised > 0 and decoded > 0


def test_random_garbage_decodes_or_raises():
    rng = np.random.default_rng(12)
    for fmt in FORMATS:
        for _ in range(400):
            buf = rng.integers(0, 256, int(rng.integers(0, 24))).astype(np.uint8).tobytes()
            n = int(rng.integers(0, 40))
            try:
                out = compress.decode(buf, fmt, n)
            except FormatError:
                continue
            assert out.shape == (n,)
            compress.decode_cycles(buf, fmt, n, 1.0, 1.0)


def test_inconsistent_streams():
    # bitmask: mask says 2 nonzeros (0b11) but only one value byte follows
    with pytest.raises(FormatError, match="truncated"):
        compress.decode(bytes.fromhex("03 02 03 00"[:8]), "bitmask", 2)
    # rle: an entry whose run (3) passes the weight count n=2 (r=2, 8-bit)
    with pytest.raises(FormatError, match="past the count"):
        compress.decode(bytes.fromhex("14 02 01 07 00"), "rle", 2)
    # rle: more entries (3) than weights (2)
    with pytest.raises(FormatError, match="entry count"):
        compress.decode(bytes.fromhex("14 02 03 00 00 00 00"), "rle", 2)
    # codebook, k=2, m=1 table [5], index 1 >= m
    with pytest.raises(FormatError, match="index 1"):
        compress.decode(bytes.fromhex("05 01 01 05 01"), "codebook", 1)
    # codebook table larger than k (m=3 > k=2)
    with pytest.raises(FormatError, match="table size"):
        compress.decode(bytes.fromhex("05 01 03 00 00 00 00"), "codebook", 1)
    # codebook-bitmask: a zero in the table
    with pytest.raises(FormatError, match="is 0"):
        compress.decode(bytes.fromhex("06 01 01 00 00"), "codebook-bitmask", 1)
    # bitmask: a mask bit set but the value is 0
    with pytest.raises(FormatError, match="value is 0"):
        compress.decode(bytes.fromhex("03 01 01 00"), "bitmask", 1)
    # nonzero padding bits / reserved header bit
    with pytest.raises(FormatError, match="padding"):
        compress.decode(bytes.fromhex("02 01 f1"), "int4", 1)
    with pytest.raises(FormatError, match="reserved"):
        compress.decode(bytes.fromhex("81 01 00"), "dense", 1)
    with pytest.raises(FormatError, match="minimally"):
        compress.decode(bytes.fromhex("01 81 00 00"), "dense", 1)
    with pytest.raises(FormatError):
        compress.decode("not bytes", "dense", 1)


# ---------------------------------------------------------------- bad parameters
def test_bad_parameters_name_the_field():
    w = np.array([1, 0, -1], np.int8)
    with pytest.raises(ConfigError, match=r"format = 'zip'.*allowed: dense, int4"):
        compress.encode(w, "zip")
    with pytest.raises(ConfigError, match=r"format"):
        compress.decode(b"", "zip", 0)
    for bits in (2, 16, 0, True, "8"):
        with pytest.raises(ConfigError, match=r"bits = .*allowed: 4 or 8"):
            compress.encode(w, "bitmask", bits=bits)
    for k in (0, 1, 3, 17, 512, 2.0):
        with pytest.raises(ConfigError, match=r"codebook_k = .*power of two in \[2, 256\]"):
            compress.encode(w, "codebook", codebook_k=k)
    with pytest.raises(ConfigError, match=r"n = -1"):
        compress.decode(b"", "dense", -1)
    with pytest.raises(ConfigError, match=r"formats"):
        compress.best_lossless(w, formats=["dense", "nope"])


def test_native_errors_translate():
    from azsim._native import formats as native

    with pytest.raises(ConfigError, match="unknown weight format 'x'.*codebook-bitmask"):
        native.encode("x", np.zeros(2, np.int8))
    with pytest.raises(ConfigError, match="value_bits = 5"):
        native.encode("rle", np.zeros(2, np.int8), 5)
    with pytest.raises(FormatError):
        native.decode("rle", b"", 0)
    assert tuple(native.codec_names()) == FORMATS


def test_unrepresentable_weights():
    with pytest.raises(ConfigError, match=r"weight\[1\] = 8 .*\[-8, 7\]"):
        compress.encode(np.array([0, 8], np.int8), "int4")
    with pytest.raises(ConfigError, match=r"\[-8, 7\]"):
        compress.encode(np.array([-9], np.int8), "rle", bits=4)
    w = np.arange(-10, 10, dtype=np.int8)  # 20 distinct values
    with pytest.raises(ConfigError, match=r"20 distinct values but codebook_k = 16"):
        compress.encode(w, "codebook", codebook_k=16)
    with pytest.raises(ConfigError, match=r"19 distinct nonzero values but codebook_k = 16"):
        compress.encode(w, "codebook-bitmask", codebook_k=16)
    compress.encode(w, "codebook", codebook_k=32)


# ---------------------------------------------------------------- best lossless and decode cost
def test_best_lossless_is_the_smallest_representable():
    rng = np.random.default_rng(3)
    w = np.clip(np.round(rng.normal(0, 40, 4000)), -127, 127).astype(np.int8)
    w[rng.random(4000) < 0.9] = 0
    fmt, size = compress.best_lossless(w)
    sizes = {}
    for f in FORMATS:
        try:
            sizes[f] = compress.size_bytes(w, f)
        except ConfigError:
            pass
    assert "int4" not in sizes and "codebook" not in sizes  # cannot represent w
    assert size == min(sizes.values()) and sizes[fmt] == size
    assert fmt == "rle"
    dense = np.clip(w, -8, 7)
    dense[dense == 0] = 1
    assert compress.best_lossless(dense, bits=4)[0] == "int4"
    assert compress.best_lossless(np.zeros(100, np.int8), formats=["dense"]) == ("dense", 102)


def test_decode_cycles():
    rng = np.random.default_rng(5)
    w = rng.integers(-8, 8, 4096).astype(np.int8)
    for fmt in FORMATS:
        data = compress.encode(w, fmt, bits=4)
        base = max(math.ceil(len(data) / 4), math.ceil(4096 / 16))
        c = compress.decode_cycles(data, fmt, 4096, 4, 16)
        assert c >= base
        # slower decoders never make it faster
        assert compress.decode_cycles(data, fmt, 4096, 2, 16) >= c
        assert compress.decode_cycles(data, fmt, 4096, 4, 8) >= c
        if fmt not in CODEBOOK:
            assert c == base
    # codebook: the table (hdr 3 + varint 1 + 8 bytes) loads before indices flow
    data = compress.encode(w, "codebook", bits=4, codebook_k=16)
    table_bytes = 3 + 1 + 8
    assert compress.decode_cycles(data, "codebook", 4096, 4, 4096) == (
        math.ceil(table_bytes / 4) + math.ceil((len(data) - table_bytes) / 4))
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="bytes_per_cycle"):
            compress.decode_cycles(data, "codebook", 4096, bad, 1)
        with pytest.raises(ConfigError, match="weights_per_cycle"):
            compress.decode_cycles(data, "codebook", 4096, 1, bad)

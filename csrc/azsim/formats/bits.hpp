// Shared stream plumbing for the weight codecs: the one-byte header, LEB128
// counts, and an LSB-first bit writer / bounds-checked bit reader.
//
// Common header (every format):
//   byte 0   bits 0-2  format id (1 dense, 2 int4, 3 bitmask, 4 rle,
//                      5 codebook, 6 codebook-bitmask)
//            bit  3    1 when stored values are 4 bits wide (else 8)
//            bits 4-6  format parameter (rle: r-1; codebook*: log2(k)-1;
//                      0 for the others)
//            bit  7    reserved, 0
//   then     n         weight count, unsigned LEB128 (canonical, <= 2^40)
// A format may append more LEB128 fields, then one LSB-first bit stream whose
// last byte is zero-padded. Decoders demand the exact total size, zero
// padding and in-range fields, so every accepted stream is canonical.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "azsim/formats/format.hpp"

namespace azsim::formats::detail {

enum FormatId : uint8_t {
  kDense = 1,
  kInt4 = 2,
  kBitmask = 3,
  kRle = 4,
  kCodebook = 5,
  kCodebookBitmask = 6,
};

// Counts above this are rejected: no weight tensor is near it, and it keeps
// every bit count below (n * 17 bits) far from overflowing uint64.
constexpr uint64_t kMaxCount = uint64_t{1} << 40;

inline size_t varint_size(uint64_t v) {
  size_t s = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++s;
  }
  return s;
}

inline void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

inline size_t bytes_for_bits(uint64_t bits) { return static_cast<size_t>((bits + 7) / 8); }

[[noreturn]] inline void fail(const std::string& fmt, const std::string& what) {
  throw FormatError(fmt + " stream: " + what);
}

// Reads the byte-aligned part of a stream (header fields), bounds-checked.
class ByteCursor {
 public:
  ByteCursor(const uint8_t* data, size_t size, const char* fmt)
      : data_(data), size_(size), fmt_(fmt) {}

  uint8_t byte(const char* field) {
    if (pos_ >= size_) fail(fmt_, std::string("truncated before ") + field);
    return data_[pos_++];
  }

  uint64_t varint(const char* field, uint64_t max_value) {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (shift > 42) fail(fmt_, std::string(field) + " does not fit in 43 bits");
      uint8_t b = byte(field);
      v |= uint64_t{b & 0x7Fu} << shift;
      if (!(b & 0x80)) {
        if (b == 0 && shift > 0) fail(fmt_, std::string(field) + " is not minimally encoded");
        break;
      }
    }
    if (v > max_value)
      fail(fmt_, std::string(field) + " = " + std::to_string(v) + " exceeds its limit " +
                     std::to_string(max_value));
    return v;
  }

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const char* fmt_;
};

struct Header {
  uint8_t id = 0;
  int value_bits = 8;
  int param = 0;  // rle: r; codebook*: log2(k); else 0
  uint64_t n = 0;
};

inline void put_header(std::vector<uint8_t>& out, FormatId id, int value_bits, int param,
                       uint64_t n) {
  // param is 1..8 when used (stored minus one), 0 when the format has none.
  uint8_t b = static_cast<uint8_t>(id) | (value_bits == 4 ? 0x08 : 0x00) |
              static_cast<uint8_t>((param > 0 ? param - 1 : 0) << 4);
  out.push_back(b);
  put_varint(out, n);
}

// Parses and checks the common header. has_param: whether bits 4-6 carry a
// parameter; allow_vb4: whether the 4-bit flag may be set.
inline Header read_header(ByteCursor& c, FormatId expect, const char* fmt, bool has_param,
                          bool allow_vb4) {
  Header h;
  uint8_t b = c.byte("header");
  h.id = b & 0x07;
  if (h.id != expect)
    fail(fmt, "format id " + std::to_string(h.id) + " is not " + std::to_string(expect) +
                  " (" + fmt + ")");
  if (b & 0x80) fail(fmt, "reserved header bit 7 is set");
  h.value_bits = (b & 0x08) ? 4 : 8;
  if (h.value_bits == 4 && !allow_vb4) fail(fmt, "4-bit value flag set on a fixed-width format");
  int p = (b >> 4) & 0x07;
  if (has_param) {
    h.param = p + 1;
  } else if (p != 0) {
    fail(fmt, "header parameter bits set on a format without parameters");
  }
  h.n = c.varint("weight count", kMaxCount);
  return h;
}

inline void check_count(const Header& h, size_t n, const char* fmt) {
  if (h.n != n)
    fail(fmt, "holds " + std::to_string(h.n) + " weights but " + std::to_string(n) +
                  " were requested");
}

// Checks that the bit payload starting at the cursor is exactly
// ceil(bits/8) bytes long; call before reading it.
inline void check_payload_size(const ByteCursor& c, uint64_t bits, const char* fmt) {
  uint64_t need = (bits + 7) / 8;
  if (c.remaining() != need)
    fail(fmt, "payload is " + std::to_string(c.remaining()) + " bytes but its fields need " +
                  std::to_string(need) + (c.remaining() < need ? " (truncated)" : " (trailing bytes)"));
}

inline int popcount32(uint32_t m) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcount(m);
#else
  int c = 0;
  for (; m; m &= m - 1) ++c;
  return c;
#endif
}

inline int ctz32(uint32_t m) {  // m != 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(m);
#else
  int c = 0;
  while (!(m & 1)) { m >>= 1; ++c; }
  return c;
#endif
}

// Calls f(i) for every set bit i of a mask read by BitReader::get_mask_words,
// in increasing order.
template <class F>
void for_each_set(const std::vector<uint32_t>& words, F&& f) {
  for (size_t k = 0; k < words.size(); ++k)
    for (uint32_t m = words[k]; m; m &= m - 1) f(k * 32 + static_cast<size_t>(ctz32(m)));
}

class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>& out) : out_(out) {}
  // Writes the low `bits` bits of v (1 <= bits <= 32), LSB first.
  void put(uint32_t v, int bits) {
    acc_ |= (uint64_t{v} & ((uint64_t{1} << bits) - 1)) << fill_;
    fill_ += bits;
    if (fill_ >= 32) {  // fill_ < 32 before, so it stays below 64
      uint32_t word = static_cast<uint32_t>(acc_);
      for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(word >> (8 * i)));
      acc_ >>= 32;
      fill_ -= 32;
    }
  }
  void put_signed(int v, int bits) { put(static_cast<uint32_t>(v), bits); }
  // One presence bit per weight (1 = nonzero), 32 at a time.
  void put_mask(const int8_t* w, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
      uint32_t m = 0;
      for (int j = 0; j < 32; ++j) m |= static_cast<uint32_t>(w[i + j] != 0) << j;
      put(m, 32);
    }
    for (; i < n; ++i) put(w[i] != 0, 1);
  }
  // Zero-pads the last partial byte.
  void flush() {
    while (fill_ > 0) {
      out_.push_back(static_cast<uint8_t>(acc_));
      acc_ >>= 8;
      fill_ -= 8;
    }
    acc_ = 0;
    fill_ = 0;
  }

 private:
  std::vector<uint8_t>& out_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

// LSB-first reader over [data, data+size): throws FormatError instead of
// reading past the end.
class BitReader {
 public:
  BitReader(const uint8_t* data, size_t size, const char* fmt)
      : data_(data), size_(size), size_bits_(uint64_t{size} * 8), fmt_(fmt) {}

  // Reads `bits` (1 <= bits <= 32) bits.
  uint32_t get(int bits) {
    if (pos_ + static_cast<uint64_t>(bits) > size_bits_) fail(fmt_, "truncated bit payload");
    uint64_t byte = pos_ >> 3;
    uint64_t win = 0;
    if (byte + 8 <= size_) {
      for (int i = 0; i < 8; ++i) win |= uint64_t{data_[byte + i]} << (8 * i);
    } else {
      for (int i = 0; byte + i < size_; ++i) win |= uint64_t{data_[byte + i]} << (8 * i);
    }
    uint32_t v = static_cast<uint32_t>((win >> (pos_ & 7)) & ((uint64_t{1} << bits) - 1));
    pos_ += static_cast<uint64_t>(bits);
    return v;
  }
  int get_signed(int bits) {
    uint32_t v = get(bits);
    uint32_t sign = 1u << (bits - 1);
    return static_cast<int>(v ^ sign) - static_cast<int>(sign);
  }
  // Reads n presence bits as 32-bit words (the last one partial); returns
  // the number of ones.
  uint64_t get_mask_words(std::vector<uint32_t>& words, size_t n) {
    words.assign((n + 31) / 32, 0);
    uint64_t count = 0;
    size_t i = 0, k = 0;
    for (; i < n; i += 32, ++k) {
      words[k] = get(n - i >= 32 ? 32 : static_cast<int>(n - i));
      count += static_cast<uint64_t>(popcount32(words[k]));
    }
    return count;
  }
  uint64_t pos() const { return pos_; }
  // The zero padding after the last field must be all zero bits.
  void check_padding() const {
    for (uint64_t p = pos_; p < size_bits_; ++p)
      if ((data_[p >> 3] >> (p & 7)) & 1) fail(fmt_, "nonzero padding bits after the payload");
  }

 private:
  const uint8_t* data_;
  size_t size_;
  uint64_t size_bits_;
  uint64_t pos_ = 0;
  const char* fmt_;
};

// Validation shared by encoders (std::invalid_argument names the field).
void check_params(const std::string& fmt, const EncodeParams& p);
void check_value_range(const std::string& fmt, const int8_t* w, size_t n, int value_bits);

// ceil(a / rate) for a positive rate, as cycles.
uint64_t ceil_div_rate(uint64_t amount, double rate);
// The floor every decoder pays: reading its bytes and emitting its weights.
uint64_t base_decode_cycles(size_t size, size_t n, double bytes_per_cycle,
                            double weights_per_cycle);

// Value of codebook index `idx` read for weight i; an index past the m-entry table is malformed.
inline int8_t codebook_value(const int8_t* table, uint64_t m, uint32_t idx, size_t i, const char* fmt) {
  if (idx >= m)
    fail(fmt, "weight " + std::to_string(i) + " has index " + std::to_string(idx) +
                  " but the table holds " + std::to_string(m) + " entries");
  return table[idx];
}

// The sorted distinct values of w (zeros left out when skip_zero) and each
// value's table index (index_of[v + 128]); throws std::invalid_argument when
// there are more than k. Defined in codebook.cpp.
std::vector<int8_t> build_codebook(const std::string& fmt, const int8_t* w, size_t n,
                                   bool skip_zero, int k, uint8_t index_of[256]);
// Decoder cycles of a codebook format: the table must be loaded before the
// first index can be looked up, so its bytes are a serial prologue; the rest
// of the stream and the output overlap. Defined in codebook.cpp.
uint64_t codebook_decode_cycles(const uint8_t* data, size_t size, size_t n, double bpc,
                                double wpc, FormatId id, const char* fmt);

}  // namespace azsim::formats::detail

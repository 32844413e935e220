// `bitmask`: one presence bit per weight, then the nonzero values in order at
// value_bits (8 or 4) each. Zeros cost one bit; nothing else.
//
// Layout: header (1 byte + LEB128 n; value_bits flag), then one LSB-first
//         bit stream: n mask bits (1 = nonzero), then nnz values of
//         value_bits two's-complement bits; last byte zero-padded.
// Size  : 1 + varint(n) + ceil((n + nnz * value_bits) / 8) bytes.
#include <cstring>

#include "azsim/formats/bits.hpp"

namespace azsim::formats {
namespace {
using namespace detail;
constexpr const char* kName = "bitmask";

class Bitmask final : public Codec {
 public:
  std::string name() const override { return kName; }

  std::vector<uint8_t> encode(const int8_t* w, size_t n, const EncodeParams& p) const override {
    check_params(kName, p);
    check_value_range(kName, w, n, p.value_bits);
    size_t nnz = 0;
    for (size_t i = 0; i < n; ++i) nnz += (w[i] != 0);
    std::vector<uint8_t> out;
    out.reserve(1 + varint_size(n) + bytes_for_bits(uint64_t{n} + uint64_t{nnz} * p.value_bits));
    put_header(out, kBitmask, p.value_bits, 0, n);
    BitWriter bw(out);
    bw.put_mask(w, n);
    for (size_t i = 0; i < n; ++i)
      if (w[i] != 0) bw.put_signed(w[i], p.value_bits);
    bw.flush();
    return out;
  }

  void decode(const uint8_t* data, size_t size, int8_t* out, size_t n) const override {
    ByteCursor c(data, size, kName);
    Header h = read_header(c, kBitmask, kName, false, true);
    check_count(h, n, kName);
    if (uint64_t{c.remaining()} * 8 < n) fail(kName, "truncated inside the presence mask");
    BitReader br(data + c.pos(), c.remaining(), kName);
    std::vector<uint32_t> mask;
    uint64_t nnz = br.get_mask_words(mask, n);
    // The popcount fixes how many values must follow; any other size is a
    // truncated or padded stream.
    check_payload_size(c, uint64_t{n} + nnz * h.value_bits, kName);
    if (n) std::memset(out, 0, n);
    const int vb = h.value_bits;
    for_each_set(mask, [&](size_t i) {
      int v = br.get_signed(vb);
      if (v == 0) fail(kName, "a mask bit marks weight " + std::to_string(i) + " nonzero but its value is 0");
      out[i] = static_cast<int8_t>(v);
    });
    br.check_padding();
  }

  // Mask bits and values are both in the byte count, and a lane emits one
  // weight per slot whether it is zero or not: the common floor is the cost.
  uint64_t decode_cycles(const uint8_t*, size_t size, size_t n, double bpc,
                         double wpc) const override {
    return base_decode_cycles(size, n, bpc, wpc);
  }
};
}  // namespace

const Codec& bitmask_codec() {
  static const Bitmask c;
  return c;
}
}  // namespace azsim::formats

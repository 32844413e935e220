// `int4`: two's-complement 4-bit weights packed two per byte, the even index
// in the low nibble. Encode rejects values outside [-8, 7]; value_bits is
// implied (always 4) and not stored.
//
// Layout: header (1 byte + LEB128 n), then ceil(n/2) bytes; an odd n leaves
//         the last high nibble zero.
// Size  : 1 + varint(n) + ceil(n/2) bytes.
#include "azsim/formats/bits.hpp"

namespace azsim::formats {
namespace {
using namespace detail;
constexpr const char* kName = "int4";

class Int4 final : public Codec {
 public:
  std::string name() const override { return kName; }

  std::vector<uint8_t> encode(const int8_t* w, size_t n, const EncodeParams& p) const override {
    check_params(kName, p);
    check_value_range(kName, w, n, 4);
    std::vector<uint8_t> out;
    out.reserve(1 + varint_size(n) + (n + 1) / 2);
    put_header(out, kInt4, 8, 0, n);
    for (size_t i = 0; i + 1 < n; i += 2)
      out.push_back(static_cast<uint8_t>((w[i] & 0x0F) | ((w[i + 1] & 0x0F) << 4)));
    if (n & 1) out.push_back(static_cast<uint8_t>(w[n - 1] & 0x0F));
    return out;
  }

  void decode(const uint8_t* data, size_t size, int8_t* out, size_t n) const override {
    ByteCursor c(data, size, kName);
    Header h = read_header(c, kInt4, kName, false, false);
    check_count(h, n, kName);
    check_payload_size(c, uint64_t{n} * 4, kName);
    const uint8_t* p = data + c.pos();
    // (x ^ 8) - 8 sign-extends a 4-bit two's-complement nibble.
    for (size_t i = 0; i + 1 < n; i += 2) {
      uint8_t b = p[i / 2];
      out[i] = static_cast<int8_t>(((b & 0x0F) ^ 8) - 8);
      out[i + 1] = static_cast<int8_t>(((b >> 4) ^ 8) - 8);
    }
    if (n & 1) {
      uint8_t b = p[n / 2];
      if (b >> 4) fail(kName, "nonzero padding nibble after the last weight");
      out[n - 1] = static_cast<int8_t>(((b & 0x0F) ^ 8) - 8);
    }
  }

  uint64_t decode_cycles(const uint8_t*, size_t size, size_t n, double bpc,
                         double wpc) const override {
    return base_decode_cycles(size, n, bpc, wpc);
  }
};
}  // namespace

const Codec& int4_codec() {
  static const Int4 c;
  return c;
}
}  // namespace azsim::formats

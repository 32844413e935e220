// `dense`: plain int8, one byte per weight whatever value_bits says (a dense
// 4-bit layout is the separate `int4` format).
//
// Layout: header (1 byte + LEB128 n), then n int8 bytes.
// Size  : 1 + varint(n) + n bytes.
#include <cstring>

#include "azsim/formats/bits.hpp"

namespace azsim::formats {
namespace {
using namespace detail;
constexpr const char* kName = "dense";

class Dense final : public Codec {
 public:
  std::string name() const override { return kName; }

  std::vector<uint8_t> encode(const int8_t* w, size_t n, const EncodeParams& p) const override {
    check_params(kName, p);
    std::vector<uint8_t> out;
    out.reserve(1 + varint_size(n) + n);
    put_header(out, kDense, 8, 0, n);
    size_t h = out.size();
    out.resize(h + n);
    if (n) std::memcpy(out.data() + h, w, n);
    return out;
  }

  void decode(const uint8_t* data, size_t size, int8_t* out, size_t n) const override {
    ByteCursor c(data, size, kName);
    Header h = read_header(c, kDense, kName, false, false);
    check_count(h, n, kName);
    check_payload_size(c, uint64_t{n} * 8, kName);
    if (n) std::memcpy(out, data + c.pos(), n);
  }

  uint64_t decode_cycles(const uint8_t*, size_t size, size_t n, double bpc,
                         double wpc) const override {
    return base_decode_cycles(size, n, bpc, wpc);
  }
};
}  // namespace

const Codec& dense_codec() {
  static const Dense c;
  return c;
}
}  // namespace azsim::formats

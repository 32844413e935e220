// `rle`: EIE-style relative-index sparse (Han et al., ISCA 2016). Each entry
// is (r-bit count of zeros before it, value at value_bits). A run longer than
// 2^r - 1 zeros is broken by padding entries (run = 2^r - 1, value 0), each
// covering 2^r weights. Zeros after the last nonzero are implicit: the
// weight count n in the header says where the tensor ends, so trailing zeros
// cost nothing. The encoder tries r = 1..8 and keeps the smallest stream
// (ties: smaller r).
//
// Layout: header (1 byte: value_bits flag, r-1 in the parameter bits;
//         LEB128 n), LEB128 E (entry count, E <= n), then one LSB-first bit
//         stream of E entries, each r run bits then value_bits value bits;
//         last byte zero-padded.
// Size  : 1 + varint(n) + varint(E) + ceil(E * (r + value_bits) / 8) bytes,
//         E = nnz + sum over nonzeros of floor(zeros before it / 2^r).
#include <cstring>

#include "azsim/formats/bits.hpp"

namespace azsim::formats {
namespace {
using namespace detail;
constexpr const char* kName = "rle";
constexpr int kMaxR = 8;

class Rle final : public Codec {
 public:
  std::string name() const override { return kName; }

  std::vector<uint8_t> encode(const int8_t* w, size_t n, const EncodeParams& p) const override {
    check_params(kName, p);
    check_value_range(kName, w, n, p.value_bits);
    const int vb = p.value_bits;
    // Entry count for every r in one pass over the zero runs.
    uint64_t entries[kMaxR + 1] = {0};
    uint64_t run = 0;
    for (size_t i = 0; i < n; ++i) {
      if (w[i] == 0) {
        ++run;
        continue;
      }
      for (int r = 1; r <= kMaxR; ++r) entries[r] += 1 + (run >> r);
      run = 0;
    }
    int best_r = 1;
    uint64_t best_size = ~uint64_t{0};
    for (int r = 1; r <= kMaxR; ++r) {
      uint64_t s = varint_size(entries[r]) + bytes_for_bits(entries[r] * (r + vb));
      if (s < best_size) {
        best_size = s;
        best_r = r;
      }
    }
    const int r = best_r;
    const uint32_t max_run = (1u << r) - 1;
    const uint32_t vmask = (1u << vb) - 1;
    std::vector<uint8_t> out;
    out.reserve(1 + varint_size(n) + best_size);
    put_header(out, kRle, vb, r, n);
    put_varint(out, entries[r]);
    BitWriter bw(out);
    run = 0;
    for (size_t i = 0; i < n; ++i) {
      if (w[i] == 0) {
        ++run;
        continue;
      }
      while (run > max_run) {  // padding entry: max_run zeros, then an explicit zero
        bw.put(max_run, r + vb);
        run -= uint64_t{max_run} + 1;
      }
      bw.put(static_cast<uint32_t>(run) | ((static_cast<uint32_t>(w[i]) & vmask) << r), r + vb);
      run = 0;
    }
    bw.flush();
    return out;
  }

  void decode(const uint8_t* data, size_t size, int8_t* out, size_t n) const override {
    ByteCursor c(data, size, kName);
    Header h = read_header(c, kRle, kName, true, true);
    check_count(h, n, kName);
    // Each entry covers at least one weight, so more than n is inconsistent.
    uint64_t e = c.varint("entry count", n);
    const int r = h.param, vb = h.value_bits;
    check_payload_size(c, e * static_cast<uint64_t>(r + vb), kName);
    const uint32_t max_run = (1u << r) - 1;
    BitReader br(data + c.pos(), c.remaining(), kName);
    if (n) std::memset(out, 0, n);  // zero runs and trailing zeros
    const int eb = r + vb;
    const uint32_t sign = 1u << (vb - 1);
    uint64_t pos = 0;
    for (uint64_t k = 0; k < e; ++k) {
      uint32_t entry = br.get(eb);
      uint32_t run = entry & max_run;
      int v = static_cast<int>((entry >> r) ^ sign) - static_cast<int>(sign);
      if (v == 0 && run != max_run)
        fail(kName, "entry " + std::to_string(k) + " has value 0 but is not a padding entry (run " +
                        std::to_string(run) + " != " + std::to_string(max_run) + ")");
      if (pos + run >= n)
        fail(kName, "zero runs reach weight " + std::to_string(pos + run) + " past the count " +
                        std::to_string(n));
      pos += run;
      out[pos++] = static_cast<int8_t>(v);
    }
    br.check_padding();
  }

  // A decoder with weights_per_cycle entry lanes places one entry per lane per
  // cycle (the zero run before it is a pointer bump into a cleared output
  // buffer). Every entry covers at least one weight, so E <= n and the entry
  // rate never exceeds the output rate; padding entries cost their bytes,
  // which the byte term counts. So the common floor is the cost.
  uint64_t decode_cycles(const uint8_t*, size_t size, size_t n, double bpc,
                         double wpc) const override {
    return base_decode_cycles(size, n, bpc, wpc);
  }
};
}  // namespace

const Codec& rle_codec() {
  static const Rle c;
  return c;
}
}  // namespace azsim::formats

// `codebook-bitmask`: a presence bit per weight, and for the nonzeros only a
// log2(k)-bit index into a table of the m <= k distinct nonzero values.
// Encode rejects more than k distinct nonzero values.
//
// Layout: header (1 byte: value_bits flag, log2(k)-1 in the parameter bits;
//         LEB128 n), LEB128 m, then one LSB-first bit stream: m table values
//         at value_bits (ascending, never 0), n mask bits (1 = nonzero), nnz
//         indices of log2(k) bits; last byte zero-padded.
// Size  : 1 + varint(n) + varint(m)
//         + ceil((m * value_bits + n + nnz * log2 k) / 8) bytes.
#include <cstring>

#include "azsim/formats/bits.hpp"

namespace azsim::formats {
namespace detail {
int log2_exact(int k);  // codebook.cpp
}
namespace {
using namespace detail;
constexpr const char* kName = "codebook-bitmask";

class CodebookBitmask final : public Codec {
 public:
  std::string name() const override { return kName; }

  std::vector<uint8_t> encode(const int8_t* w, size_t n, const EncodeParams& p) const override {
    check_params(kName, p);
    check_value_range(kName, w, n, p.value_bits);
    uint8_t index_of[256] = {0};
    std::vector<int8_t> table = build_codebook(kName, w, n, true, p.codebook_k, index_of);
    const int ib = log2_exact(p.codebook_k), vb = p.value_bits;
    size_t nnz = 0;
    for (size_t i = 0; i < n; ++i) nnz += (w[i] != 0);
    std::vector<uint8_t> out;
    out.reserve(1 + varint_size(n) + varint_size(table.size()) +
                bytes_for_bits(uint64_t{table.size()} * vb + n + uint64_t{nnz} * ib));
    put_header(out, kCodebookBitmask, vb, ib, n);
    put_varint(out, table.size());
    BitWriter bw(out);
    for (int8_t v : table) bw.put_signed(v, vb);
    bw.put_mask(w, n);
    for (size_t i = 0; i < n; ++i)
      if (w[i] != 0) bw.put(index_of[w[i] + 128], ib);
    bw.flush();
    return out;
  }

  void decode(const uint8_t* data, size_t size, int8_t* out, size_t n) const override {
    ByteCursor c(data, size, kName);
    Header h = read_header(c, kCodebookBitmask, kName, true, true);
    check_count(h, n, kName);
    const int ib = h.param, vb = h.value_bits;
    uint64_t m = c.varint("table size", uint64_t{1} << ib);
    if (uint64_t{c.remaining()} * 8 < m * vb + n)
      fail(kName, "truncated inside the table or the presence mask");
    BitReader br(data + c.pos(), c.remaining(), kName);
    int8_t table[256];
    for (uint64_t j = 0; j < m; ++j) {
      table[j] = static_cast<int8_t>(br.get_signed(vb));
      if (table[j] == 0) fail(kName, "table entry " + std::to_string(j) + " is 0 (zeros live in the mask)");
    }
    std::vector<uint32_t> mask;
    uint64_t nnz = br.get_mask_words(mask, n);
    check_payload_size(c, m * vb + n + nnz * ib, kName);
    if (n) std::memset(out, 0, n);
    for_each_set(mask, [&](size_t i) {
      out[i] = codebook_value(table, m, br.get(ib), i, kName);
    });
    br.check_padding();
  }

  uint64_t decode_cycles(const uint8_t* data, size_t size, size_t n, double bpc,
                         double wpc) const override {
    return codebook_decode_cycles(data, size, n, bpc, wpc, kCodebookBitmask, kName);
  }
};
}  // namespace

const Codec& codebook_bitmask_codec() {
  static const CodebookBitmask c;
  return c;
}
}  // namespace azsim::formats

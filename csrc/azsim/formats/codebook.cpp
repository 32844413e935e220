// `codebook` ("quantized intervals"): a value table of m <= k entries and one
// log2(k)-bit table index per weight. The index width is the decoder's fixed
// k; only the m values actually used are stored. Encode rejects more than k
// distinct values.
//
// Layout: header (1 byte: value_bits flag, log2(k)-1 in the parameter bits;
//         LEB128 n), LEB128 m (table entries, m <= k), then one LSB-first bit
//         stream: m table values at value_bits (ascending), then n indices of
//         log2(k) bits; last byte zero-padded.
// Size  : 1 + varint(n) + varint(m) + ceil((m * value_bits + n * log2 k) / 8).
#include <cmath>

#include "azsim/formats/bits.hpp"

namespace azsim::formats {
namespace detail {

std::vector<int8_t> build_codebook(const std::string& fmt, const int8_t* w, size_t n,
                                   bool skip_zero, int k, uint8_t index_of[256]) {
  bool seen[256] = {false};
  for (size_t i = 0; i < n; ++i) seen[w[i] + 128] = true;
  if (skip_zero) seen[128] = false;
  std::vector<int8_t> table;
  for (int v = 0; v < 256; ++v) {
    if (!seen[v]) continue;
    index_of[v] = static_cast<uint8_t>(table.size() & 0xFF);
    table.push_back(static_cast<int8_t>(v - 128));
  }
  if (table.size() > static_cast<size_t>(k))
    throw std::invalid_argument(fmt + ": the weights hold " + std::to_string(table.size()) +
                                " distinct " + (skip_zero ? "nonzero " : "") +
                                "values but codebook_k = " + std::to_string(k) +
                                " (allowed: at most codebook_k distinct values; raise "
                                "codebook_k or cluster the weights first)");
  return table;
}

int log2_exact(int k) {
  int b = 0;
  while ((1 << b) < k) ++b;
  return b;
}

uint64_t codebook_decode_cycles(const uint8_t* data, size_t size, size_t n, double bpc,
                                double wpc, FormatId id, const char* fmt) {
  uint64_t floor_cycles = base_decode_cycles(size, n, bpc, wpc);
  ByteCursor c(data, size, fmt);
  Header h = read_header(c, id, fmt, true, true);
  uint64_t m = c.varint("table size", uint64_t{1} << h.param);
  uint64_t table_bytes = c.pos() + bytes_for_bits(m * h.value_bits);
  if (table_bytes > size) table_bytes = size;
  uint64_t rest = ceil_div_rate(size - table_bytes, bpc);
  uint64_t out = ceil_div_rate(n, wpc);
  uint64_t total = ceil_div_rate(table_bytes, bpc) + (rest > out ? rest : out);
  return total > floor_cycles ? total : floor_cycles;
}

}  // namespace detail

namespace {
using namespace detail;
constexpr const char* kName = "codebook";

class Codebook final : public Codec {
 public:
  std::string name() const override { return kName; }

  std::vector<uint8_t> encode(const int8_t* w, size_t n, const EncodeParams& p) const override {
    check_params(kName, p);
    check_value_range(kName, w, n, p.value_bits);
    uint8_t index_of[256] = {0};
    std::vector<int8_t> table = build_codebook(kName, w, n, false, p.codebook_k, index_of);
    const int ib = log2_exact(p.codebook_k), vb = p.value_bits;
    std::vector<uint8_t> out;
    out.reserve(1 + varint_size(n) + varint_size(table.size()) +
                bytes_for_bits(uint64_t{table.size()} * vb + uint64_t{n} * ib));
    put_header(out, kCodebook, vb, ib, n);
    put_varint(out, table.size());
    BitWriter bw(out);
    for (int8_t v : table) bw.put_signed(v, vb);
    for (size_t i = 0; i < n; ++i) bw.put(index_of[w[i] + 128], ib);
    bw.flush();
    return out;
  }

  void decode(const uint8_t* data, size_t size, int8_t* out, size_t n) const override {
    ByteCursor c(data, size, kName);
    Header h = read_header(c, kCodebook, kName, true, true);
    check_count(h, n, kName);
    const int ib = h.param, vb = h.value_bits;
    uint64_t m = c.varint("table size", uint64_t{1} << ib);
    check_payload_size(c, m * vb + uint64_t{n} * ib, kName);
    BitReader br(data + c.pos(), c.remaining(), kName);
    int8_t table[256];
    for (uint64_t j = 0; j < m; ++j) table[j] = static_cast<int8_t>(br.get_signed(vb));
    for (size_t i = 0; i < n; ++i) {
      out[i] = codebook_value(table, m, br.get(ib), i, kName);
    }
    br.check_padding();
  }

  uint64_t decode_cycles(const uint8_t* data, size_t size, size_t n, double bpc,
                         double wpc) const override {
    return codebook_decode_cycles(data, size, n, bpc, wpc, kCodebook, kName);
  }
};
}  // namespace

const Codec& codebook_codec() {
  static const Codebook c;
  return c;
}
}  // namespace azsim::formats

// Format registry (name -> codec) and the checks every encoder shares.
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "azsim/formats/bits.hpp"
#include "azsim/formats/format.hpp"

namespace azsim::formats {

// Defined one per file (dense.cpp, int4.cpp, ...).
const Codec& dense_codec();
const Codec& int4_codec();
const Codec& bitmask_codec();
const Codec& rle_codec();
const Codec& codebook_codec();
const Codec& codebook_bitmask_codec();

namespace {
struct Entry {
  const char* name;
  const Codec& (*get)();
};
const Entry kRegistry[] = {
    {"dense", dense_codec},       {"int4", int4_codec},         {"bitmask", bitmask_codec},
    {"rle", rle_codec},           {"codebook", codebook_codec}, {"codebook-bitmask", codebook_bitmask_codec},
};

std::string joined_names() {
  std::string s;
  for (const auto& e : kRegistry) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}
}  // namespace

const Codec& codec(const std::string& name) {
  for (const auto& e : kRegistry)
    if (name == e.name) return e.get();
  throw std::invalid_argument("format: unknown weight format '" + name +
                              "' (allowed: " + joined_names() + ")");
}

std::vector<std::string> codec_names() {
  std::vector<std::string> v;
  for (const auto& e : kRegistry) v.emplace_back(e.name);
  return v;
}

namespace detail {

void check_params(const std::string& fmt, const EncodeParams& p) {
  if (p.value_bits != 4 && p.value_bits != 8)
    throw std::invalid_argument(fmt + ": value_bits = " + std::to_string(p.value_bits) +
                                " (allowed: 4 or 8)");
  int k = p.codebook_k;
  if (k < 2 || k > 256 || (k & (k - 1)) != 0)
    throw std::invalid_argument(fmt + ": codebook_k = " + std::to_string(k) +
                                " (allowed: a power of two in [2, 256])");
}

void check_value_range(const std::string& fmt, const int8_t* w, size_t n, int value_bits) {
  if (value_bits == 8) return;
  for (size_t i = 0; i < n; ++i) {
    if (w[i] < -8 || w[i] > 7)
      throw std::invalid_argument(fmt + ": weight[" + std::to_string(i) + "] = " +
                                  std::to_string(static_cast<int>(w[i])) +
                                  " does not fit 4-bit values (allowed: [-8, 7])");
  }
}

uint64_t ceil_div_rate(uint64_t amount, double rate) {
  if (amount == 0) return 0;
  return static_cast<uint64_t>(std::ceil(static_cast<double>(amount) / rate));
}

uint64_t base_decode_cycles(size_t size, size_t n, double bytes_per_cycle,
                            double weights_per_cycle) {
  if (!(bytes_per_cycle > 0) || !std::isfinite(bytes_per_cycle))
    throw std::invalid_argument("decoder: bytes_per_cycle = " + std::to_string(bytes_per_cycle) +
                                " (allowed: a finite number > 0)");
  if (!(weights_per_cycle > 0) || !std::isfinite(weights_per_cycle))
    throw std::invalid_argument("decoder: weights_per_cycle = " +
                                std::to_string(weights_per_cycle) +
                                " (allowed: a finite number > 0)");
  uint64_t a = ceil_div_rate(size, bytes_per_cycle);
  uint64_t b = ceil_div_rate(n, weights_per_cycle);
  return a > b ? a : b;
}

}  // namespace detail
}  // namespace azsim::formats

// The weight-format interface: every compressed format is a Codec with a
// bit-exact encode/decode and the cost of decoding it on the on-chip decoder.
// One file per format; this header is the only thing the engine includes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace azsim::formats {

// A compressed stream that is malformed, truncated or inconsistent.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct EncodeParams {
  int value_bits = 8;   // 8 or 4: width of the stored (nonzero) values
  int codebook_k = 16;  // codebook entries: a power of two in [2, 256]
};

class Codec {
 public:
  virtual ~Codec() = default;
  virtual std::string name() const = 0;
  // Encodes n weights. Throws std::invalid_argument when the values cannot be
  // represented (out of the int4 range, more distinct values than codebook_k).
  virtual std::vector<uint8_t> encode(const int8_t* w, size_t n,
                                      const EncodeParams& p) const = 0;
  // Decodes exactly n weights into out. Throws FormatError when the stream is
  // malformed, truncated or holds a different count; never reads past size.
  virtual void decode(const uint8_t* data, size_t size, int8_t* out,
                      size_t n) const = 0;
  // Cycles an on-chip decoder that consumes bytes_per_cycle compressed bytes
  // and emits weights_per_cycle weights needs for this (valid) stream.
  virtual uint64_t decode_cycles(const uint8_t* data, size_t size, size_t n,
                                 double bytes_per_cycle,
                                 double weights_per_cycle) const = 0;
};

// Throws std::invalid_argument naming the allowed formats.
const Codec& codec(const std::string& name);
std::vector<std::string> codec_names();

}  // namespace azsim::formats

// The vector unit: requantization, LUT activations and elementwise ops.
// The integer rules here are specified (and reproduced bit-exactly) by
// azsim/reference.py; change both together.
#pragma once

#include <algorithm>
#include <cstdint>

namespace azsim::vec {

inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return std::min(std::max(v, lo), hi); }

// Rounding right shift with an int64 intermediate: mult < 2^31 and
// |acc| <= 2^31 keep acc * mult + 2^(shift-1) below 2^63. shift in [1, 62].
// `>>` on a negative int64 is an arithmetic (floor) shift, like numpy's.
inline int64_t requant(int64_t acc, int64_t mult, int shift) {
  return (acc * mult + (int64_t{1} << (shift - 1))) >> shift;
}

// y = (a * ma + b * mb + 2^(shift-1)) >> shift; inputs int8/int16.
inline int64_t add_rq(int64_t a, int64_t b, int64_t ma, int64_t mb, int shift) {
  return (a * ma + b * mb + (int64_t{1} << (shift - 1))) >> shift;
}

// y = (a * b * m + 2^(shift-1)) >> shift; inputs int8/int16 so |a*b| <= 2^30.
inline int64_t mul_rq(int64_t a, int64_t b, int64_t m, int shift) {
  return (a * b * m + (int64_t{1} << (shift - 1))) >> shift;
}

// int8 input: a direct 256-entry table indexed by x + 128.
inline int32_t lut8(const int16_t* table, int32_t x) { return table[x + 128]; }

// int16 input: a 513-entry table sampled every 128 input steps, linearly
// interpolated on the low 7 bits (a 512-segment piecewise-linear unit is
// what a small on-chip activation block holds; a 64K table is not).
inline int32_t lut16(const int16_t* table, int32_t x) {
  int32_t u = x + 32768;
  int32_t i = u >> 7, f = u & 127;
  int32_t a = table[i], b = table[i + 1];
  return a + (((b - a) * f + 64) >> 7);
}

}  // namespace azsim::vec

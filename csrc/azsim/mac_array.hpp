// The MAC array: exact integer kernels (what the array computes) and the
// systolic timing rules (how long it takes), including zero-skipping.
#pragma once

#include <cstdint>
#include <vector>

#include "azsim/config.hpp"

namespace azsim::mac {

// ---- exact kernels -------------------------------------------------------
// acc[m, n] = sum_k x[m, k] * w[n, k]  (int8 x int8 -> int32, two's-complement
// wrap-around like a hardware accumulator). W is (N, K) row-major; int4
// weights arrive already sign-extended to int8 in [-8, 7], so one kernel
// serves both operand widths bit-exactly.
void gemm_s8(const int8_t* x, int64_t M, int64_t K, const int8_t* w, int64_t N, int32_t* acc);

// Bit k of words[k / 64] is set when v[k] != 0 (tail bits clear).
void nonzero_mask(const int8_t* v, int64_t K, uint64_t* words);
// popcount(a & b) over bit positions [k0, k1).
uint64_t popcount_and_range(const uint64_t* a, const uint64_t* b, int64_t k0, int64_t k1);
uint64_t popcount_range(const uint64_t* a, int64_t k0, int64_t k1);
// out[n * n_ktiles + kt] = popcount(mask[n] & act) over K-tile kt's range
// [kt * tile_k, min(K, (kt + 1) * tile_k)); returns the sum over all of them.
uint64_t lane_counts(const uint64_t* mask, int64_t words, int64_t N, const uint64_t* act,
                     int64_t K, int64_t tile_k, int64_t n_ktiles, uint32_t* out);
// sum over n of popcount(mask[n] & xm) over the whole row.
uint64_t pair_count(const uint64_t* mask, int64_t words, int64_t N, const uint64_t* xm);

// ---- dense timing (SCALE-Sim style folds) --------------------------------
// Both follow csrc/azsim/systolic.hpp (SCALE-Sim v3's fold model).
// Cycles of one fold whose temporal (streamed) extent is `temporal`.
uint64_t fold_cycles(DataflowKind df, int rows, int cols, int64_t temporal);
// Compute cycles of a dense GEMM (M, K, N) on a rows x cols array.
uint64_t dense_gemm_cycles(DataflowKind df, int rows, int cols, int64_t M, int64_t K, int64_t N);

// Temporal (streamed) extent of one fold of GEMM (M, K, N) per dataflow:
// WS streams the M input rows past stationary weights, OS streams K into
// stationary outputs, IS streams the N weight columns past stationary inputs.
inline int64_t temporal_extent(DataflowKind df, int64_t M, int64_t K, int64_t N) {
  return df == DataflowKind::WS ? M : (df == DataflowKind::OS ? K : N);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace azsim::mac

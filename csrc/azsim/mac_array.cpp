#include "azsim/mac_array.hpp"

#include "azsim/systolic.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace azsim::mac {
namespace {

// Scalar reference path (also the fallback on CPUs without AVX2).
void gemm_rows_scalar(const int8_t* x, int64_t M, int64_t K, const int8_t* w, int64_t n0,
                      int64_t n1, int64_t N, int32_t* acc) {
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* xm = x + m * K;
    for (int64_t n = n0; n < n1; ++n) {
      const int8_t* wn = w + n * K;
      uint32_t s = 0;  // unsigned: wrap-around is defined
      for (int64_t k = 0; k < K; ++k)
        s += static_cast<uint32_t>(static_cast<int32_t>(xm[k]) * static_cast<int32_t>(wn[k]));
      acc[m * N + n] = static_cast<int32_t>(s);
    }
  }
}

__attribute__((target("avx2"))) inline int32_t hsum256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// int8 weights are widened to int16 in registers and multiplied with
// vpmaddwd: pair sums of int8 x int8 products never saturate there (unlike
// vpmaddubsw), so the result is exact for every input including -128.
__attribute__((target("avx2"))) void gemm_avx2(const int8_t* x, int64_t M, int64_t K,
                                               const int8_t* w, int64_t N, int32_t* acc) {
  const int64_t K16 = K / 16 * 16;
  std::vector<int16_t> xs(static_cast<size_t>(K16 > 0 ? K16 : 1));
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* xm = x + m * K;
    for (int64_t k = 0; k < K16; ++k) xs[k] = xm[k];
    const int16_t* xp = xs.data();
    int64_t n = 0;
    for (; n + 4 <= N; n += 4) {
      const int8_t* w0 = w + n * K;
      const int8_t* w1 = w0 + K;
      const int8_t* w2 = w1 + K;
      const int8_t* w3 = w2 + K;
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t k = 0; k < K16; k += 16) {
        __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + k));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                                                         reinterpret_cast<const __m128i*>(w0 + k))),
                                                     xv));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                                                         reinterpret_cast<const __m128i*>(w1 + k))),
                                                     xv));
        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                                                         reinterpret_cast<const __m128i*>(w2 + k))),
                                                     xv));
        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                                                         reinterpret_cast<const __m128i*>(w3 + k))),
                                                     xv));
      }
      uint32_t s[4] = {static_cast<uint32_t>(hsum256(a0)), static_cast<uint32_t>(hsum256(a1)),
                       static_cast<uint32_t>(hsum256(a2)), static_cast<uint32_t>(hsum256(a3))};
      for (int64_t k = K16; k < K; ++k) {
        uint32_t xk = static_cast<uint32_t>(static_cast<int32_t>(xm[k]));
        s[0] += xk * static_cast<uint32_t>(static_cast<int32_t>(w0[k]));
        s[1] += xk * static_cast<uint32_t>(static_cast<int32_t>(w1[k]));
        s[2] += xk * static_cast<uint32_t>(static_cast<int32_t>(w2[k]));
        s[3] += xk * static_cast<uint32_t>(static_cast<int32_t>(w3[k]));
      }
      for (int j = 0; j < 4; ++j) acc[m * N + n + j] = static_cast<int32_t>(s[j]);
    }
    for (; n < N; ++n) {
      const int8_t* wn = w + n * K;
      __m256i a0 = _mm256_setzero_si256();
      for (int64_t k = 0; k < K16; k += 16) {
        __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + k));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                                                         reinterpret_cast<const __m128i*>(wn + k))),
                                                     xv));
      }
      uint32_t s = static_cast<uint32_t>(hsum256(a0));
      for (int64_t k = K16; k < K; ++k)
        s += static_cast<uint32_t>(static_cast<int32_t>(xm[k])) *
             static_cast<uint32_t>(static_cast<int32_t>(wn[k]));
      acc[m * N + n] = static_cast<int32_t>(s);
    }
  }
}

// __builtin_cpu_init first: these flags are read during the library's static
// initialization, which may run before libgcc's own CPU-detection constructor.
// AZSIM_NO_SIMD=1 forces the portable paths (so tests can check them here).
const bool kNoSimd = std::getenv("AZSIM_NO_SIMD") != nullptr;
const bool kHasAvx2 = !kNoSimd && (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));

}  // namespace

void gemm_s8(const int8_t* x, int64_t M, int64_t K, const int8_t* w, int64_t N, int32_t* acc) {
  if (M <= 0 || N <= 0) return;
  if (kHasAvx2 && K >= 16) {
    // For several rows of x, go through W in blocks of rows that stay in L2
    // so each weight block is read from memory once, not M times.
    if (M == 1) return gemm_avx2(x, 1, K, w, N, acc);
    const int64_t block = std::max<int64_t>(4, (256 * 1024) / std::max<int64_t>(K, 1) / 4 * 4);
    std::vector<int32_t> tmp;
    for (int64_t n0 = 0; n0 < N; n0 += block) {
      int64_t nb = std::min(block, N - n0);
      tmp.resize(static_cast<size_t>(M * nb));
      gemm_avx2(x, M, K, w + n0 * K, nb, tmp.data());
      for (int64_t m = 0; m < M; ++m)
        std::memcpy(acc + m * N + n0, tmp.data() + m * nb, sizeof(int32_t) * nb);
    }
    return;
  }
  gemm_rows_scalar(x, M, K, w, 0, N, N, acc);
}

void nonzero_mask(const int8_t* v, int64_t K, uint64_t* words) {
  const int64_t nw = (K + 63) / 64;
  for (int64_t i = 0; i < nw; ++i) {
    uint64_t word = 0;
    const int64_t base = i * 64, end = std::min<int64_t>(K, base + 64);
    for (int64_t k = base; k < end; ++k) word |= static_cast<uint64_t>(v[k] != 0) << (k - base);
    words[i] = word;
  }
}

namespace {
inline uint64_t range_mask(int64_t word, int64_t k0, int64_t k1) {
  int64_t lo = std::max<int64_t>(k0 - word * 64, 0), hi = std::min<int64_t>(k1 - word * 64, 64);
  if (hi <= lo) return 0;
  uint64_t m = hi == 64 ? ~uint64_t{0} : ((uint64_t{1} << hi) - 1);
  return m & ~((uint64_t{1} << lo) - 1);
}

// The counting loops are compiled twice: with the POPCNT instruction (chosen
// at run time when the CPU has it) and portable, since without -march the
// builtin falls back to a slow bit-twiddling popcount.
#define AZSIM_POPCOUNT_FUNCS(SUFFIX, ATTR)                                                  \
  ATTR static uint64_t pc_and_range_##SUFFIX(const uint64_t* a, const uint64_t* b,          \
                                             int64_t k0, int64_t k1) {                      \
    if (k1 <= k0) return 0;                                                                 \
    int64_t w0 = k0 / 64, w1 = (k1 - 1) / 64;                                               \
    if (w0 == w1) return __builtin_popcountll(a[w0] & b[w0] & range_mask(w0, k0, k1));      \
    uint64_t c = __builtin_popcountll(a[w0] & b[w0] & range_mask(w0, k0, k1));              \
    for (int64_t i = w0 + 1; i < w1; ++i) c += __builtin_popcountll(a[i] & b[i]);           \
    return c + __builtin_popcountll(a[w1] & b[w1] & range_mask(w1, k0, k1));                \
  }                                                                                         \
  ATTR static uint64_t lane_counts_##SUFFIX(const uint64_t* mask, int64_t words, int64_t N, \
                                            const uint64_t* act, int64_t K, int64_t tile_k, \
                                            int64_t n_ktiles, uint32_t* out) {              \
    uint64_t total = 0;                                                                     \
    if (n_ktiles == 1 || tile_k % 64 == 0) {                                                \
      /* word-aligned K-tiles: tail bits past K are clear in both masks */                  \
      const int64_t wpt = n_ktiles == 1 ? words : tile_k / 64;                              \
      for (int64_t n = 0; n < N; ++n) {                                                     \
        const uint64_t* row = mask + n * words;                                             \
        for (int64_t kt = 0; kt < n_ktiles; ++kt) {                                         \
          const int64_t e = std::min(words, (kt + 1) * wpt);                                \
          uint64_t c = 0;                                                                   \
          for (int64_t i = kt * wpt; i < e; ++i) c += __builtin_popcountll(row[i] & act[i]); \
          out[n * n_ktiles + kt] = static_cast<uint32_t>(c);                                \
          total += c;                                                                       \
        }                                                                                   \
      }                                                                                     \
      return total;                                                                         \
    }                                                                                       \
    for (int64_t n = 0; n < N; ++n) {                                                       \
      const uint64_t* row = mask + n * words;                                               \
      for (int64_t kt = 0; kt < n_ktiles; ++kt) {                                           \
        int64_t k0 = kt * tile_k, k1 = std::min(K, k0 + tile_k);                            \
        uint32_t c = static_cast<uint32_t>(pc_and_range_##SUFFIX(row, act, k0, k1));        \
        out[n * n_ktiles + kt] = c;                                                         \
        total += c;                                                                         \
      }                                                                                     \
    }                                                                                       \
    return total;                                                                           \
  }                                                                                         \
  ATTR static uint64_t pair_count_##SUFFIX(const uint64_t* mask, int64_t words, int64_t N,  \
                                           const uint64_t* xm) {                            \
    uint64_t c = 0;                                                                         \
    for (int64_t n = 0; n < N; ++n)                                                         \
      for (int64_t i = 0; i < words; ++i) c += __builtin_popcountll(mask[n * words + i] & xm[i]); \
    return c;                                                                               \
  }

AZSIM_POPCOUNT_FUNCS(hw, __attribute__((target("popcnt"))))
AZSIM_POPCOUNT_FUNCS(sw, )
#undef AZSIM_POPCOUNT_FUNCS

const bool kHasPopcnt = !kNoSimd && (__builtin_cpu_init(), __builtin_cpu_supports("popcnt"));
}  // namespace

uint64_t popcount_and_range(const uint64_t* a, const uint64_t* b, int64_t k0, int64_t k1) {
  return kHasPopcnt ? pc_and_range_hw(a, b, k0, k1) : pc_and_range_sw(a, b, k0, k1);
}

uint64_t lane_counts(const uint64_t* mask, int64_t words, int64_t N, const uint64_t* act,
                     int64_t K, int64_t tile_k, int64_t n_ktiles, uint32_t* out) {
  return kHasPopcnt ? lane_counts_hw(mask, words, N, act, K, tile_k, n_ktiles, out)
                    : lane_counts_sw(mask, words, N, act, K, tile_k, n_ktiles, out);
}

uint64_t pair_count(const uint64_t* mask, int64_t words, int64_t N, const uint64_t* xm) {
  return kHasPopcnt ? pair_count_hw(mask, words, N, xm) : pair_count_sw(mask, words, N, xm);
}

uint64_t popcount_range(const uint64_t* a, int64_t k0, int64_t k1) {
  if (k1 <= k0) return 0;
  int64_t w0 = k0 / 64, w1 = (k1 - 1) / 64;
  uint64_t c = 0;
  if (w0 == w1) return __builtin_popcountll(a[w0] & range_mask(w0, k0, k1));
  c += __builtin_popcountll(a[w0] & range_mask(w0, k0, k1));
  for (int64_t i = w0 + 1; i < w1; ++i) c += __builtin_popcountll(a[i]);
  c += __builtin_popcountll(a[w1] & range_mask(w1, k0, k1));
  return c;
}

namespace {
systolic::Dataflow to_systolic(DataflowKind df) {
  return df == DataflowKind::WS ? systolic::Dataflow::WS
                                : (df == DataflowKind::OS ? systolic::Dataflow::OS : systolic::Dataflow::IS);
}
}  // namespace

// A fold with nothing left to stream (every lane empty under skip) is not
// issued at all, so it costs nothing; otherwise fill + drain + stream.
uint64_t fold_cycles(DataflowKind df, int rows, int cols, int64_t temporal) {
  if (temporal <= 0) return 0;
  return systolic::make_fold_plan(1, 1, 1, rows, cols, to_systolic(df))
      .fold_cycles(static_cast<uint64_t>(temporal));
}

uint64_t dense_gemm_cycles(DataflowKind df, int rows, int cols, int64_t M, int64_t K, int64_t N) {
  if (M <= 0 || K <= 0 || N <= 0) return 0;
  return systolic::dense_compute_cycles(M, K, N, rows, cols, to_systolic(df));
}

}  // namespace azsim::mac

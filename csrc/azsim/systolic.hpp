// Dense systolic-array timing, calibrated to SCALE-Sim v3 (PyPI scalesim==3.0.0).
//
// A GEMM (M,K,N): A is MxK activations, B is KxN weights, the output is MxN.
// On an RxC array SCALE-Sim maps two GEMM dimensions onto the array (one over
// the R rows, one over the C columns), streams the third through it in time,
// and runs the resulting ceil(.)xceil(.) folds back to back.  Each fold takes
// a fixed fill + drain overhead plus one cycle per streamed element.
//
// Source references are to scalesim 3.0.0 (site-packages/scalesim/...):
//  - topology_utils.load_arrays_gemm: a GEMM row "name, M, N, K," becomes a
//    conv layer with ifmap MxK, filter window K, N filters, so in the compute
//    classes T/Sr/Sc are drawn from ifmap (M x K), filter (K x N), ofmap (M x N).
//  - compute/systolic_compute_{ws,os,is}.py set_params: which dimension is
//    Sr (over rows), Sc (over columns) and T (streamed).
//  - compute/systolic_compute_*.create_*_demand_mat: the per-fold demand
//    matrices; their row count is the fold's cycle count.
//  - memory/double_buffered_scratchpad_mem.service_memory_requests: one
//    demand row per cycle; compute cycles = int(max(ofmap_serviced_cycles)),
//    the 0-based index of the last demand row, i.e. (rows in all folds) - 1.
//    With CALC bandwidth (read_buffer_estimate_bw: reads never stall) and an
//    ofmap SRAM that never fills there are no stall cycles.
//  - single_layer_sim.calc_report_data: total_cycles (printed as "Compute
//    cycles", COMPUTE_REPORT.csv column "Total Cycles") is exactly that value.
// Partial folds: SCALE-Sim pads a partial tile with null requests up to the
// full R (or C) width, so a partial fold costs as many cycles as a full one.
//
// Header-only, C++17, no dependencies beyond the standard library.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace azsim::systolic {

enum class Dataflow { WS, OS, IS };

// Which GEMM dimension a fold axis carries.
enum class GemmDim { M, K, N };

inline Dataflow parse_dataflow(const std::string& s) {
  if (s == "ws" || s == "WS") return Dataflow::WS;
  if (s == "os" || s == "OS") return Dataflow::OS;
  if (s == "is" || s == "IS") return Dataflow::IS;
  throw std::invalid_argument("dataflow: got '" + s + "', allowed: ws, os, is");
}

inline const char* dataflow_name(Dataflow df) {
  switch (df) {
    case Dataflow::WS: return "ws";
    case Dataflow::OS: return "os";
    case Dataflow::IS: return "is";
  }
  return "?";
}

inline const char* gemm_dim_name(GemmDim d) {
  switch (d) {
    case GemmDim::M: return "M";
    case GemmDim::K: return "K";
    case GemmDim::N: return "N";
  }
  return "?";
}

// SCALE-Sim reports the 0-based cycle index of the last output write
// (double_buffered_scratchpad_mem.service_memory_requests:
// total_cycles = int(max(ofmap_serviced_cycles))), one less than the number of
// demand rows it stepped through.  We subtract it once per layer to match.
constexpr uint64_t kScaleSimLastIndexOffsetCycles = 1;

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

struct FoldPlan {
  Dataflow dataflow = Dataflow::WS;
  uint64_t M = 0, K = 0, N = 0;  // GEMM: A MxK, B KxN, out MxN
  uint64_t rows = 0, cols = 0;   // array R x C

  GemmDim row_dim = GemmDim::K;     // tiled over the R array rows
  GemmDim col_dim = GemmDim::N;     // tiled over the C array columns
  GemmDim stream_dim = GemmDim::M;  // streamed in time through every fold
  // The reduction dimension K is spatial (over rows) in WS and IS and
  // temporal (streamed) in OS; zero-skipping shortens time only where the
  // skipped operand is streamed, which the engine decides from these fields.

  uint64_t row_extent = 0;     // size of row_dim
  uint64_t col_extent = 0;     // size of col_dim
  uint64_t stream_len = 0;     // size of stream_dim: cycles streamed per fold
  uint64_t row_folds = 0;      // ceil(row_extent / rows)
  uint64_t col_folds = 0;      // ceil(col_extent / cols)

  // Cycles of one fold beyond its stream length (fill + drain); see
  // make_fold_plan for the per-dataflow derivation.
  uint64_t fold_overhead_cycles = 0;

  uint64_t num_folds() const { return row_folds * col_folds; }

  // Cycles of one fold whose streamed operand is `stream` elements long.
  // The engine may pass a shorter effective length (e.g. OS under zero-skip,
  // the longest surviving reduction run among the fold's lanes).
  uint64_t fold_cycles(uint64_t stream) const {
    return fold_overhead_cycles + stream;
  }

  // Rows / columns of the array a given fold actually uses (the last fold
  // along an axis may be partial; it still costs a full fold's cycles).
  // A fold index past the last fold uses nothing (0), rather than wrapping.
  uint64_t rows_used(uint64_t row_fold) const {
    if (row_fold >= row_folds) return 0;
    uint64_t left = row_extent - row_fold * rows;
    return left < rows ? left : rows;
  }
  uint64_t cols_used(uint64_t col_fold) const {
    if (col_fold >= col_folds) return 0;
    uint64_t left = col_extent - col_fold * cols;
    return left < cols ? left : cols;
  }

  // Folds run back to back (SCALE-Sim loops `for fc: for fr:` and
  // concatenates the per-fold demand matrices), minus the final-index offset.
  uint64_t dense_cycles() const {
    uint64_t n = num_folds();
    if (n == 0) return 0;
    return n * fold_cycles(stream_len) - kScaleSimLastIndexOffsetCycles;
  }
};

inline FoldPlan make_fold_plan(uint64_t M, uint64_t K, uint64_t N,
                               uint64_t rows, uint64_t cols, Dataflow df) {
  if (rows == 0) throw std::invalid_argument("rows: got 0, allowed: >= 1");
  if (cols == 0) throw std::invalid_argument("cols: got 0, allowed: >= 1");
  FoldPlan p;
  p.dataflow = df;
  p.M = M; p.K = K; p.N = N;
  p.rows = rows; p.cols = cols;
  switch (df) {
    case Dataflow::WS:
      // systolic_compute_ws.set_params: Sr = ifmap.shape[1] = K,
      // Sc = filter.shape[1] = N, T = ifmap.shape[0] = M.
      // create_ofmap_demand_mat: per fold a (2R-1)-row prefix (weights load:
      // R rows in create_ifmap_demand_mat's prefix, plus R-1 of skew) then T
      // rows, skewed by skew_matrix (+C-1): 2R + C + T - 2 rows.
      // (ifmap: R + T + (C-1) + skew; filter: R + (R + C + T - 2); same.)
      p.row_dim = GemmDim::K; p.col_dim = GemmDim::N; p.stream_dim = GemmDim::M;
      p.row_extent = K; p.col_extent = N; p.stream_len = M;
      p.fold_overhead_cycles = 2 * rows + cols - 2;
      break;
    case Dataflow::OS:
      // systolic_compute_os.set_params: Sr = ifmap.shape[0] = M,
      // Sc = filter.shape[1] = N, T = ifmap.shape[1] = K.
      // create_ofmap_demand_mat: (T-1)-row prefix then R rows (outputs leave
      // from the bottom edge), skewed (+C-1): T + R + C - 2 rows.
      // (ifmap: T + (C-1) suffix, skewed +(R-1); same.)  No preload: both
      // operands stream, and outputs drain for R-1 + C-1 cycles.
      p.row_dim = GemmDim::M; p.col_dim = GemmDim::N; p.stream_dim = GemmDim::K;
      p.row_extent = M; p.col_extent = N; p.stream_len = K;
      p.fold_overhead_cycles = rows + cols - 2;
      break;
    case Dataflow::IS:
      // systolic_compute_is.set_params: Sr = ifmap.shape[1] = K,
      // Sc = ifmap.shape[0] = M, T = filter.shape[1] = N.
      // create_ofmap_demand_mat: (2R-1)-row prefix (inputs load) then T rows,
      // skewed (+C-1): 2R + C + T - 2 rows, the mirror image of WS.
      p.row_dim = GemmDim::K; p.col_dim = GemmDim::M; p.stream_dim = GemmDim::N;
      p.row_extent = K; p.col_extent = M; p.stream_len = N;
      p.fold_overhead_cycles = 2 * rows + cols - 2;
      break;
  }
  if (M == 0 || K == 0 || N == 0) {
    // An empty GEMM does no work; SCALE-Sim cannot express it at all.
    p.row_folds = p.col_folds = 0;
  } else {
    p.row_folds = ceil_div(p.row_extent, rows);
    p.col_folds = ceil_div(p.col_extent, cols);
  }
  return p;
}

// Dense compute cycles of GEMM (M,K,N) on an RxC array, equal to SCALE-Sim
// 3.0.0's reported compute cycles (CALC bandwidth, no stalls):
//   WS: ceil(K/R) * ceil(N/C) * (2R + C + M - 2) - 1
//   OS: ceil(M/R) * ceil(N/C) * (R + C + K - 2) - 1
//   IS: ceil(K/R) * ceil(M/C) * (2R + C + N - 2) - 1
inline uint64_t dense_compute_cycles(uint64_t M, uint64_t K, uint64_t N,
                                     uint64_t rows, uint64_t cols,
                                     Dataflow df) {
  return make_fold_plan(M, K, N, rows, cols, df).dense_cycles();
}

}  // namespace azsim::systolic

// The engine: a compiled program (weights encoded and tiled once, ops in
// order) and sessions that run it on real integer data while keeping time.
//
// Timing model of a weight-using op (each rule says why):
// * Weights are split into tiles (tile_n output channels x tile_k reduction
//   rows, aligned to the array) and each tile is compressed independently, so
//   the decoder can start on a tile as soon as that tile has arrived.
// * A tile goes DMA (off-chip -> weight SRAM) -> decoder -> MAC array. Both
//   the compressed and the decoded buffers are doubled, so the three stages of
//   consecutive tiles overlap (3-stage pipeline): DMA of tile t waits until
//   the decoder has drained tile t-2's slot, decode of t waits for compute of
//   t-2 to free its decoded slot.
// * Array idle time before a tile is a stall: the part of it before the tile
//   finished arriving is a memory stall, the rest a decoder stall. DMA idle
//   time because both slots are still full is reported as compute
//   backpressure (stall_compute_cycles; it does not add to the op's time).
// * Resident weights (placed at compile time) live compressed in weight SRAM
//   after their first load: DMA once per session, decode on every use
//   (decoding is what turns the stored stream into array operands).
// * No prefetch across ops: each op's pipeline starts empty, which is what a
//   simple in-order NPU sequencer does.
// * Activations live in activation SRAM and never spill (compile checks that
//   one op's inputs and outputs fit), so off-chip writes stay 0 here.
// * A Session is not thread-safe; distinct Sessions may run in parallel
//   threads (the binding releases the GIL while simulating).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "azsim/config.hpp"
#include "azsim/dram.hpp"
#include "azsim/energy.hpp"

namespace azsim {

enum class DType : int { I8 = 0, I16 = 1, I32 = 2 };
inline int dtype_bytes(DType d) { return d == DType::I8 ? 1 : (d == DType::I16 ? 2 : 4); }

struct Buffer {
  DType dtype = DType::I8;
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> i8;
  std::vector<int16_t> i16;
  std::vector<int32_t> i32;
  void resize(DType d, int64_t r, int64_t c);
  int64_t size() const { return rows * cols; }
  int64_t get(int64_t i) const {
    return dtype == DType::I8 ? i8[i] : (dtype == DType::I16 ? i16[i] : i32[i]);
  }
  void set_clamped(int64_t i, int64_t v);  // saturates to dtype
  void* data();
};

struct Tile {
  int64_t n0, n1, k0, k1;
  uint64_t bytes;          // compressed stream size, all metadata included
  uint64_t decode_cycles;  // on this config's decoder
};

struct Weight {
  std::string name, format;
  int bits = 8;
  int64_t N = 0, K = 0, tile_n = 0, tile_k = 0, n_ktiles = 0;
  std::vector<int8_t> w;       // decoded (N, K), row-major: what the array sees
  std::vector<uint64_t> mask;  // nonzero bitmask, `words` per row
  int64_t words = 0;
  std::vector<Tile> tiles;     // N-blocks outer, K-blocks inner (WS order)
  std::vector<uint16_t> colcnt;  // per tile, per k in [k0,k1): nonzeros over n in [n0,n1)
  std::vector<int64_t> colcnt_off;
  uint64_t bytes = 0;
  bool resident = false;
};

enum class OpKind { MatMul, Add, Mul, Lut, Requant, Lstm, Embed };

struct Op {
  OpKind kind = OpKind::MatMul;
  std::string name;
  std::vector<int> in, out;
  int weight = -1, weight2 = -1;
  std::vector<int32_t> bias, mult, shift, mult2, shift2;
  bool requant = true;            // matmul: false = raw int32 accumulators out
  DType out_dtype = DType::I8;
  int64_t ma = 0, mb = 0;
  int sh = 1;
  std::vector<int16_t> table, table2;
  // 513-entry int16-input tables expanded to all 65536 inputs at compile time
  // (interpolation is a pure function of the input, so this is exact).
  std::vector<int16_t> full, full2;
  int64_t h_mult = 0;
  int h_shift = 1;
  int64_t hidden = 0;
};

struct TensorDesc {
  std::string name;
  DType dtype;
  int64_t cols;
};

class Program {
 public:
  explicit Program(HwConfig cfg) : cfg_(std::move(cfg)) {}
  int add_tensor(const std::string& name, DType dtype, int64_t cols);
  // Tiles, encodes (with the named codec), decodes back and caches the decoded
  // weights plus per-tile sizes and decode cycles: all per-call work after
  // this is the matmul and the activation-dependent counts.
  int add_weight(const std::string& name, const int8_t* w, int64_t N, int64_t K, int bits,
                 const std::string& format, int64_t tile_n, int64_t tile_k, int codebook_k);
  void set_resident(int wid, bool r) { weights_.at(wid).resident = r; }
  int add_op(Op op);

  const HwConfig& cfg() const { return cfg_; }
  const std::vector<Weight>& weights() const { return weights_; }
  const std::vector<Op>& ops() const { return ops_; }
  const std::vector<TensorDesc>& tensors() const { return tensors_; }

 private:
  HwConfig cfg_;
  std::vector<TensorDesc> tensors_;
  std::vector<Weight> weights_;
  std::vector<Op> ops_;
};

struct RunResult {
  uint64_t start_cycle = 0, end_cycle = 0;
  std::vector<Counters> per_op;
};

class Session {
 public:
  explicit Session(std::shared_ptr<const Program> p);
  Buffer& buffer(int tid) { return bufs_.at(tid); }
  // Runs the given ops once, in order; their inputs must be in their buffers.
  RunResult run(uint64_t start_cycle, const std::vector<int>& op_ids);
  void reset();  // forget loaded resident weights (a fresh power-up)
  uint64_t free_cycle() const { return free_cycle_; }

 private:
  struct PipeItem {
    const Weight* w;
    size_t tile;
    uint64_t compute_cycles;
  };
  // Runs the DMA/decode/compute pipeline over the items; fills the timing
  // and traffic counters; returns the op's pipeline cycles.
  uint64_t pipeline(const std::vector<PipeItem>& items, Counters& k);
  // Functional matmul plus its MAC counts and per-tile compute cycles.
  void matmul_core(const Weight& W, const int8_t* x, int64_t M, int32_t* acc, Counters& k,
                   std::vector<PipeItem>& items);
  void exec_matmul(const Op& op, Counters& k);
  void exec_lstm(const Op& op, Counters& k);
  void exec_embed(const Op& op, Counters& k);
  void exec_vector(const Op& op, Counters& k);
  void add_vector_stage(int64_t elems, Counters& k);

  std::shared_ptr<const Program> prog_;
  Dram dram_;
  std::vector<Buffer> bufs_;
  std::vector<char> loaded_;
  uint64_t free_cycle_ = 0;
  // scratch reused across calls (no allocation per call in steady state)
  std::vector<int32_t> acc_, acc2_;
  std::vector<uint64_t> xmask_, xact_;
  std::vector<uint32_t> lanecnt_;
  std::vector<PipeItem> items_;
};

}  // namespace azsim

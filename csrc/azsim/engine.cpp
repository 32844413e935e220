#include "azsim/engine.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "azsim/formats/format.hpp"
#include "azsim/mac_array.hpp"
#include "azsim/vector_unit.hpp"

namespace azsim {

using mac::ceil_div;

// ---------------------------------------------------------------- buffers --
void Buffer::resize(DType d, int64_t r, int64_t c) {
  dtype = d;
  rows = r;
  cols = c;
  size_t n = static_cast<size_t>(r * c);
  if (d == DType::I8) i8.resize(n);
  else if (d == DType::I16) i16.resize(n);
  else i32.resize(n);
}

void Buffer::set_clamped(int64_t i, int64_t v) {
  if (dtype == DType::I8) i8[i] = static_cast<int8_t>(vec::clamp64(v, -128, 127));
  else if (dtype == DType::I16) i16[i] = static_cast<int16_t>(vec::clamp64(v, -32768, 32767));
  else i32[i] = static_cast<int32_t>(vec::clamp64(v, INT32_MIN, INT32_MAX));
}

void* Buffer::data() {
  if (dtype == DType::I8) return i8.data();
  if (dtype == DType::I16) return i16.data();
  return i32.data();
}

// ---------------------------------------------------------------- program --
int Program::add_tensor(const std::string& name, DType dtype, int64_t cols) {
  tensors_.push_back({name, dtype, cols});
  return static_cast<int>(tensors_.size() - 1);
}

int Program::add_weight(const std::string& name, const int8_t* w, int64_t N, int64_t K, int bits,
                        const std::string& format, int64_t tile_n, int64_t tile_k,
                        int codebook_k) {
  if (N <= 0 || K <= 0) throw std::invalid_argument(name + ": weight shape must be positive");
  if (tile_n <= 0 || tile_k <= 0)
    throw std::invalid_argument(name + ": tile_n and tile_k must be >= 1");
  const formats::Codec& codec = formats::codec(format);
  formats::EncodeParams p;
  p.value_bits = bits;
  p.codebook_k = codebook_k;
  Weight W;
  W.name = name;
  W.format = format;
  W.bits = bits;
  W.N = N;
  W.K = K;
  W.tile_n = std::min(tile_n, N);
  W.tile_k = std::min(tile_k, K);
  W.n_ktiles = ceil_div(K, W.tile_k);
  W.w.assign(static_cast<size_t>(N * K), 0);
  std::vector<int8_t> block, dec;
  for (int64_t n0 = 0; n0 < N; n0 += W.tile_n) {
    int64_t n1 = std::min(N, n0 + W.tile_n);
    for (int64_t k0 = 0; k0 < K; k0 += W.tile_k) {
      int64_t k1 = std::min(K, k0 + W.tile_k);
      size_t cnt = static_cast<size_t>((n1 - n0) * (k1 - k0));
      block.resize(cnt);
      for (int64_t n = n0; n < n1; ++n)
        std::copy(w + n * K + k0, w + n * K + k1, block.begin() + (n - n0) * (k1 - k0));
      std::vector<uint8_t> stream = codec.encode(block.data(), cnt, p);
      dec.assign(cnt, 0);
      codec.decode(stream.data(), stream.size(), dec.data(), cnt);
      Tile t{n0, n1, k0, k1, stream.size(),
             codec.decode_cycles(stream.data(), stream.size(), cnt, cfg_.decoder_bytes_per_cycle,
                                 cfg_.decoder_weights_per_cycle)};
      // The array computes with what the decoder produced, not the original.
      for (int64_t n = n0; n < n1; ++n)
        std::copy(dec.begin() + (n - n0) * (k1 - k0), dec.begin() + (n - n0 + 1) * (k1 - k0),
                  W.w.begin() + n * K + k0);
      W.colcnt_off.push_back(static_cast<int64_t>(W.colcnt.size()));
      for (int64_t k = k0; k < k1; ++k) {
        uint16_t c = 0;
        for (int64_t n = n0; n < n1; ++n) c += W.w[n * K + k] != 0;
        W.colcnt.push_back(c);
      }
      W.bytes += t.bytes;
      W.tiles.push_back(t);
    }
  }
  W.words = (K + 63) / 64;
  W.mask.assign(static_cast<size_t>(N * W.words), 0);
  for (int64_t n = 0; n < N; ++n) mac::nonzero_mask(W.w.data() + n * K, K, W.mask.data() + n * W.words);
  weights_.push_back(std::move(W));
  return static_cast<int>(weights_.size() - 1);
}

namespace {
std::vector<int16_t> expand_lut16(const std::vector<int16_t>& t) {
  std::vector<int16_t> full;
  if (t.size() != 513) return full;
  full.resize(65536);
  for (int32_t x = -32768; x < 32768; ++x) full[x + 32768] = static_cast<int16_t>(vec::lut16(t.data(), x));
  return full;
}
}  // namespace

int Program::add_op(Op op) {
  op.full = expand_lut16(op.table);
  op.full2 = expand_lut16(op.table2);
  ops_.push_back(std::move(op));
  return static_cast<int>(ops_.size() - 1);
}

// ---------------------------------------------------------------- session --
Session::Session(std::shared_ptr<const Program> p)
    : prog_(std::move(p)), dram_(prog_->cfg()), bufs_(prog_->tensors().size()),
      loaded_(prog_->weights().size(), 0) {
  for (size_t i = 0; i < bufs_.size(); ++i)
    bufs_[i].resize(prog_->tensors()[i].dtype, 0, prog_->tensors()[i].cols);
}

void Session::reset() {
  std::fill(loaded_.begin(), loaded_.end(), 0);
  free_cycle_ = 0;
}

RunResult Session::run(uint64_t start_cycle, const std::vector<int>& op_ids) {
  const HwConfig& c = prog_->cfg();
  RunResult r;
  r.start_cycle = std::max(start_cycle, free_cycle_);
  r.per_op.resize(op_ids.size());
  for (size_t i = 0; i < op_ids.size(); ++i) {
    const Op& op = prog_->ops().at(static_cast<size_t>(op_ids[i]));
    Counters& k = r.per_op[i];
    k.fill(0.0);
    switch (op.kind) {
      case OpKind::MatMul: exec_matmul(op, k); break;
      case OpKind::Lstm: exec_lstm(op, k); break;
      case OpKind::Embed: exec_embed(op, k); break;
      default: exec_vector(op, k); break;
    }
    apply_energy(c, k);
  }
  uint64_t total = 0;
  for (const Counters& k : r.per_op) total += static_cast<uint64_t>(k[kCycles]);
  r.end_cycle = r.start_cycle + total;
  free_cycle_ = r.end_cycle;
  return r;
}

void Session::add_vector_stage(int64_t elems, Counters& k) {
  if (elems <= 0) return;
  k[kVectorCycles] += static_cast<double>(ceil_div(elems, prog_->cfg().vector_lanes));
  k[kVectorOps] += static_cast<double>(elems);
}

uint64_t Session::pipeline(const std::vector<PipeItem>& items, Counters& k) {
  // Times relative to the op start. ready = the tile is in weight SRAM.
  uint64_t dma_free = 0, dec_end1 = 0, dec_end2 = 0, c_end1 = 0, c_end2 = 0;
  uint64_t stall_mem = 0, stall_dec = 0, backpressure = 0, compute = 0;
  for (const PipeItem& it : items) {
    const Tile& t = it.w->tiles[it.tile];
    const int wid = static_cast<int>(it.w - prog_->weights().data());
    const bool fetch = !(it.w->resident && loaded_[wid]);
    uint64_t ready = 0;
    k[kWeightSramReadBytes] += static_cast<double>(t.bytes);
    if (fetch) {
      uint64_t start = std::max(dma_free, dec_end2);
      if (dec_end2 > dma_free) backpressure += dec_end2 - dma_free;
      ready = start + dram_.transfer_cycles(t.bytes);
      dma_free = ready;
      k[kOffchipReadBytes] += static_cast<double>(dram_.bus_bytes(t.bytes));
      k[kWeightSramWriteBytes] += static_cast<double>(t.bytes);
    }
    uint64_t dec_start = std::max({dec_end1, ready, c_end2});
    uint64_t dec_end = dec_start + t.decode_cycles;
    uint64_t c_start = std::max(c_end1, dec_end);
    uint64_t stall = c_start - c_end1;
    uint64_t mem = ready > c_end1 ? std::min(stall, ready - c_end1) : 0;
    stall_mem += mem;
    stall_dec += stall - mem;
    uint64_t c_end = c_start + it.compute_cycles;
    compute += it.compute_cycles;
    dec_end2 = dec_end1;
    dec_end1 = dec_end;
    c_end2 = c_end1;
    c_end1 = c_end;
  }
  // Resident weights count as loaded once every tile of them went through.
  for (const PipeItem& it : items)
    if (it.w->resident) loaded_[static_cast<size_t>(it.w - prog_->weights().data())] = 1;
  k[kComputeCycles] += static_cast<double>(compute);
  k[kStallMemoryCycles] += static_cast<double>(stall_mem);
  k[kStallDecoderCycles] += static_cast<double>(stall_dec);
  k[kStallComputeCycles] += static_cast<double>(backpressure);
  return c_end1;
}

void Session::matmul_core(const Weight& W, const int8_t* x, int64_t M, int32_t* acc, Counters& k,
                          std::vector<PipeItem>& items) {
  const HwConfig& c = prog_->cfg();
  const int64_t N = W.N, K = W.K, R = c.rows, C = c.cols;
  mac::gemm_s8(x, M, K, W.w.data(), N, acc);

  const double dense_macs = static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N);
  k[kMacs] += dense_macs;
  k[kDecodedBytes] += static_cast<double>(ceil_div(N * K * W.bits, 8));
  k[kWeightBytes] += static_cast<double>(W.bytes);
  // Activations are re-read from SRAM once per pass over a group of output
  // channels (WS/OS hold C channels at a time); IS keeps them stationary.
  const int64_t passes = c.dataflow == DataflowKind::IS ? 1 : ceil_div(N, C);
  k[kActSramReadBytes] += static_cast<double>(M * K * passes);

  const bool skip = c.zero == ZeroMode::Skip, gate = c.zero == ZeroMode::Gate;
  if (skip || gate) {
    xmask_.assign(static_cast<size_t>(M * W.words), 0);
    xact_.assign(static_cast<size_t>(W.words), 0);
    for (int64_t m = 0; m < M; ++m) {
      mac::nonzero_mask(x + m * K, K, xmask_.data() + m * W.words);
      for (int64_t i = 0; i < W.words; ++i) xact_[i] |= xmask_[m * W.words + i];
    }
  }
  if (gate) {
    // Every MAC runs; those with a zero operand are clock-gated.
    double nz = 0;
    for (int64_t m = 0; m < M; ++m)
      nz += static_cast<double>(mac::pair_count(W.mask.data(), W.words, N, xmask_.data() + m * W.words));
    k[kMacsExecuted] += dense_macs;
    k[kMacsGated] += dense_macs - nz;
  } else if (!skip) {
    k[kMacsExecuted] += dense_macs;
  }
  if (skip) {
    // lane count per (n, K-tile): nonzero weights meeting an active
    // activation column (a column counts as zero only when it is zero for
    // every row of x: then no row needs it and it can be compacted away).
    lanecnt_.resize(static_cast<size_t>(N * W.n_ktiles));
    double executed = static_cast<double>(mac::lane_counts(
        W.mask.data(), W.words, N, xact_.data(), K, W.tile_k, W.n_ktiles, lanecnt_.data()));
    executed *= static_cast<double>(M);
    k[kMacsExecuted] += executed;
    k[kMacsSkipped] += dense_macs - executed;
  }

  // Per-tile compute cycles. The dense layer total follows the fold model
  // exactly (so it matches SCALE-Sim); each tile gets its share by area.
  const uint64_t dense_total = mac::dense_gemm_cycles(c.dataflow, c.rows, c.cols, M, K, N);
  const unsigned __int128 area = static_cast<unsigned __int128>(N) * K;
  unsigned __int128 cum = 0;
  uint64_t prev = 0;
  for (size_t ti = 0; ti < W.tiles.size(); ++ti) {
    const Tile& t = W.tiles[ti];
    cum += static_cast<unsigned __int128>(t.n1 - t.n0) * (t.k1 - t.k0);
    uint64_t upto = static_cast<uint64_t>(cum * dense_total / area);
    uint64_t share = upto - prev;
    prev = upto;
    uint64_t cyc = share;
    if (skip && share > 0) {
      // Under skip each lane's work along K is compacted to its nonzeros, so
      // a fold group takes as long as its busiest lane (imbalance costs).
      // The tile's share is scaled by effective / dense fold work:
      //  WS: an N-fold of C channels needs ceil(max_lane_nnz / R) K-folds
      //      instead of ceil(Lk / R) (lane = output channel);
      //  OS: an N-fold streams max_lane_nnz reduction steps instead of Lk;
      //  IS: a K-fold of R stationary inputs streams, per row k, only the
      //      nonzero weights w[:, k]; it lasts max_k nnz instead of Ln
      //      (an all-zero activation column idles its whole row).
      const int64_t Lk = t.k1 - t.k0, Ln = t.n1 - t.n0;
      const int64_t kt = t.k0 / W.tile_k;
      double eff = 0, dense = 0;
      if (c.dataflow == DataflowKind::IS) {
        const uint16_t* cc = W.colcnt.data() + W.colcnt_off[ti];
        const int64_t mC = ceil_div(M, C);
        for (int64_t r0 = 0; r0 < Lk; r0 += R) {
          int64_t mx = 0;
          for (int64_t kk = r0; kk < std::min(Lk, r0 + R); ++kk) {
            int64_t kg = t.k0 + kk;
            if ((xact_[kg >> 6] >> (kg & 63)) & 1) mx = std::max<int64_t>(mx, cc[kk]);
          }
          eff += static_cast<double>(mC) * mac::fold_cycles(c.dataflow, c.rows, c.cols, mx);
          dense += static_cast<double>(mC) * mac::fold_cycles(c.dataflow, c.rows, c.cols, Ln);
        }
      } else {
        const int64_t mR = ceil_div(M, R);
        for (int64_t f0 = t.n0; f0 < t.n1; f0 += C) {
          int64_t mx = 0;
          for (int64_t n = f0; n < std::min(t.n1, f0 + C); ++n)
            mx = std::max<int64_t>(mx, lanecnt_[n * W.n_ktiles + kt]);
          if (c.dataflow == DataflowKind::WS) {
            eff += static_cast<double>(ceil_div(mx, R));
            dense += static_cast<double>(ceil_div(Lk, R));
          } else {
            eff += static_cast<double>(mR) * mac::fold_cycles(c.dataflow, c.rows, c.cols, mx);
            dense += static_cast<double>(mR) * mac::fold_cycles(c.dataflow, c.rows, c.cols, Lk);
          }
        }
      }
      cyc = dense > 0 ? static_cast<uint64_t>(std::ceil(static_cast<double>(share) * eff / dense))
                      : 0;
    }
    items.push_back({&W, ti, cyc});
  }
}

void Session::exec_matmul(const Op& op, Counters& k) {
  const Weight& W = prog_->weights()[op.weight];
  const HwConfig& c = prog_->cfg();
  Buffer& xb = bufs_[op.in[0]];
  const int64_t M = xb.rows, N = W.N;
  Buffer& ob = bufs_[op.out[0]];
  ob.resize(op.out_dtype, M, N);
  items_.clear();
  int32_t* acc;
  if (!op.requant && op.out_dtype == DType::I32) {
    acc = ob.i32.data();
  } else {
    acc_.resize(static_cast<size_t>(M * N));
    acc = acc_.data();
  }
  matmul_core(W, xb.i8.data(), M, acc, k, items_);
  uint64_t cyc = pipeline(items_, k);
  const bool has_bias = !op.bias.empty();
  if (op.requant) {
    const int64_t lo = op.out_dtype == DType::I8 ? -128 : -32768;
    const int64_t hi = op.out_dtype == DType::I8 ? 127 : 32767;
    for (int64_t m = 0; m < M; ++m) {
      const int32_t* a = acc + m * N;
      if (op.out_dtype == DType::I8) {
        int8_t* o = ob.i8.data() + m * N;
        for (int64_t n = 0; n < N; ++n) {
          int32_t s = has_bias ? static_cast<int32_t>(static_cast<uint32_t>(a[n]) +
                                                      static_cast<uint32_t>(op.bias[n]))
                               : a[n];
          o[n] = static_cast<int8_t>(vec::clamp64(vec::requant(s, op.mult[n], op.shift[n]), lo, hi));
        }
      } else {
        int16_t* o = ob.i16.data() + m * N;
        for (int64_t n = 0; n < N; ++n) {
          int32_t s = has_bias ? static_cast<int32_t>(static_cast<uint32_t>(a[n]) +
                                                      static_cast<uint32_t>(op.bias[n]))
                               : a[n];
          o[n] = static_cast<int16_t>(vec::clamp64(vec::requant(s, op.mult[n], op.shift[n]), lo, hi));
        }
      }
    }
    // Requantization runs on the vector unit as each fold's outputs drain,
    // hidden under the next fold; only the last fold's outputs add time.
    k[kVectorOps] += static_cast<double>(M * N);
    k[kVectorCycles] += static_cast<double>(ceil_div(M * std::min<int64_t>(N, c.cols), c.vector_lanes));
  } else if (has_bias) {
    int32_t* o = ob.i32.data();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        o[m * N + n] = static_cast<int32_t>(static_cast<uint32_t>(o[m * N + n]) +
                                            static_cast<uint32_t>(op.bias[n]));
  }
  k[kActSramWriteBytes] += static_cast<double>(M * N * dtype_bytes(op.out_dtype));
  k[kCycles] = static_cast<double>(cyc) + k[kVectorCycles];
}

void Session::exec_lstm(const Op& op, Counters& k) {
  // Fused integer LSTM cell; the arithmetic is specified in
  // azsim/reference.py (lstm_cell) and must stay identical to it.
  const Weight& Wx = prog_->weights()[op.weight];
  const Weight& Wh = prog_->weights()[op.weight2];
  Buffer& xb = bufs_[op.in[0]];
  Buffer& hb = bufs_[op.in[1]];
  Buffer& cb = bufs_[op.in[2]];
  const int64_t M = xb.rows, H = op.hidden, G = 4 * H;
  if (hb.rows != M || cb.rows != M)
    throw std::invalid_argument(op.name + ": x, h and c must have the same number of rows");
  acc_.resize(static_cast<size_t>(M * G));
  acc2_.resize(static_cast<size_t>(M * G));
  items_.clear();
  matmul_core(Wx, xb.i8.data(), M, acc_.data(), k, items_);
  matmul_core(Wh, hb.i8.data(), M, acc2_.data(), k, items_);
  uint64_t cyc = pipeline(items_, k);
  Buffer& ho = bufs_[op.out[0]];
  Buffer& co = bufs_[op.out[1]];
  ho.resize(DType::I8, M, H);
  co.resize(DType::I16, M, H);
  const int16_t* sig = op.full.data() + 32768;   // expanded tables, indexed by x
  const int16_t* th = op.full2.data() + 32768;
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* ax = acc_.data() + m * G;
    const int32_t* ah = acc2_.data() + m * G;
    int32_t gate[4];
    for (int64_t j = 0; j < H; ++j) {
      for (int q = 0; q < 4; ++q) {
        int64_t idx = q * H + j;
        int32_t sx = static_cast<int32_t>(static_cast<uint32_t>(ax[idx]) +
                                          static_cast<uint32_t>(op.bias[idx]));
        int64_t z = vec::requant(sx, op.mult[idx], op.shift[idx]) +
                    vec::requant(ah[idx], op.mult2[idx], op.shift2[idx]);
        gate[q] = static_cast<int32_t>(vec::clamp64(z, -32768, 32767));
      }
      int64_t ig = sig[gate[0]], fg = sig[gate[1]];
      int64_t gg = th[gate[2]], og = sig[gate[3]];
      int64_t cprev = cb.i16[m * H + j];
      int64_t cn = vec::clamp64((fg * cprev * 8 + ig * gg + (int64_t{1} << 17)) >> 18, -32768, 32767);
      co.i16[m * H + j] = static_cast<int16_t>(cn);
      int64_t tc = th[cn];
      ho.i8[m * H + j] = static_cast<int8_t>(
          vec::clamp64(vec::requant(og * tc, op.h_mult, op.h_shift), -128, 127));
    }
  }
  // Vector stages: gate requant of both products, add, LUT (4H each); cell
  // update, tanh, output requant (H each).
  for (int s = 0; s < 4; ++s) add_vector_stage(M * G, k);
  for (int s = 0; s < 3; ++s) add_vector_stage(M * H, k);
  k[kActSramReadBytes] += static_cast<double>(M * H * 2);  // c
  k[kActSramWriteBytes] += static_cast<double>(M * H * 3);  // h', c'
  k[kCycles] = static_cast<double>(cyc) + k[kVectorCycles];
}

void Session::exec_embed(const Op& op, Counters& k) {
  const Weight& W = prog_->weights()[op.weight];
  const int wid = op.weight;
  Buffer& ib = bufs_[op.in[0]];
  const int64_t M = ib.size(), D = W.K;
  Buffer& ob = bufs_[op.out[0]];
  ob.resize(DType::I8, M, D);
  uint64_t dma = 0;
  k[kWeightBytes] += static_cast<double>(W.bytes);
  if (W.resident) {
    if (!loaded_[wid]) {  // the whole table comes in once
      dma += dram_.transfer_cycles(W.bytes);
      k[kOffchipReadBytes] += static_cast<double>(dram_.bus_bytes(W.bytes));
      k[kWeightSramWriteBytes] += static_cast<double>(W.bytes);
      loaded_[wid] = 1;
    }
    k[kWeightSramReadBytes] += static_cast<double>(M * D);
  }
  for (int64_t m = 0; m < M; ++m) {
    int64_t row = ib.get(m);
    if (row < 0 || row >= W.N)
      throw std::out_of_range(op.name + ": index " + std::to_string(row) + " outside [0, " +
                              std::to_string(W.N) + ")");
    if (!W.resident) {  // streamed tables fetch each looked-up row
      dma += dram_.transfer_cycles(static_cast<uint64_t>(D));
      k[kOffchipReadBytes] += static_cast<double>(dram_.bus_bytes(static_cast<uint64_t>(D)));
    }
    std::copy(W.w.begin() + row * D, W.w.begin() + (row + 1) * D, ob.i8.begin() + m * D);
  }
  k[kStallMemoryCycles] += static_cast<double>(dma);
  add_vector_stage(M * D, k);
  k[kActSramWriteBytes] += static_cast<double>(M * D);
  k[kCycles] = static_cast<double>(dma) + k[kVectorCycles];
}

namespace {
// Typed element access: the vector ops are instantiated per dtype combination
// so the per-element loop has no dtype switch in it.
template <typename F>
void with_data(Buffer& b, F&& f) {
  switch (b.dtype) {
    case DType::I8: f(b.i8.data()); break;
    case DType::I16: f(b.i16.data()); break;
    default: f(b.i32.data()); break;
  }
}

template <typename T>
inline T saturate(int64_t v) {
  return static_cast<T>(vec::clamp64(v, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}
}  // namespace

void Session::exec_vector(const Op& op, Counters& k) {
  Buffer& a = bufs_[op.in[0]];
  Buffer& o = bufs_[op.out[0]];
  int64_t rows = a.rows;
  const int64_t cols = a.cols;
  double read_bytes = static_cast<double>(a.size() * dtype_bytes(a.dtype));
  switch (op.kind) {
    case OpKind::Add:
    case OpKind::Mul: {
      // A one-row operand is broadcast over the other's rows (e.g. one
      // encoder frame against several prediction-network hypotheses).
      Buffer& b = bufs_[op.in[1]];
      if (b.cols != a.cols || (b.rows != a.rows && b.rows != 1 && a.rows != 1))
        throw std::invalid_argument(op.name + ": operand shapes (" + std::to_string(a.rows) + ", " +
                                    std::to_string(a.cols) + ") and (" + std::to_string(b.rows) +
                                    ", " + std::to_string(b.cols) + ") do not broadcast");
      rows = std::max(a.rows, b.rows);
      o.resize(op.out_dtype, rows, cols);
      read_bytes += static_cast<double>(b.size() * dtype_bytes(b.dtype));
      const int64_t sa = a.rows == 1 ? 0 : cols, sb = b.rows == 1 ? 0 : cols;
      const bool add = op.kind == OpKind::Add;
      with_data(a, [&](auto* pa) {
        with_data(b, [&](auto* pb) {
          with_data(o, [&](auto* po) {
            using TO = std::remove_pointer_t<decltype(po)>;
            for (int64_t r = 0; r < rows; ++r) {
              const auto* ra = pa + r * sa;
              const auto* rb = pb + r * sb;
              TO* ro = po + r * cols;
              if (add)
                for (int64_t c = 0; c < cols; ++c)
                  ro[c] = saturate<TO>(vec::add_rq(ra[c], rb[c], op.ma, op.mb, op.sh));
              else
                for (int64_t c = 0; c < cols; ++c)
                  ro[c] = saturate<TO>(vec::mul_rq(ra[c], rb[c], op.ma, op.sh));
            }
          });
        });
      });
      break;
    }
    case OpKind::Lut: {
      o.resize(op.out_dtype, rows, cols);
      const int16_t* t = op.table.data();
      const int64_t n = rows * cols;
      with_data(o, [&](auto* po) {
        using TO = std::remove_pointer_t<decltype(po)>;
        if (a.dtype == DType::I8)
          for (int64_t i = 0; i < n; ++i) po[i] = saturate<TO>(vec::lut8(t, a.i8[i]));
        else
          for (int64_t i = 0; i < n; ++i) po[i] = saturate<TO>(op.full[a.i16[i] + 32768]);
      });
      break;
    }
    case OpKind::Requant: {
      o.resize(op.out_dtype, rows, cols);
      const bool per_ch = op.mult.size() > 1;
      with_data(a, [&](auto* pa) {
        with_data(o, [&](auto* po) {
          using TO = std::remove_pointer_t<decltype(po)>;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
              const int64_t ch = per_ch ? c : 0;
              po[r * cols + c] = saturate<TO>(vec::requant(pa[r * cols + c], op.mult[ch], op.shift[ch]));
            }
        });
      });
      break;
    }
    default: break;
  }
  k[kActSramReadBytes] += read_bytes;
  add_vector_stage(rows * cols, k);
  k[kActSramWriteBytes] += static_cast<double>(rows * cols * dtype_bytes(op.out_dtype));
  k[kCycles] = k[kVectorCycles];
}

}  // namespace azsim

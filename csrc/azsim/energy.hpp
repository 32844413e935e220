// Counters kept per op and per call, and the energy table that turns them
// into picojoules by component.
#pragma once

#include <array>
#include <cstdint>

#include "azsim/config.hpp"

namespace azsim {

enum Counter : int {
  kCycles = 0,          // wall cycles of the op (start to end)
  kComputeCycles,       // MAC-array busy cycles
  kStallMemoryCycles,   // array idle waiting on off-chip transfers
  kStallDecoderCycles,  // array idle waiting on the weight decoder
  kStallComputeCycles,  // DMA idle because both buffers wait on compute (backpressure)
  kVectorCycles,        // vector-unit cycles not hidden under the array
  kOffchipReadBytes,    // bus bytes (burst-rounded)
  kOffchipWriteBytes,
  kWeightSramReadBytes,
  kWeightSramWriteBytes,
  kActSramReadBytes,
  kActSramWriteBytes,
  kWeightBytes,   // compressed bytes of the weights this op uses (footprint)
  kDecodedBytes,  // weight bytes emitted by the decoder
  kMacs,          // dense MAC count M*K*N
  kMacsExecuted,  // MACs the array performed (all of them unless skipping)
  kMacsSkipped,   // MACs skipped (zero = skip)
  kMacsGated,     // MACs performed with a zero operand and clock-gated (zero = gate)
  kVectorOps,
  kEnergyOffchipPj,
  kEnergySramPj,
  kEnergyMacPj,
  kEnergyDecoderPj,
  kEnergyVectorPj,
  kEnergyLeakagePj,
  kEnergyTotalPj,
  kNumCounters
};

inline const char* counter_name(int i) {
  static const char* names[kNumCounters] = {
      "cycles", "compute_cycles", "stall_memory_cycles", "stall_decoder_cycles",
      "stall_compute_cycles", "vector_cycles", "offchip_read_bytes", "offchip_write_bytes",
      "weight_sram_read_bytes", "weight_sram_write_bytes", "act_sram_read_bytes",
      "act_sram_write_bytes", "weight_bytes", "decoded_bytes", "macs", "macs_executed",
      "macs_skipped", "macs_gated", "vector_ops", "energy_offchip_pj", "energy_sram_pj",
      "energy_mac_pj", "energy_decoder_pj", "energy_vector_pj", "energy_leakage_pj",
      "energy_total_pj"};
  return names[i];
}

using Counters = std::array<double, kNumCounters>;

// Energy = counters x table. MACs that do real work cost mac_pj; gated and
// skipped MACs still clock the operand registers / skip logic and cost
// mac_gated_pj. Leakage is power x wall time of the op.
inline void apply_energy(const HwConfig& c, Counters& k) {
  k[kEnergyOffchipPj] = (k[kOffchipReadBytes] + k[kOffchipWriteBytes]) * c.offchip_pj_per_byte;
  k[kEnergySramPj] = (k[kWeightSramReadBytes] + k[kWeightSramWriteBytes]) * c.weight_sram_pj_per_byte +
                     (k[kActSramReadBytes] + k[kActSramWriteBytes]) * c.act_sram_pj_per_byte;
  double real_macs = k[kMacsExecuted] - k[kMacsGated];
  k[kEnergyMacPj] = real_macs * c.mac_pj + (k[kMacsGated] + k[kMacsSkipped]) * c.mac_gated_pj;
  k[kEnergyDecoderPj] = k[kDecodedBytes] * c.decode_pj_per_byte;
  k[kEnergyVectorPj] = k[kVectorOps] * c.vector_pj_per_op;
  // mW x s = mJ; 1 mJ = 1e9 pJ.
  k[kEnergyLeakagePj] = c.leakage_mw * 1e9 * k[kCycles] / c.clock_hz;
  k[kEnergyTotalPj] = k[kEnergyOffchipPj] + k[kEnergySramPj] + k[kEnergyMacPj] +
                      k[kEnergyDecoderPj] + k[kEnergyVectorPj] + k[kEnergyLeakagePj];
}

}  // namespace azsim

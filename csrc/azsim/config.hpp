// Hardware configuration as the engine sees it: plain structs filled from
// HwConfig.to_native(). Validation lives in azsim/hw.py (one place for each
// fact); the C++ side trusts these values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace azsim {

enum class DataflowKind { WS, OS, IS };
enum class ZeroMode { None, Gate, Skip };

struct HwConfig {
  double clock_hz = 1e9;
  int rows = 16, cols = 16;
  int bits = 8;  // weight operand width of the MAC array; activations are int8
  DataflowKind dataflow = DataflowKind::WS;
  ZeroMode zero = ZeroMode::None;
  int64_t weight_sram_bytes = 0, act_sram_bytes = 0;
  double offchip_bytes_per_cycle = 1.0;
  int64_t offchip_latency_cycles = 0, offchip_burst_bytes = 0;
  double offchip_pj_per_byte = 0;
  double decoder_bytes_per_cycle = 1.0, decoder_weights_per_cycle = 1.0;
  std::vector<std::string> decoder_formats;
  int vector_lanes = 1;
  double mac_pj = 0, mac_gated_pj = 0;
  double weight_sram_pj_per_byte = 0, act_sram_pj_per_byte = 0;
  double decode_pj_per_byte = 0, vector_pj_per_op = 0;
  double leakage_mw = 0, host_mflops = 0;
};

}  // namespace azsim

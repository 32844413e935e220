// Off-chip memory (DRAM or flash) as a bandwidth + latency + burst model.
#pragma once

#include <cmath>
#include <cstdint>

#include "azsim/config.hpp"

namespace azsim {

struct Dram {
  double bytes_per_cycle;
  uint64_t latency_cycles;
  uint64_t burst_bytes;

  explicit Dram(const HwConfig& c)
      : bytes_per_cycle(c.offchip_bytes_per_cycle),
        latency_cycles(static_cast<uint64_t>(c.offchip_latency_cycles)),
        burst_bytes(static_cast<uint64_t>(c.offchip_burst_bytes)) {}

  // The bus moves whole bursts, so a transfer costs (and is counted as) its
  // size rounded up to the burst length.
  uint64_t bus_bytes(uint64_t bytes) const {
    if (burst_bytes <= 1) return bytes;
    return (bytes + burst_bytes - 1) / burst_bytes * burst_bytes;
  }

  // One DMA transfer: the first-access latency is paid once per transfer
  // (tiles are contiguous streams), then the bursts at the link bandwidth.
  uint64_t transfer_cycles(uint64_t bytes) const {
    if (bytes == 0) return 0;
    return latency_cycles +
           static_cast<uint64_t>(std::ceil(static_cast<double>(bus_bytes(bytes)) / bytes_per_cycle));
  }
};

}  // namespace azsim

// How simulator processes share a round's work: one process, or MPI ranks.
// Every rank runs the same deterministic round engine; ranks split only the
// training of the selected clients and exchange the encoded results.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "frugal/core/status.h"

namespace frugal::sim {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank passes its bytes; every rank gets all ranks' bytes, in rank order.
  virtual Result<std::vector<std::vector<uint8_t>>> AllGather(const std::vector<uint8_t>& mine) = 0;
};

// A single process: AllGather returns its own bytes.
std::unique_ptr<Communicator> MakeLocalCommunicator();

// MPI_COMM_WORLD when built with MPI and started by mpirun; nullptr otherwise.
// The caller owns MPI's lifetime through the returned object.
std::unique_ptr<Communicator> MakeMpiCommunicator(int* argc, char*** argv);

}  // namespace frugal::sim

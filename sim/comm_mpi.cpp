#include <mpi.h>

#include <cstdlib>

#include "frugal/sim/comm.h"

namespace frugal::sim {
namespace {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int* argc, char*** argv) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Result<std::vector<std::vector<uint8_t>>> AllGather(const std::vector<uint8_t>& mine) override {
    if (mine.size() > static_cast<size_t>(INT32_MAX)) {
      return ResourceExhaustedError("MPI payload of " + std::to_string(mine.size()) + " bytes exceeds 2 GiB");
    }
    int n = static_cast<int>(mine.size());
    std::vector<int> counts(size_), displs(size_);
    if (MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD) != MPI_SUCCESS) {
      return UnavailableError("MPI_Allgather of sizes failed");
    }
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[r] = static_cast<int>(total);
      total += counts[r];
    }
    if (total > INT32_MAX) return ResourceExhaustedError("MPI round exchange exceeds 2 GiB");
    std::vector<uint8_t> all(static_cast<size_t>(total));
    if (MPI_Allgatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE,
                       MPI_COMM_WORLD) != MPI_SUCCESS) {
      return UnavailableError("MPI_Allgatherv of round results failed");
    }
    std::vector<std::vector<uint8_t>> out(size_);
    for (int r = 0; r < size_; ++r) out[r].assign(all.begin() + displs[r], all.begin() + displs[r] + counts[r]);
    return out;
  }

 private:
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator(int* argc, char*** argv) {
  // Only under a launcher: a plain run never pays for MPI's start-up.
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr && std::getenv("PMI_SIZE") == nullptr) return nullptr;
  return std::make_unique<MpiCommunicator>(argc, argv);
}

}  // namespace frugal::sim

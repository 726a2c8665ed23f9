// HDBSCAN (Campello, Moulavi and Sander 2013) on a precomputed distance
// matrix: core distances, the mutual-reachability minimum spanning tree, the
// single-linkage hierarchy condensed with a minimum cluster size, and the
// excess-of-mass selection, with the labelling of the reference
// implementation (McInnes, Healy and Astels, the `hdbscan` Python package).
// FLAME (server.robust = "flame") admits the updates it labels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace frugal {

struct HdbscanParams {
  // A point's core distance is the distance to its min_samples-th nearest
  // point, counting itself (as the reference implementation does): 1 makes
  // mutual reachability the plain distance (single linkage).
  size_t min_samples = 1;
  size_t min_cluster_size = 2;
  // Whether the root (every point) may be the one selected cluster. Without
  // it, a min_cluster_size above n/2 leaves every point noise.
  bool allow_single_cluster = false;
};

// Cluster labels 0, 1, ... (in the order of the condensed tree) or -1 for
// noise, one per point. `distances` is n x n, row-major, symmetric, with a
// zero diagonal; min_samples and min_cluster_size are clamped to [1, n] and
// [2, n]. O(n^2) time and memory. Thread-compatible.
std::vector<int32_t> Hdbscan(std::span<const double> distances, size_t n, const HdbscanParams& params);

}  // namespace frugal

// Timing for the benchmark drivers: the machine may be shared, so thread CPU
// time (what one core spent) is reported beside wall time (what a caller
// waited), each the median over repetitions.
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

namespace frugal::bench {

inline double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double cpu_s;   // median CPU time of this thread per call
  double wall_s;  // median wall time per call
};

// Medians over `reps` calls of fn, after `warm_up` untimed ones.
inline Timing Measure(int reps, const std::function<void()>& fn, int warm_up = 0) {
  for (int w = 0; w < warm_up; ++w) fn();
  std::vector<double> cpu, wall;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = ThreadCpuSeconds();
    fn();
    cpu.push_back(ThreadCpuSeconds() - cpu_start);
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const auto mid = static_cast<std::ptrdiff_t>(reps / 2);
  std::nth_element(cpu.begin(), cpu.begin() + mid, cpu.end());
  std::nth_element(wall.begin(), wall.begin() + mid, wall.end());
  return {cpu[static_cast<size_t>(mid)], wall[static_cast<size_t>(mid)]};
}

}  // namespace frugal::bench

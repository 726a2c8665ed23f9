// A one-line progress bar on stderr when it is a terminal; silent otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

namespace frugal::sim {

class ProgressBar {
 public:
  // enabled: caller's wish; the bar also stays off when stderr is not a TTY.
  ProgressBar(bool enabled, uint32_t rounds);
  // Thread-safe; redraws at most every 100 ms.
  void Update(uint32_t round, size_t done, size_t total);
  // Erases the bar so a normal line can be printed.
  void Clear();

 private:
  bool enabled_;
  uint32_t rounds_;
  std::mutex mu_;
  double last_draw_ = -1;
};

}  // namespace frugal::sim

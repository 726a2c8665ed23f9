// Every int8 kernel compiled for the target against the reference loop, on
// random shapes with tails, strides and extreme values: a standalone program
// (no doctest, no frugal_core) so it can be cross-compiled for aarch64 and
// run under qemu-aarch64 by int8_neon_check.sh, where the NEON kernels exist.
// Exit status 0 when every kernel matched and (with --require NAME) NAME was compiled.
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "frugal/model/int8.h"

int main(int argc, char** argv) {
  const char* required = (argc == 3 && std::strcmp(argv[1], "--require") == 0) ? argv[2] : nullptr;
  bool found = required == nullptr;
  std::mt19937 rng(7);
  int failures = 0, checks = 0;
  const size_t ks[] = {1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 200, 784, 1001};
  for (const frugal::Int8Kernel& k : frugal::Int8Kernels()) {
    if (required != nullptr && k.name == required) found = true;
    for (int trial = 0; trial < 64; ++trial) {
      const size_t kk = ks[static_cast<size_t>(trial) % 16];
      const size_t m = 1 + rng() % 9, n = 1 + rng() % 13, lda = kk + rng() % 5, ldw = kk + rng() % 5;
      std::vector<uint8_t> a(m * lda);
      std::vector<int8_t> w(n * ldw);
      for (auto& v : a) v = trial % 4 == 1 ? 127 : static_cast<uint8_t>(rng() % 128);
      for (auto& v : w) v = trial % 4 == 1 ? int8_t{-127} : static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
      std::vector<int32_t> want(m * n), got(m * n, 12345);
      frugal::Int8Kernels()[0].gemm(a.data(), lda, w.data(), ldw, m, n, kk, want.data(), n);
      k.gemm(a.data(), lda, w.data(), ldw, m, n, kk, got.data(), n);
      ++checks;
      if (got != want) {
        ++failures;
        std::printf("MISMATCH kernel %.*s m=%zu n=%zu k=%zu\n", static_cast<int>(k.name.size()), k.name.data(), m, n, kk);
      }
    }
    std::printf("kernel %.*s checked\n", static_cast<int>(k.name.size()), k.name.data());
  }
  std::printf("%d checks, %d mismatches%s\n", checks, failures, found ? "" : ", required kernel not compiled");
  return failures == 0 && found ? 0 : 1;
}

// Includes Eigen's dense core for frugal code. GCC 12 reports false
// -W(maybe-)uninitialized warnings from its own AVX-512 intrinsics once Eigen
// kernels are inlined with -march=native (GCC bug 105593); they are silenced
// here, for Eigen only, so the build stays at zero warnings.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

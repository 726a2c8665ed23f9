# Cross-compiles for 64-bit ARM Linux (Raspberry Pi 3/4/5, Jetson, arm64
# phones running Debian userlands) with Debian's crossbuild-essential-arm64 and
# the arm64 -dev packages installed through multiarch (scripts/setup.sh), so
# headers come from /usr/include and libraries from /usr/lib/aarch64-linux-gnu.
# Used by the `arm64` preset in CMakePresets.json.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Multiarch: the target's libraries sit beside the host's under /usr, so the
# search is not re-rooted; CMAKE_LIBRARY_ARCHITECTURE picks the aarch64
# directories, and programs (protoc) are always the build machine's own.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# pkg-config must read the arm64 .pc files, never the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Binaries built here run on the build machine under user-mode QEMU (the
# arm64 e2e test); the arm64 loader and libraries are installed by multiarch.
find_program(FRUGAL_QEMU_AARCH64 qemu-aarch64)
if(FRUGAL_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FRUGAL_QEMU_AARCH64})
endif()

# Finds ftune's dependencies. Every miss stops with the Debian/Ubuntu package that provides it.
#
# Targets made available:
#   torch (LibTorch), MPI::MPI_C, ftune::hdf5, absl::*, GTest::*, nlohmann_json::nlohmann_json,
#   OpenSSL::Crypto, and ftune::nccl when FTUNE_WITH_NCCL=ON.

set(_ftune_hint "Run launch/install-deps.sh (Debian/Ubuntu) or install the package named above.")

macro(ftune_missing what package)
  message(FATAL_ERROR "ftune: ${what} not found. Debian/Ubuntu package: ${package}\n${_ftune_hint}")
endmacro()

# --- LibTorch: Debian's libtorch-dev (1.13, CPU) or any LibTorch 2.x via CMAKE_PREFIX_PATH / Torch_DIR.
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  ftune_missing("LibTorch (TorchConfig.cmake)" "libtorch-dev  (or -DTorch_DIR=<libtorch>/share/cmake/Torch)")
endif()
# Newer LibTorch headers (Debian's 2.14, pip's 2.10+) refuse anything older than C++20.
if(DEFINED Torch_VERSION AND Torch_VERSION VERSION_GREATER_EQUAL 2.10 AND CMAKE_CXX_STANDARD LESS 20)
  message(STATUS "ftune: LibTorch ${Torch_VERSION} needs C++20: building in C++20")
  set(CMAKE_CXX_STANDARD 20)
endif()
# LibTorch's ABI/define flags must reach every translation unit that ends up in the same binary.
string(APPEND CMAKE_CXX_FLAGS " ${TORCH_CXX_FLAGS}")
if(CAFFE2_USE_CUDA)
  # A CUDA build of LibTorch: c10_cuda comes with the torch target; enables the CUDA code paths.
  add_compile_definitions(FTUNE_TORCH_CUDA=1)
endif()
message(STATUS "ftune: LibTorch ${Torch_VERSION} ${TORCH_INSTALL_PREFIX} (CUDA: ${CAFFE2_USE_CUDA})")

# --- MPI
find_package(MPI QUIET COMPONENTS C)
if(NOT MPI_C_FOUND)
  ftune_missing("MPI (C bindings)" "libopenmpi-dev openmpi-bin")
endif()

# --- HDF5 (C API)
find_package(HDF5 QUIET COMPONENTS C)
if(NOT HDF5_FOUND)
  ftune_missing("HDF5 (C library)" "libhdf5-dev")
endif()
add_library(ftune_hdf5 INTERFACE)
target_include_directories(ftune_hdf5 SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
target_link_libraries(ftune_hdf5 INTERFACE ${HDF5_C_LIBRARIES})
target_compile_definitions(ftune_hdf5 INTERFACE ${HDF5_C_DEFINITIONS} ${HDF5_DEFINITIONS})
add_library(ftune::hdf5 ALIAS ftune_hdf5)

# --- Abseil
find_package(absl CONFIG QUIET)
if(NOT absl_FOUND)
  ftune_missing("Abseil (abslConfig.cmake)" "libabsl-dev  (or -Dabsl_DIR=<prefix>/lib/cmake/absl)")
endif()

# --- nlohmann/json
find_package(nlohmann_json 3.9 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  ftune_missing("nlohmann/json >= 3.9" "nlohmann-json3-dev")
endif()

# --- OpenSSL (SHA-256 only)
find_package(OpenSSL QUIET COMPONENTS Crypto)
if(NOT OPENSSL_FOUND)
  ftune_missing("OpenSSL libcrypto" "libssl-dev")
endif()
# Debian's multiarch layout puts opensslconf.h and configuration.h under include/<triplet>/, which
# the compiler searches by itself only inside the system root (not in an unpacked .deps/root).
if(CMAKE_LIBRARY_ARCHITECTURE AND EXISTS "${OPENSSL_INCLUDE_DIR}/${CMAKE_LIBRARY_ARCHITECTURE}/openssl/opensslconf.h"
   AND NOT OPENSSL_INCLUDE_DIR MATCHES "^/usr/include/?$")
  set_property(TARGET OpenSSL::Crypto APPEND PROPERTY INTERFACE_INCLUDE_DIRECTORIES
               "${OPENSSL_INCLUDE_DIR}/${CMAKE_LIBRARY_ARCHITECTURE}")
endif()

# --- GoogleTest
if(FTUNE_BUILD_TESTS)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    ftune_missing("GoogleTest" "libgtest-dev libgmock-dev")
  endif()
endif()

# --- NCCL (optional backend; compiled in CI so it cannot rot, run on GPU machines)
if(FTUNE_WITH_NCCL)
  set(FTUNE_NCCL_ROOT "" CACHE PATH "Prefix holding include/nccl.h and lib/libnccl.so (e.g. the nvidia.nccl wheel folder)")
  set(_nccl_hints ${FTUNE_NCCL_ROOT} $ENV{NCCL_HOME} $ENV{NCCL_ROOT} /usr/local/cuda /usr)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include NO_CACHE)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64 NO_CACHE)
  find_package(CUDAToolkit QUIET)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "ftune: FTUNE_WITH_NCCL=ON but nccl.h / libnccl not found under: ${_nccl_hints}\n"
                        "Pass -DFTUNE_NCCL_ROOT=<prefix> (the folder with include/nccl.h and lib/libnccl.so*).")
  endif()
  if(NOT CUDAToolkit_FOUND)
    message(FATAL_ERROR "ftune: FTUNE_WITH_NCCL=ON needs the CUDA runtime (cuda_runtime.h, libcudart). "
                        "Pass -DCUDAToolkit_ROOT=/usr/local/cuda.")
  endif()
  add_library(ftune_nccl INTERFACE)
  target_include_directories(ftune_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(ftune_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
  add_library(ftune::nccl ALIAS ftune_nccl)
  message(STATUS "ftune: NCCL ${NCCL_LIBRARY}")
endif()

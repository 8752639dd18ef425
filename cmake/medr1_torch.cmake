# Finds LibTorch >= 2.1: the one inside the PyTorch wheel of the project's virtual environment
# (scripts/setup.sh passes -DCMAKE_PREFIX_PATH=$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')).
#   MEDR1_CUDA=OFF (default): links torch_cpu + c10 only, so the binaries never load libtorch_cuda / the CUDA
#     libraries even when the wheel is a CUDA build (no GPU needed, quicker process start-up).
#   MEDR1_CUDA=ON: links the whole LibTorch (torch_cuda, c10_cuda, CUDA runtime, cuBLAS, cuDNN, NCCL) and defines
#     MEDR1_CUDA; every CUDA-only code path is behind that macro.
# Every source-level difference between LibTorch versions lives in include/medr1/core/torch_compat.h.
# A CUDA wheel's Caffe2 CMake probes the installed GPUs for the architectures unless told them; there may be no
# GPU at build time, so name them (A100 8.0, H100/H200 9.0; override with -DTORCH_CUDA_ARCH_LIST=...).
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)
if(Torch_VERSION VERSION_LESS 2.1)
  message(FATAL_ERROR "medr1 needs LibTorch >= 2.1 (found ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}); "
                      "run scripts/setup.sh, which puts the pinned PyTorch wheel into .venv")
endif()
add_library(medr1_torch_deps INTERFACE)
if(MEDR1_CUDA)
  if(NOT TARGET torch_cuda)
    message(FATAL_ERROR "MEDR1_CUDA=ON but the LibTorch at ${TORCH_INSTALL_PREFIX} has no CUDA (torch_cuda)")
  endif()
  target_link_libraries(medr1_torch_deps INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(medr1_torch_deps INTERFACE MEDR1_CUDA=1)
  # libtorch_cuda needs the NCCL / cuDNN / cuBLAS the wheel ships (site-packages/nvidia/*/lib, found at run time
  # through its own RPATH); the linker must resolve them there too, not in the toolkit's older copies
  # (/usr/local/cuda/lib64/libnccl.so.2 lacks symbols torch 2.12 uses).
  file(GLOB _medr1_nv_libdirs LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
  foreach(_dir ${_medr1_nv_libdirs})
    target_link_options(medr1_torch_deps INTERFACE "LINKER:-rpath-link,${_dir}")
  endforeach()
else()
  target_link_libraries(medr1_torch_deps INTERFACE torch_cpu_library c10)
endif()
# Torch's own headers are system headers (no warnings from them), searched AFTER /usr/include: the wheel bundles
# fmt 12 headers (include/fmt), and Debian's spdlog is built against Debian's fmt 9, which must win for <fmt/...>.
# fmt is the only header folder the two trees share (torch's c10d headers compile against fmt 9 as well).
# The imported targets carry the same folders as -isystem: take them off there.
foreach(_tgt torch torch_library torch_cpu torch_cpu_library torch_cuda torch_cuda_library c10 c10_cuda headeronly)
  if(TARGET ${_tgt})
    set_property(TARGET ${_tgt} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "")
  endif()
endforeach()
foreach(_dir ${TORCH_INCLUDE_DIRS})
  target_compile_options(medr1_torch_deps INTERFACE "SHELL:-idirafter ${_dir}")
endforeach()
if(TORCH_CXX_FLAGS)
  separate_arguments(_medr1_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(medr1_torch_deps INTERFACE ${_medr1_torch_flags})
endif()
set(MEDR1_PYTHON "" CACHE FILEPATH "Python of the project's virtual environment (tests that use PyPI's packages)")
message(STATUS "medr1: LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX} (MEDR1_CUDA=${MEDR1_CUDA})")

# Finds LibTorch. Default: Debian's libtorch-dev 1.13.1 (CPU, gloo).
# -DMEDR1_CUDA=ON: the LibTorch inside a PyTorch 2.x wheel (CUDA, NCCL); pass
#   -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# Every source-level difference between the two lives in include/medr1/core/torch_compat.h.
find_package(Torch REQUIRED)
add_library(medr1_torch_deps INTERFACE)
target_link_libraries(medr1_torch_deps INTERFACE ${TORCH_LIBRARIES})
# Torch's own headers are treated as system headers (no warnings from them).
target_include_directories(medr1_torch_deps SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
if(MEDR1_CUDA)
  target_compile_definitions(medr1_torch_deps INTERFACE MEDR1_CUDA=1)
endif()
message(STATUS "medr1: LibTorch ${Torch_VERSION} (MEDR1_CUDA=${MEDR1_CUDA})")

// The ONLY place where LibTorch 1.13 (Debian) and 2.x (PyTorch wheel) differ for medr1.
// Everything version-dependent is expressed here as a macro, alias or small inline function:
//   - MEDR1_TORCH_2: defined on LibTorch >= 2.0.
//   - MEDR1_HAS_SDPA: at::scaled_dot_product_attention usable (>= 2.1).
//   - c10d: ProcessGroup (1.13) vs Backend (2.x) for the concrete gloo/NCCL classes.
#pragma once

#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#define MEDR1_TORCH_2 1
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define MEDR1_HAS_SDPA 1
#endif

// Which hand-written CPU kernel path medr1 takes, chosen at run time from the CPU's features:
//   portable    no hand-written SIMD: the kernels' callers stay on ATen's ops;
//   avx2        AVX2 + FMA kernels (streaming linear, decode attention, greedy step);
//   avx512bf16  additionally the AVX512-BF16 (VDPBF16PS) path of the bf16 streaming linear;
//   amx         additionally the AMX-BF16 (TDPBF16PS) path of the bf16 streaming linear, where the CPU has AMX-TILE
//               and AMX-BF16 and Linux grants the process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM).
// The environment variable MEDR1_CPU_ISA=portable|avx2|avx512bf16|amx|native caps the path (read once, at the first
// query; "native" or unset = the best the CPU has); set_cpu_isa_cap() does the same from code (tests). A cap
// above what the CPU has is clamped to the CPU. This covers medr1's own kernels only: ATen's (oneDNN, MKL)
// dispatch follows its own variables (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS).
#pragma once

#include <string>

namespace medr1::ops {

enum class CpuIsa { Portable = 0, Avx2 = 1, Avx512Bf16 = 2, Amx = 3 };

const char* cpu_isa_name(CpuIsa isa);
// "portable" | "avx2" | "avx512bf16" | "amx" | "native" (= detected); anything else throws medr1::Error naming it.
CpuIsa parse_cpu_isa(const std::string& name);

CpuIsa detected_cpu_isa();  // what the CPU supports
CpuIsa cpu_isa();           // what the kernels use: min(detected, cap)
void set_cpu_isa_cap(CpuIsa cap);

// True when the current path is at least `isa`.
inline bool cpu_isa_at_least(CpuIsa isa) { return static_cast<int>(cpu_isa()) >= static_cast<int>(isa); }

// How many threads one at::parallel_for over `n` items runs on, from code built like the kernels (the build must
// give their files OpenMP, see CMakeLists.txt): min(n, at::get_num_threads()) when it does, 1 when it does not.
int intra_op_threads_reached(int n);

// "AMD EPYC ... | avx2 fma avx512f avx512bw avx512bf16 amx_bf16 ... | kernels: avx512bf16" for logs and CI.
std::string cpu_description();

}  // namespace medr1::ops

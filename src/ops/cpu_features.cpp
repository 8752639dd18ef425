// Run-time CPU feature dispatch of the kernels (see include/medr1/ops/cpu_features.h).
#include "medr1/ops/cpu_features.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "medr1/core/error.h"

namespace medr1::ops {
namespace {

#if defined(__x86_64__)
// AMX-TILE (CPUID.7.0:EDX[24]) and AMX-BF16 (EDX[22]), and Linux's permission for the process to use the tile
// data state (XFEATURE_XTILEDATA = 18): without it the first tile instruction faults. Asked once, for all threads.
bool amx_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(d & (1u << 24)) || !(d & (1u << 22))) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}
#else
bool amx_usable() { return false; }
#endif

CpuIsa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CpuIsa::Portable;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512bf16"))
    return amx_usable() ? CpuIsa::Amx : CpuIsa::Avx512Bf16;
  return CpuIsa::Avx2;
#else
  return CpuIsa::Portable;
#endif
}

CpuIsa initial_cap() {
  const char* env = std::getenv("MEDR1_CPU_ISA");
  if (env == nullptr || *env == '\0') return CpuIsa::Amx;
  try {
    return parse_cpu_isa(env);
  } catch (const Error& e) {
    fail("MEDR1_CPU_ISA: ", e.what());
  }
}

std::atomic<int>& cap_slot() {
  static std::atomic<int> cap{static_cast<int>(initial_cap())};
  return cap;
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Portable: return "portable";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512Bf16: return "avx512bf16";
    case CpuIsa::Amx: return "amx";
  }
  return "portable";
}

CpuIsa parse_cpu_isa(const std::string& name) {
  if (name == "portable") return CpuIsa::Portable;
  if (name == "avx2") return CpuIsa::Avx2;
  if (name == "avx512bf16") return CpuIsa::Avx512Bf16;
  if (name == "amx") return CpuIsa::Amx;
  if (name == "native") return detected_cpu_isa();
  fail("expected portable, avx2, avx512bf16, amx or native, got '", name, "'");
}

CpuIsa detected_cpu_isa() {
  static const CpuIsa isa = detect();
  return isa;
}

CpuIsa cpu_isa() {
  const int cap = cap_slot().load(std::memory_order_relaxed);
  const int have = static_cast<int>(detected_cpu_isa());
  return static_cast<CpuIsa>(cap < have ? cap : have);
}

void set_cpu_isa_cap(CpuIsa cap) { cap_slot().store(static_cast<int>(cap), std::memory_order_relaxed); }

int intra_op_threads_reached(int n) {
  std::mutex mu;
  std::set<int> seen;
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.insert(at::get_thread_num());
    }
    // Hold each thread a moment, so one thread cannot run every item before the others start.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  return static_cast<int>(seen.size());
}

std::string cpu_description() {
  std::string model = "unknown CPU", flags_line;
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_first_of(" \t"));
    if (key == "model" && line.rfind("model name", 0) == 0 && model == "unknown CPU") model = line.substr(colon + 2);
    if (key == "flags" && flags_line.empty()) flags_line = line.substr(colon + 2);
  }
  std::ostringstream os;
  os << model << " |";
  std::istringstream fl(flags_line);
  for (std::string flag; fl >> flag;) {
    if (flag == "fma" || flag.rfind("avx", 0) == 0 || flag.rfind("amx", 0) == 0 || flag == "f16c") os << ' ' << flag;
  }
  os << " | kernels: " << cpu_isa_name(cpu_isa()) << " (detected " << cpu_isa_name(detected_cpu_isa()) << ")";
  return os.str();
}

}  // namespace medr1::ops

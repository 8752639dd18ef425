// AMX backend of the weight-streaming linear (see ops/linear.h, dispatched by
// streaming_linear.cpp): bf16 inputs of 1..kStreamingLinearMaxRowsBf16Dot rows with K % 32 == 0, on
// CPUs with AMX-BF16. The weights are the A operand of TDPBF16PS as they lie in memory (a tile is
// 16 weight rows x 32 k, rows K * 2 bytes apart), x is the B operand packed once per call in AMX's
// pair layout, so one instruction takes 1 KiB of weights against every x row: the VDPBF16PS kernel
// needs a dot-product instruction per 64 bytes of weights and x row, which measured here made it
// compute-bound at 4 rows (6.5 GB/s against 12 GB/s streamed at 1 row); this one streams 12-14 GB/s
// on one core at 1..16 rows. Products are summed in fp32 as VDPBF16PS sums them; the output is
// rounded once, bias added first.
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <cstdint>

#include "ops/backends.h"

namespace medr1::ops::backend {
namespace {

#define MEDR1_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

// The 64-byte tile configuration of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile
  uint8_t rows[16] = {};
};

// Tiles: 0 = C (16 weight rows x M fp32), 1 = A (16 weight rows x 32 bf16), 2 = B (16 k pairs x M x
// 2 bf16).
MEDR1_AMX void configure(int64_t M) {
  TileConfig c;
  c.rows[0] = 16;
  c.colsb[0] = static_cast<uint16_t>(M * 4);
  c.rows[1] = 16;
  c.colsb[1] = 64;
  c.rows[2] = 16;
  c.colsb[2] = static_cast<uint16_t>(M * 4);
  _tile_loadconfig(&c);
}

}  // namespace

void amx_pack_x(const c10::BFloat16* x, int64_t M, int64_t K, c10::BFloat16* xp) {
  // xp[kc][p][m][e] = x[m][32 kc + 2 p + e]: for each 32-wide k chunk, B's 16 rows of M (k, k + 1)
  // pairs.
  for (int64_t kc = 0; kc < K / 32; ++kc)
    for (int64_t p = 0; p < 16; ++p)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t e = 0; e < 2; ++e)
          xp[((kc * 16 + p) * M + m) * 2 + e] = x[m * K + kc * 32 + 2 * p + e];
}

MEDR1_AMX void linear_rows_amx(const c10::BFloat16* x, const c10::BFloat16* xp,
                               const c10::BFloat16* w, const float* bias, int64_t M, int64_t K,
                               int64_t N, c10::BFloat16* y, int64_t n0, int64_t n1) {
  const int64_t n_full = n0 + (n1 - n0) / 16 * 16;
  if (n_full > n0) {
    configure(M);
    alignas(64) float c[16 * 16];  // [16 weight rows, M]
    const int64_t b_bytes = 16 * M * 2 * static_cast<int64_t>(sizeof(c10::BFloat16));
    for (int64_t n = n0; n < n_full; n += 16) {
      const c10::BFloat16* wn = w + n * K;
      _tile_zero(0);
      for (int64_t k = 0; k < K; k += 32) {
        _tile_loadd(2, reinterpret_cast<const char*>(xp) + (k / 32) * b_bytes, M * 4);
        _tile_loadd(1, wn + k, K * 2);
        _tile_dpbf16ps(0, 1, 2);
      }
      _tile_stored(0, c, M * 4);
      for (int64_t r = 0; r < 16; ++r) {
        const float b = bias ? bias[n + r] : 0.f;
        for (int64_t m = 0; m < M; ++m)
          y[m * N + n + r] = static_cast<c10::BFloat16>(c[r * M + m] + b);
      }
    }
    _tile_release();
  }
  // A last block of fewer than 16 rows: the VDPBF16PS kernel (AMX-BF16 CPUs all have AVX512-BF16).
  if (n_full < n1) linear_rows_avx512bf16(x, w, bias, M, K, N, y, n_full, n1);
}

}  // namespace medr1::ops::backend

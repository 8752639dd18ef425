// Qwen2MLP on decode-step shapes (up to 16 rows, intermediate size above ATen's elementwise grain): the sliced
// silu(gate) * up must give exactly what the unsliced ATen ops give, in float32 and bfloat16.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "medr1/model/qwen2_text.h"
#include "medr1/ops/linear.h"

namespace {

TEST(DecodeMlp, SlicedSiluMulEqualsTheUnslicedOps) {
  at::NoGradGuard ng;
  at::manual_seed(9);
  medr1::model::Qwen2MLP mlp(48, 4096);  // 16 x 4096 = 65536 elements: two slices of 8 rows
  for (auto dt : {at::kFloat, at::kBFloat16}) {
    mlp->to(dt);
    for (int64_t B : {3, 9, 16}) {
      at::Tensor x = at::randn({B, 1, 48}).to(dt);
      at::Tensor g = medr1::ops::linear(x, mlp->gate_proj->weight);
      at::Tensor u = medr1::ops::linear(x, mlp->up_proj->weight);
      at::Tensor ref = medr1::ops::linear(at::silu(g) * u, mlp->down_proj->weight);
      at::Tensor y = mlp->forward(x);
      ASSERT_EQ(y.sizes(), x.sizes());
      EXPECT_TRUE(at::equal(y, ref)) << B << " " << dt;
    }
  }
}

}  // namespace

// attn_implementation (model/attention.h): names, the auto rule, and SDPA against transformers' eager math on CPU
// (GQA, left-padding + causal mask, prefill and decode shapes; fp32 within float noise, bf16 at rounding level).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "medr1/core/error.h"
#include "medr1/model/attention.h"
#include "medr1/model/qwen2_text.h"

namespace {

using medr1::model::AttnImplementation;

struct ImplScope {  // restores the process-wide setting
  AttnImplementation saved = medr1::model::attn_implementation();
  ~ImplScope() { medr1::model::set_attn_implementation(saved); }
};

TEST(Attention, NamesAndTheAutoRule) {
  ImplScope scope;
  EXPECT_EQ(medr1::model::parse_attn_implementation("eager"), AttnImplementation::Eager);
  EXPECT_EQ(medr1::model::parse_attn_implementation("sdpa"), AttnImplementation::Sdpa);
  EXPECT_EQ(medr1::model::parse_attn_implementation("flash_attention_2"), AttnImplementation::Sdpa);
  EXPECT_EQ(medr1::model::parse_attn_implementation("auto"), AttnImplementation::Auto);
  try {
    medr1::model::parse_attn_implementation("flash");
    FAIL() << "no error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'flash'"), std::string::npos) << e.what();
  }
  const at::Tensor cpu = at::zeros({1});
  medr1::model::set_attn_implementation(AttnImplementation::Auto);
  EXPECT_TRUE(medr1::model::use_sdpa_for(cpu));  // auto: sdpa on every device (transformers 4.49's default)
  medr1::model::set_attn_implementation(AttnImplementation::Sdpa);
  EXPECT_TRUE(medr1::model::use_sdpa_for(cpu));
  medr1::model::set_attn_implementation(AttnImplementation::Eager);
  EXPECT_FALSE(medr1::model::use_sdpa_for(cpu));
  EXPECT_NE(medr1::model::describe_attn_implementation("auto", at::kCPU).find("auto -> sdpa"), std::string::npos);
  EXPECT_NE(medr1::model::describe_attn_implementation("eager", at::kCPU).find("eager (transformers' eager"),
            std::string::npos);
}

TEST(Attention, SdpaEqualsEagerWithGqaAndPaddingMask) {
  at::NoGradGuard ng;
  at::manual_seed(11);
  const int64_t B = 2, H = 6, Hkv = 2, D = 32;
  for (int64_t S : {9, 1}) {  // prefill, then one decode step after 8 cached positions
    const int64_t past = S == 1 ? 8 : 0, T = past + S;
    at::Tensor q = at::randn({B, S, H, D}).transpose(1, 2);  // [B, H, S, D] as the module makes it
    at::Tensor k = at::randn({B, Hkv, T, D}), v = at::randn({B, Hkv, T, D});
    at::Tensor am = at::ones({B, T}, at::kLong);
    am[1].narrow(0, 0, 3).fill_(0);  // left padding on row 1
    for (auto dt : {at::kFloat, at::kBFloat16}) {
      at::Tensor mask = medr1::model::make_causal_mask(am, B, S, past, dt, at::kCPU);
      at::Tensor qq = q.to(dt), kk = k.to(dt), vv = v.to(dt);
      at::Tensor e = medr1::model::eager_attention(qq, kk, vv, mask).to(at::kDouble);
      at::Tensor s = medr1::model::sdpa_attention(qq, kk, vv, mask).to(at::kDouble);
      ASSERT_EQ(s.sizes(), e.sizes());
      const double err = (s - e).abs().max().item<double>();
      std::printf("S=%ld %s: max |sdpa - eager| = %.3e\n", static_cast<long>(S), c10::toString(dt), err);
      // fp32: summation order only. bf16: eager rounds scores and probabilities to bf16, SDPA keeps them in
      // float32; outputs are O(1), so a few bf16 ulps.
      EXPECT_LT(err, dt == at::kFloat ? 2e-6 : 3e-2) << S;
      // attention() follows the setting
      ImplScope scope;
      medr1::model::set_attn_implementation(AttnImplementation::Sdpa);
      EXPECT_TRUE(at::equal(medr1::model::attention(qq, kk, vv, mask), medr1::model::sdpa_attention(qq, kk, vv, mask)));
      medr1::model::set_attn_implementation(AttnImplementation::Eager);
      EXPECT_TRUE(at::equal(medr1::model::attention(qq, kk, vv, mask), medr1::model::eager_attention(qq, kk, vv, mask)));
    }
  }
}

}  // namespace

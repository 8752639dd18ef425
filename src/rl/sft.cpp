// SFT token loss (sft.h).
#include "medr1/rl/sft.h"

#include <ATen/ATen.h>

#include "medr1/core/error.h"

namespace medr1::rl {

at::Tensor sft_loss(const at::Tensor& per_token_logps, const at::Tensor& mask) {
  MEDR1_CHECK(per_token_logps.sizes() == mask.sizes(), "sft_loss: logps ", per_token_logps.sizes(), " vs mask ",
              mask.sizes());
  at::Tensor m = mask.to(per_token_logps.scalar_type());
  return -(per_token_logps * m).sum() / m.sum().clamp_min(1.0);
}

}  // namespace medr1::rl

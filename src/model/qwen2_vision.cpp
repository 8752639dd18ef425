// Vision tower of Qwen2-VL / Qwen2.5-VL. Mirrors transformers v4.49.0
// Qwen2VisionTransformerPretrainedModel and Qwen2_5_VisionTransformerPretrainedModel (eager):
// rotary in float32, softmax in float32, block-diagonal attention per frame (and per window for
// Qwen2.5-VL blocks outside fullatt_block_indexes). The [P, P] additive mask of the reference is
// not built: attention runs per segment, which is the same maths (masked scores exp to exactly 0).
// Letters: P = patch rows, D = embed_dim, H = heads, Dh = head_dim, M = P/4, n = segments, L = length.
#include "medr1/model/qwen2_vision.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>

#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/model/attention.h"
#include "medr1/model/checkpoint.h"
#include "medr1/ops/cpu_math_warmup.h"
#include "medr1/ops/gemm.h"
#include "medr1/ops/rotary.h"

namespace medr1::model {

namespace {

// A Linear module's forward through ops::gemm_linear (bf16 through fp32 GEMMs where the CPU lacks bf16 ones).
at::Tensor dense(const torch::nn::Linear& m, const at::Tensor& x) { return ops::gemm_linear(x, m->weight, m->bias); }

bool known_act(const std::string& act) {
  return act == "quick_gelu" || act == "silu" || act == "gelu" || act == "gelu_pytorch_tanh";
}

// ACT2FN of the names vision configs use.
at::Tensor apply_act(const at::Tensor& x, const std::string& act) {
  if (act == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (act == "silu") return at::silu(x);
  if (act == "gelu") return at::gelu(x);
  return at::gelu(x, "tanh");
}

// rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2]).
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// Grid rows (t, h, w) on the CPU as plain integers.
std::vector<std::array<int64_t, 3>> grid_rows(const at::Tensor& grid_thw) {
  MEDR1_CHECK(grid_thw.dim() == 2 && grid_thw.size(1) == 3,
              "Qwen2VisionTransformer: grid_thw must be [N, 3], got ", grid_thw.sizes());
  at::Tensor g = grid_thw.to(at::kCPU, at::kLong).contiguous();
  auto acc = g.accessor<int64_t, 2>();
  std::vector<std::array<int64_t, 3>> rows;
  rows.reserve(static_cast<size_t>(g.size(0)));
  for (int64_t i = 0; i < g.size(0); ++i) rows.push_back({acc[i][0], acc[i][1], acc[i][2]});
  return rows;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Qwen2VisionConfig parse_vision_config(const nlohmann::json& vc, bool is_qwen2_5,
                                      const std::string& file_for_errors) {
  const io::JsonCtx ctx{file_for_errors, "vision_config"};
  MEDR1_CHECK(vc.is_object(), ctx.where(), ": expected object, got ", io::json_type_name(vc));
  Qwen2VisionConfig c;
  c.is_qwen2_5 = is_qwen2_5;
  c.depth = io::get_or<int64_t>(vc, "depth", ctx, 32);
  c.num_heads = io::get_or<int64_t>(vc, "num_heads", ctx, 16);
  c.in_channels = io::get_or<int64_t>(vc, "in_channels", ctx, 3);
  c.patch_size = io::get_or<int64_t>(vc, "patch_size", ctx, 14);
  c.spatial_merge_size = io::get_or<int64_t>(vc, "spatial_merge_size", ctx, 2);
  c.temporal_patch_size = io::get_or<int64_t>(vc, "temporal_patch_size", ctx, 2);
  if (is_qwen2_5) {
    // Qwen2_5_VLVisionConfig defaults.
    c.embed_dim = io::get_or<int64_t>(vc, "hidden_size", ctx, 3584);
    c.hidden_size = io::get_or<int64_t>(vc, "out_hidden_size", ctx, 3584);
    c.mlp_hidden = io::get_or<int64_t>(vc, "intermediate_size", ctx, 3420);
    c.hidden_act = io::get_or<std::string>(vc, "hidden_act", ctx, "silu");
    c.window_size = io::get_or<int64_t>(vc, "window_size", ctx, 112);
    c.fullatt_block_indexes = io::get_or<std::vector<int64_t>>(vc, "fullatt_block_indexes", ctx,
                                                               {7, 15, 23, 31});
  } else {
    // Qwen2VLVisionConfig defaults.
    c.embed_dim = io::get_or<int64_t>(vc, "embed_dim", ctx, 1280);
    c.hidden_size = io::get_or<int64_t>(vc, "hidden_size", ctx, 3584);
    const double mlp_ratio = io::get_or<double>(vc, "mlp_ratio", ctx, 4.0);
    MEDR1_CHECK(mlp_ratio > 0, ctx.where("mlp_ratio"), ": must be > 0, got ", mlp_ratio);
    // HF: int(embed_dim * mlp_ratio).
    c.mlp_hidden = static_cast<int64_t>(static_cast<double>(c.embed_dim) * mlp_ratio);
    c.hidden_act = io::get_or<std::string>(vc, "hidden_act", ctx, "quick_gelu");
  }
  auto positive = [&](int64_t v, const char* key) {
    MEDR1_CHECK(v > 0, ctx.where(key), ": must be > 0, got ", v);
  };
  positive(c.depth, "depth");
  positive(c.num_heads, "num_heads");
  positive(c.in_channels, "in_channels");
  positive(c.patch_size, "patch_size");
  positive(c.spatial_merge_size, "spatial_merge_size");
  positive(c.temporal_patch_size, "temporal_patch_size");
  positive(c.embed_dim, is_qwen2_5 ? "hidden_size" : "embed_dim");
  positive(c.hidden_size, is_qwen2_5 ? "out_hidden_size" : "hidden_size");
  positive(c.mlp_hidden, is_qwen2_5 ? "intermediate_size" : "mlp_ratio");
  const char* dim_key = is_qwen2_5 ? "hidden_size" : "embed_dim";
  MEDR1_CHECK(c.embed_dim % c.num_heads == 0, ctx.where(dim_key), ": ", c.embed_dim,
              " is not divisible by num_heads ", c.num_heads);
  MEDR1_CHECK(c.head_dim() % 4 == 0, ctx.where(dim_key),
              ": head_dim ", c.head_dim(), " must be a multiple of 4 (2-D rotary)");
  MEDR1_CHECK(known_act(c.hidden_act), ctx.where("hidden_act"), ": unsupported activation '",
              c.hidden_act, "' (expected quick_gelu, silu, gelu or gelu_pytorch_tanh)");
  if (is_qwen2_5) {
    positive(c.window_size, "window_size");
    MEDR1_CHECK(c.window_size % (c.spatial_merge_size * c.patch_size) == 0 &&
                    c.window_size / (c.spatial_merge_size * c.patch_size) > 0,
                ctx.where("window_size"), ": ", c.window_size,
                " must be a positive multiple of spatial_merge_size*patch_size = ",
                c.spatial_merge_size * c.patch_size);
    for (size_t i = 0; i < c.fullatt_block_indexes.size(); ++i) {
      const int64_t b = c.fullatt_block_indexes[i];
      MEDR1_CHECK(b >= 0 && b < c.depth, ctx.where("fullatt_block_indexes[" + std::to_string(i) + "]"),
                  ": block ", b, " out of range [0, ", c.depth, ")");
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
Qwen2VisionRMSNormImpl::Qwen2VisionRMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor Qwen2VisionRMSNormImpl::forward(const at::Tensor& x) {
  // As HF Qwen2RMSNorm: normalise in float32 (float64 stays float64), cast back, scale by weight.
  at::Tensor xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(var + eps_)).to(x.scalar_type());
}

Qwen2VisionPatchEmbedProjImpl::Qwen2VisionPatchEmbedProjImpl(int64_t in_channels, int64_t embed_dim,
                                                             int64_t temporal_patch_size,
                                                             int64_t patch_size) {
  weight = register_parameter(
      "weight", at::empty({embed_dim, in_channels, temporal_patch_size, patch_size, patch_size})
                    .normal_(0.0, 0.02));
}

at::Tensor Qwen2VisionPatchEmbedProjImpl::forward(const at::Tensor& x) {
  // A stride == kernel Conv3d on one-kernel rows == x @ W^T with W viewed [D, C*T*ps*ps].
  at::Tensor w = weight.reshape({weight.size(0), -1});  // [D, K]
  MEDR1_CHECK(x.dim() == 2 && x.size(1) == w.size(1),
              "Qwen2VisionTransformer: pixel_values must be [P, ", w.size(1), "], got ", x.sizes());
  return ops::gemm_linear(x, w);  // [P, D]
}

Qwen2VisionPatchEmbedImpl::Qwen2VisionPatchEmbedImpl(const Qwen2VisionConfig& cfg) {
  proj = register_module("proj", Qwen2VisionPatchEmbedProj(cfg.in_channels, cfg.embed_dim,
                                                           cfg.temporal_patch_size, cfg.patch_size));
}

at::Tensor Qwen2VisionPatchEmbedImpl::forward(const at::Tensor& pixel_values) {
  // HF casts the input to the conv weight's dtype first.
  return proj->forward(pixel_values.to(proj->weight.device(), proj->weight.scalar_type()));
}

// ---------------------------------------------------------------------------------------------
Qwen2VisionAttentionImpl::Qwen2VisionAttentionImpl(int64_t dim, int64_t num_heads)
    : num_heads_(num_heads), head_dim_(dim / num_heads) {
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(true)));
  proj = register_module("proj", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(true)));
}

at::Tensor Qwen2VisionAttentionImpl::forward(const at::Tensor& x, const std::vector<int64_t>& seg_lens,
                                             const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t P = x.size(0), H = num_heads_, Dh = head_dim_;
  const auto dtype = x.scalar_type();
  at::Tensor qkv_out = dense(qkv, x).view({P, 3, H, Dh});  // [P, 3, H, Dh]
  at::Tensor q = qkv_out.select(1, 0), k = qkv_out.select(1, 1), v = qkv_out.select(1, 2);
  // Rotary in float32 (HF apply_rotary_pos_emb_vision), then back to the compute dtype. `hi` is
  // float32 for bf16/fp16/fp32 like HF; float64 stays float64 (finite-difference checks).
  // Inference on CPU: the same rounding in one pass (ops/rotary.h), without the float32 copies.
  const auto hi = at::promote_types(dtype, at::kFloat);
  if (ops::vision_rotary_applies(q, cos, sin) && ops::vision_rotary_applies(k, cos, sin)) {
    q = ops::vision_rotary(q, cos, sin);  // [P, H, Dh]
    k = ops::vision_rotary(k, cos, sin);
  } else {
    at::Tensor c = cos.unsqueeze(1).to(hi), s = sin.unsqueeze(1).to(hi);  // [P, 1, Dh]
    at::Tensor qf = q.to(hi), kf = k.to(hi);
    q = (qf * c + rotate_half(qf) * s).to(dtype);  // [P, H, Dh]
    k = (kf * c + rotate_half(kf) * s).to(dtype);
  }

  // Runs of consecutive segments with the same length are batched as [n, H, L, Dh] views.
  std::vector<at::Tensor> outs;
  const double inv_sqrt = 1.0 / std::sqrt(static_cast<double>(Dh));
  int64_t start = 0;
  for (size_t i = 0; i < seg_lens.size();) {
    const int64_t L = seg_lens[i];
    size_t j = i;
    while (j < seg_lens.size() && seg_lens[j] == L) ++j;
    const int64_t n = static_cast<int64_t>(j - i);
    i = j;
    if (L == 0) continue;
    auto seg = [&](const at::Tensor& t) {  // [n*L, H, Dh] -> [n, H, L, Dh]
      return t.narrow(0, start, n * L).view({n, L, H, Dh}).permute({0, 2, 1, 3});
    };
    at::Tensor qs = seg(q), ks = seg(k), vs = seg(v);
    at::Tensor o;
    if (use_sdpa_for(qs)) {
      o = at::scaled_dot_product_attention(qs, ks, vs);  // default scale 1/sqrt(Dh)
    } else {
      // HF eager: scores / sqrt(Dh), softmax in float32, cast back, @ v.
      at::Tensor scores = ops::matmul(qs, ks.transpose(-1, -2)) * inv_sqrt;  // [n, H, L, L]
      at::Tensor probs = at::softmax(scores, -1, hi).to(dtype);
      o = ops::matmul(probs, vs);  // [n, H, L, Dh]
    }
    outs.push_back(o.permute({0, 2, 1, 3}).reshape({n * L, H * Dh}));  // [n*L, D]
    start += n * L;
  }
  TORCH_CHECK(start == P, "Qwen2VisionAttention: segments cover ", start, " of ", P, " rows");
  at::Tensor attn = outs.size() == 1 ? outs[0] : at::cat(outs, 0);  // [P, D]
  return dense(proj, attn);
}

Qwen2VisionMlpImpl::Qwen2VisionMlpImpl(const Qwen2VisionConfig& cfg) : act_(cfg.hidden_act) {
  const int64_t D = cfg.embed_dim, F = cfg.mlp_hidden;
  using torch::nn::Linear;
  using torch::nn::LinearOptions;
  if (cfg.is_qwen2_5) {
    gate_proj = register_module("gate_proj", Linear(LinearOptions(D, F).bias(true)));
    up_proj = register_module("up_proj", Linear(LinearOptions(D, F).bias(true)));
    down_proj = register_module("down_proj", Linear(LinearOptions(F, D).bias(true)));
  } else {
    fc1 = register_module("fc1", Linear(LinearOptions(D, F).bias(true)));
    fc2 = register_module("fc2", Linear(LinearOptions(F, D).bias(true)));
  }
}

at::Tensor Qwen2VisionMlpImpl::forward(const at::Tensor& x) {
  if (gate_proj) {
    return dense(down_proj, apply_act(dense(gate_proj, x), act_) * dense(up_proj, x));
  }
  return dense(fc2, apply_act(dense(fc1, x), act_));
}

Qwen2VisionBlockImpl::Qwen2VisionBlockImpl(const Qwen2VisionConfig& cfg) {
  if (cfg.is_qwen2_5) {
    rms1 = register_module("norm1", Qwen2VisionRMSNorm(cfg.embed_dim, cfg.norm_eps));
    rms2 = register_module("norm2", Qwen2VisionRMSNorm(cfg.embed_dim, cfg.norm_eps));
  } else {
    auto opts = torch::nn::LayerNormOptions({cfg.embed_dim}).eps(cfg.norm_eps);
    ln1 = register_module("norm1", torch::nn::LayerNorm(opts));
    ln2 = register_module("norm2", torch::nn::LayerNorm(opts));
  }
  attn = register_module("attn", Qwen2VisionAttention(cfg.embed_dim, cfg.num_heads));
  mlp = register_module("mlp", Qwen2VisionMlp(cfg));
}

at::Tensor Qwen2VisionBlockImpl::forward(const at::Tensor& x, const std::vector<int64_t>& seg_lens,
                                         const at::Tensor& cos, const at::Tensor& sin) {
  at::Tensor h1 = rms1 ? rms1->forward(x) : ln1->forward(x);
  at::Tensor y = x + attn->forward(h1, seg_lens, cos, sin);
  at::Tensor h2 = rms2 ? rms2->forward(y) : ln2->forward(y);
  return y + mlp->forward(h2);
}

Qwen2VisionPatchMergerImpl::Qwen2VisionPatchMergerImpl(const Qwen2VisionConfig& cfg)
    : in_dim_(cfg.embed_dim * cfg.spatial_merge_size * cfg.spatial_merge_size) {
  if (cfg.is_qwen2_5) {
    ln_q_rms = register_module("ln_q", Qwen2VisionRMSNorm(cfg.embed_dim, cfg.norm_eps));
  } else {
    ln_q_ln = register_module(
        "ln_q", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.embed_dim}).eps(cfg.norm_eps)));
  }
  // nn.Sequential(Linear, GELU, Linear) in HF: parameters live at mlp.0 and mlp.2.
  mlp = register_module("mlp", std::make_shared<torch::nn::Module>("Sequential"));
  using torch::nn::Linear;
  using torch::nn::LinearOptions;
  mlp0 = mlp->register_module("0", Linear(LinearOptions(in_dim_, in_dim_).bias(true)));
  mlp2 = mlp->register_module("2", Linear(LinearOptions(in_dim_, cfg.hidden_size).bias(true)));
}

at::Tensor Qwen2VisionPatchMergerImpl::forward(const at::Tensor& x) {
  at::Tensor h = ln_q_rms ? ln_q_rms->forward(x) : ln_q_ln->forward(x);  // [P, D]
  h = h.reshape({-1, in_dim_});                                           // [M, 4D]
  return dense(mlp2, at::gelu(dense(mlp0, h)));                             // [M, hidden]
}

// ---------------------------------------------------------------------------------------------
Qwen2VisionTransformerImpl::Qwen2VisionTransformerImpl(const Qwen2VisionConfig& cfg) : cfg_(cfg) {
  ops::warm_up_cpu_math();  // MKL VML first calls on one thread (ops/cpu_math_warmup.h)
  MEDR1_CHECK(cfg.num_heads > 0 && cfg.embed_dim % cfg.num_heads == 0 && cfg.head_dim() % 4 == 0,
              "Qwen2VisionTransformer: embed_dim ", cfg.embed_dim, " / num_heads ", cfg.num_heads,
              " must give a head_dim that is a multiple of 4");
  patch_embed = register_module("patch_embed", Qwen2VisionPatchEmbed(cfg));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(Qwen2VisionBlock(cfg));
  merger = register_module("merger", Qwen2VisionPatchMerger(cfg));
}

at::Tensor Qwen2VisionTransformerImpl::rot_pos_emb(const at::Tensor& grid_thw) const {
  const auto rows = grid_rows(grid_thw);
  const int64_t ms = cfg_.spatial_merge_size;
  int64_t total = 0;
  for (const auto& r : rows) total += r[0] * r[1] * r[2];
  // Positions (h, w) per patch in processor order: (t, h-block, w-block, h-in, w-in).
  at::Tensor pos = at::empty({total, 2}, at::kLong);
  auto acc = pos.accessor<int64_t, 2>();
  int64_t p = 0;
  for (const auto& r : rows) {
    const int64_t t = r[0], h = r[1], w = r[2];
    MEDR1_CHECK(t > 0 && h > 0 && w > 0 && h % ms == 0 && w % ms == 0,
                "Qwen2VisionTransformer: grid_thw row (", t, ", ", h, ", ", w,
                ") must be positive with h, w multiples of spatial_merge_size ", ms);
    for (int64_t f = 0; f < t; ++f)
      for (int64_t hb = 0; hb < h / ms; ++hb)
        for (int64_t wb = 0; wb < w / ms; ++wb)
          for (int64_t hi = 0; hi < ms; ++hi)
            for (int64_t wi = 0; wi < ms; ++wi, ++p) {
              acc[p][0] = hb * ms + hi;
              acc[p][1] = wb * ms + wi;
            }
  }
  // HF VisionRotaryEmbedding(dim = Dh/2): inv_freq = 1 / 10000^(arange(0, dim, 2) / dim), fp32;
  // table = outer(arange(max_grid), inv_freq) gathered at (h, w) -> [P, 2, dim/2] -> [P, dim].
  const int64_t dim = cfg_.head_dim() / 2;
  at::Tensor inv_freq =
      1.0 / at::pow(10000.0, at::arange(0, dim, 2, at::kFloat) / static_cast<double>(dim));
  at::Tensor angles = pos.to(at::kFloat).unsqueeze(-1) * inv_freq;  // [P, 2, dim/2]
  return angles.reshape({total, dim});                              // [P, Dh/2]
}

std::pair<at::Tensor, at::Tensor> Qwen2VisionTransformerImpl::get_window_index(
    const at::Tensor& grid_thw) const {
  const auto rows = grid_rows(grid_thw);
  const int64_t ms = cfg_.spatial_merge_size, unit = ms * ms;
  const int64_t vws = cfg_.window_size / ms / cfg_.patch_size;  // window side in merged units
  MEDR1_CHECK(vws > 0, "Qwen2VisionTransformer: window_size ", cfg_.window_size, " too small");
  std::vector<int64_t> index, cu{0};
  int64_t base = 0;
  for (const auto& r : rows) {
    const int64_t t = r[0], lh = r[1] / ms, lw = r[2] / ms;
    // HF pads by vws - n % vws, i.e. a whole empty window when n is a multiple of vws.
    const int64_t nwh = (lh + vws - lh % vws) / vws, nww = (lw + vws - lw % vws) / vws;
    for (int64_t f = 0; f < t; ++f)
      for (int64_t wh = 0; wh < nwh; ++wh)
        for (int64_t ww = 0; ww < nww; ++ww) {
          int64_t count = 0;
          for (int64_t y = wh * vws; y < std::min((wh + 1) * vws, lh); ++y)
            for (int64_t x = ww * vws; x < std::min((ww + 1) * vws, lw); ++x, ++count)
              index.push_back(base + f * lh * lw + y * lw + x);
          cu.push_back(cu.back() + count * unit);
        }
    base += t * lh * lw;
  }
  at::Tensor wi = at::tensor(index, at::kLong);
  at::Tensor cw = at::tensor(cu, at::kLong);
  return {wi, cw};
}

at::Tensor Qwen2VisionTransformerImpl::forward(const at::Tensor& pixel_values, const at::Tensor& grid_thw,
                                               Qwen2VisionDebug* debug) {
  const auto rows = grid_rows(grid_thw);
  const int64_t ms = cfg_.spatial_merge_size, unit = ms * ms;
  int64_t P = 0;
  std::vector<int64_t> frame_lens;  // HF cu_seqlens: one segment per frame (t) of each image
  for (const auto& r : rows) {
    P += r[0] * r[1] * r[2];
    for (int64_t f = 0; f < r[0]; ++f) frame_lens.push_back(r[1] * r[2]);
  }
  MEDR1_CHECK(pixel_values.dim() == 2 && pixel_values.size(0) == P,
              "Qwen2VisionTransformer: pixel_values has ", pixel_values.dim() == 2 ? pixel_values.size(0) : -1,
              " rows (shape ", pixel_values.sizes(), ") but grid_thw implies ", P);

  at::Tensor x = patch_embed->forward(pixel_values);  // [P, D]
  if (P == 0) return merger->forward(x);              // no images: [0, hidden]
  const auto dev = x.device();
  at::Tensor rope = rot_pos_emb(grid_thw);            // [P, Dh/2] float32, CPU
  if (debug) {
    debug->rot_pos_emb = rope;
    debug->patch_embed = x;
    debug->block_outputs.clear();
    std::vector<int64_t> cs{0};
    for (int64_t l : frame_lens) cs.push_back(cs.back() + l);
    debug->cu_seqlens = at::tensor(cs, at::kLong);
  }

  std::vector<int64_t> window_lens;
  at::Tensor window_index, reverse_index;
  if (cfg_.is_qwen2_5) {
    auto [wi, cw] = get_window_index(grid_thw);
    window_index = wi;
    // torch.unique_consecutive(cu_window_seqlens) == dropping empty windows.
    auto cacc = cw.accessor<int64_t, 1>();
    for (int64_t i = 1; i < cw.size(0); ++i)
      if (cacc[i] != cacc[i - 1]) window_lens.push_back(cacc[i] - cacc[i - 1]);
    if (debug) {
      debug->window_index = wi;
      debug->cu_window_seqlens = cw;
    }
    // Permute patch rows and rotary rows in groups of `unit` (one merged 2x2 unit each).
    at::Tensor wi_dev = wi.to(dev);
    x = x.view({P / unit, unit, -1}).index_select(0, wi_dev).reshape({P, -1});
    rope = rope.view({P / unit, unit, -1}).index_select(0, wi).reshape({P, -1});
    reverse_index = at::empty_like(wi);
    reverse_index.index_put_({wi}, at::arange(wi.size(0), at::kLong));  // argsort of a permutation
    reverse_index = reverse_index.to(dev);
  }
  at::Tensor emb = at::cat({rope, rope}, -1).to(dev);  // [P, Dh] float32
  at::Tensor cos = emb.cos(), sin = emb.sin();

  for (int64_t i = 0; i < cfg_.depth; ++i) {
    bool full = !cfg_.is_qwen2_5 || std::find(cfg_.fullatt_block_indexes.begin(),
                                              cfg_.fullatt_block_indexes.end(),
                                              i) != cfg_.fullatt_block_indexes.end();
    auto block = blocks->ptr<Qwen2VisionBlockImpl>(static_cast<size_t>(i));
    const std::vector<int64_t>& segs = full ? frame_lens : window_lens;
    if (gradient_checkpointing_) {  // checkpoint() runs the block plainly when not training
      // Segment lengths and rotary tables are constants of the block, captured by value.
      auto fn = [block, segs, cos, sin](const at::Tensor& h) { return block->forward(h, segs, cos, sin); };
      x = checkpoint(*block, fn, x);
    } else {
      x = block->forward(x, segs, cos, sin);
    }
    if (debug) debug->block_outputs.push_back(x);
  }
  at::Tensor out = merger->forward(x);  // [M, hidden]
  if (debug) debug->merger_out_window_order = out;
  if (cfg_.is_qwen2_5) out = out.index_select(0, reverse_index);
  return out;
}

}  // namespace medr1::model

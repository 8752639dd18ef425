// Static per-layer KV cache for prefill + decode steps.
#include "medr1/model/kv_cache.h"

#include <ATen/ATen.h>

#include "medr1/core/error.h"
#include "medr1/model/qwen2_vl_config.h"

namespace medr1::model {

KVCache::KVCache(int64_t num_layers, int64_t batch, int64_t num_kv_heads, int64_t max_len, int64_t head_dim,
                 at::ScalarType dtype, at::Device device)
    : max_len_(max_len), batch_(batch) {
  MEDR1_CHECK(num_layers > 0 && batch > 0 && max_len > 0, "KVCache: layers, batch and max_len must be > 0");
  auto opt = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t l = 0; l < num_layers; ++l) {
    k_.push_back(at::zeros({batch, num_kv_heads, max_len, head_dim}, opt));
    v_.push_back(at::zeros({batch, num_kv_heads, max_len, head_dim}, opt));
  }
}

KVCache KVCache::for_config(const Qwen2VLConfig& cfg, int64_t batch, int64_t max_len, at::ScalarType dtype,
                            at::Device device) {
  return KVCache(cfg.num_hidden_layers, batch, cfg.num_key_value_heads, max_len, cfg.head_dim(), dtype, device);
}

std::pair<at::Tensor, at::Tensor> KVCache::update(int64_t layer, const at::Tensor& k_new, const at::Tensor& v_new) {
  MEDR1_CHECK(layer >= 0 && layer < num_layers(), "KVCache: layer ", layer, " out of range [0, ", num_layers(), ")");
  const int64_t s = k_new.size(2);
  MEDR1_CHECK(length_ + s <= max_len_, "KVCache: ", length_, " + ", s, " positions exceed the preallocated ",
              max_len_);
  MEDR1_CHECK(k_new.size(0) == batch_, "KVCache: batch ", k_new.size(0), " != cache batch ", batch_);
  at::Tensor& K = k_[static_cast<size_t>(layer)];
  at::Tensor& V = v_[static_cast<size_t>(layer)];
  K.narrow(2, length_, s).copy_(k_new);
  V.narrow(2, length_, s).copy_(v_new);
  return {K.narrow(2, 0, length_ + s), V.narrow(2, 0, length_ + s)};
}

void KVCache::advance(int64_t n) {
  MEDR1_CHECK(n >= 0 && length_ + n <= max_len_, "KVCache: cannot advance by ", n);
  length_ += n;
}

void KVCache::reset() {
  length_ = 0;
  rope_deltas = at::Tensor();
}

void KVCache::select_rows(const at::Tensor& rows) {
  for (auto& t : k_) t = t.index_select(0, rows.to(t.device()));
  for (auto& t : v_) t = t.index_select(0, rows.to(t.device()));
  if (rope_deltas.defined()) rope_deltas = rope_deltas.index_select(0, rows.to(rope_deltas.device()));
  batch_ = rows.size(0);
}

}  // namespace medr1::model

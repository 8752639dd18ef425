// Static KV cache of the Qwen2 text decoder: per layer K and V preallocated once per batch as
// [B, Hkv, Tmax, D] plus the number of filled positions, so generation runs prefill then decode steps
// without reallocating (transformers' DynamicCache grows by cat; the values are the same). Holds the
// M-RoPE rope_deltas of the prefill, which decode positions need. Inference only: writes are in place,
// so do not backprop through a forward that used a cache.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace medr1::model {

struct Qwen2VLConfig;

class KVCache {
 public:
  KVCache() = default;
  // Preallocates num_layers x [B, Hkv, max_len, D] zeros of `dtype` on `device`.
  KVCache(int64_t num_layers, int64_t batch, int64_t num_kv_heads, int64_t max_len, int64_t head_dim,
          at::ScalarType dtype, at::Device device);
  // Shapes from the text config (num_hidden_layers, num_key_value_heads, head_dim).
  static KVCache for_config(const Qwen2VLConfig& cfg, int64_t batch, int64_t max_len, at::ScalarType dtype,
                            at::Device device = at::kCPU);

  // Writes k_new, v_new [B, Hkv, S, D] at positions [length(), length() + S) of layer `layer` and returns
  // views of positions [0, length() + S). length() itself moves only with advance(), once all layers ran.
  std::pair<at::Tensor, at::Tensor> update(int64_t layer, const at::Tensor& k_new, const at::Tensor& v_new);
  void advance(int64_t n);
  // Empties the cache (keeps the buffers).
  void reset();
  // Keeps only rows `rows` (int64 [B']) of the batch, e.g. to drop finished sequences.
  void select_rows(const at::Tensor& rows);

  int64_t length() const { return length_; }
  int64_t max_length() const { return max_len_; }
  int64_t batch() const { return batch_; }
  int64_t num_layers() const { return static_cast<int64_t>(k_.size()); }
  bool empty() const { return length_ == 0; }

  at::Tensor rope_deltas;  // [B, 1] int64, set by the prefill (get_rope_index)

 private:
  std::vector<at::Tensor> k_, v_;  // num_layers x [B, Hkv, Tmax, D]
  int64_t length_ = 0, max_len_ = 0, batch_ = 0;
};

}  // namespace medr1::model

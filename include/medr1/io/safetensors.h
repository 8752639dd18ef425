// safetensors reader (mmap, zero-copy views) and writer (atomic), single files and sharded
// folders with model.safetensors.index.json, as Hugging Face writes them.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets:[begin,end]}, "__metadata__": {str: str}}, then the raw little-endian data.
// Hostile files are rejected with medr1::Error naming the file and the tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace medr1::io {

// One tensor's entry in a safetensors header.
struct TensorInfo {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F64"
  std::vector<int64_t> shape;  // empty = scalar
  uint64_t begin = 0;          // byte offsets relative to the start of the data section
  uint64_t end = 0;
};

// A memory-mapped safetensors file. Tensors returned by tensor() are zero-copy views of the
// mapping (CPU, the file's dtype) and keep the mapping alive on their own.
class SafetensorsFile {
 public:
  // Opens and validates the whole header; throws medr1::Error naming path and tensor.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  // Tensor names in file (header) order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Zero-copy view of the tensor's bytes (read-only by contract: do not write into it; the
  // mapping is private copy-on-write, so a stray write never reaches the file). A tensor whose
  // bytes are not aligned for its dtype in the file, or that is empty, is returned as a copy.
  at::Tensor tensor(const std::string& name) const;
  // Size in bytes of the data section (everything after the header).
  uint64_t data_size() const { return data_size_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::vector<std::string> names_;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
  std::shared_ptr<void> mapping_;  // the mmap; released when the last view dies
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
};

// Maps safetensors dtype strings to torch dtypes and back; throws on unknown strings.
at::ScalarType dtype_from_safetensors(const std::string& dtype);
std::string dtype_to_safetensors(at::ScalarType dtype);

// Opens every file of a checkpoint without reading tensors: `path` is a .safetensors file, or a
// folder holding model.safetensors (preferred, as transformers does) or
// model.safetensors.index.json (+ the shards it names, in shard-name order). Checks that each
// weight_map entry exists in its shard and that no tensor name appears in two shards.
std::vector<std::shared_ptr<SafetensorsFile>> open_safetensors(const std::string& path);

// All tensors of a checkpoint (same `path` rules as open_safetensors).
// Tensors are zero-copy views where possible; duplicate names across shards are an error.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

// Writes one file atomically (temp file in the same folder, fsync, rename, fsync folder).
// The header lists tensors in the given order; the data section is laid out by decreasing element
// size (stable), so every tensor is aligned for its dtype, as the Rust safetensors lib does.
// Tensors may be on any device and non-contiguous; `metadata` goes into "__metadata__".
// The header is compact JSON padded with spaces to a multiple of 8 bytes.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes a checkpoint folder's weights: a single model.safetensors when everything fits in
// max_shard_bytes, else model-0000i-of-0000N.safetensors shards plus model.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {name: shard}}), as transformers'
// save_pretrained does. Shards are filled in the given order; a new shard starts when the next
// tensor would push the current one over max_shard_bytes (tensor bytes, headers not counted); a
// tensor bigger than max_shard_bytes gets a shard of its own (huggingface_hub rules). Creates
// `dir` if needed. Each file is written atomically; after all new files are in place, stale
// model.safetensors / model-*-of-*.safetensors / index files of a previous save are removed.
// The folder as a whole is not atomic: write into a temp folder + commit_dir_atomic for that.
void save_safetensors_sharded(const std::string& dir,
                              const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                              uint64_t max_shard_bytes = 5ull * 1000 * 1000 * 1000);

}  // namespace medr1::io

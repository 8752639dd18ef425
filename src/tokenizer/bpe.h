// BPE model of a tokenizer.json ("model": {"type": "BPE", ...}): vocab, merges (both the
// "a b" string and the ["a", "b"] pair formats) and the merge loop of HF's Word::merge_all
// (lowest rank first, leftmost on ties). Works on raw bytes through bytes_to_unicode when the
// pre-tokenizer is ByteLevel, else on the word's code points. Internal header (src/).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <optional>
#include <cstdint>
#include <cstring>
#include <utility>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace medr1::tokenizer::detail {

// 64-bit hash for short strings: 8-byte words through a multiply-xorshift mix.
inline uint64_t hash_bytes(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0x94D049BB133111EBull;
  h ^= h >> 29;
  return h;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return static_cast<size_t>(hash_bytes(s)); }
};

// string -> int32 map with open addressing; the keys live in one arena (no per-key allocation),
// which makes loading a 151k-token vocab and looking tokens up cheap.
class FlatStringMap {
 public:
  void reserve(size_t n);
  // A later insert of the same key overwrites (JSON objects: the last duplicate key wins).
  void insert(std::string_view key, int32_t value);
  std::optional<int32_t> find(std::string_view key) const {
    if (slots_.empty()) return std::nullopt;
    const uint64_t h = hash_bytes(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.used) return std::nullopt;
      if (s.hash == h && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), key.size()) == 0) {
        return s.value;
      }
    }
  }
  size_t size() const { return size_; }
  template <typename F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.used) f(std::string_view(arena_).substr(s.off, s.len), s.value);
    }
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t off = 0;
    uint32_t len = 0;
    int32_t value = 0;
    bool used = false;
  };
  void grow();
  std::string arena_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// The big parts of a BPE model, captured while tokenizer.json is parsed (no JSON DOM for them).
struct BpeSource {
  FlatStringMap vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
};

// (left id, right id) -> (rank, merged id), open addressing on a 64-bit key.
class MergeMap {
 public:
  struct Slot {
    uint64_t key;
    int32_t rank;
    int32_t new_id;
  };
  void reserve(size_t n);
  // A later insert of the same pair overwrites (HF collects merges into a HashMap).
  void insert(int32_t a, int32_t b, int32_t rank, int32_t new_id);
  const Slot* find(int32_t a, int32_t b) const {
    const uint64_t key = make_key(a, b);
    size_t i = hash(key);
    for (;;) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s;
      if (s.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t make_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t hash(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Slot> slots_{Slot{kEmpty, 0, 0}};
  size_t mask_ = 0;
  int shift_ = 63;
  size_t size_ = 0;
};

class BPE {
 public:
  // `model` is tokenizer.json's "model" object (its vocab / merges may be empty when captured into
  // `src` during parsing); byte_level tells whether words arrive as raw bytes.
  static BPE build(const nlohmann::json& model, BpeSource src, bool byte_level);

  // Appends the ids of one pre-token.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const FlatStringMap& vocab() const { return vocab_; }
  std::optional<int32_t> token_to_id(std::string_view token) const { return vocab_.find(token); }
  size_t num_merges() const { return merges_.size(); }

 private:
  void merge_small(std::vector<int32_t>& ids) const;
  void merge_heap(std::vector<int32_t>& ids) const;
  // Initial symbols of a word: one per byte (byte-level) or per code point, unk/dropped when absent.
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;
  void push_symbol(std::vector<int32_t>& ids, int32_t id) const;

  FlatStringMap vocab_;
  MergeMap merges_;
  std::array<int32_t, 256> byte_ids_{};  // id of bytes_to_unicode(b), -1 if absent from the vocab
  bool byte_level_ = true;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
};

}  // namespace medr1::tokenizer::detail

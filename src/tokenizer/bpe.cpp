// BPE model: vocab and merges from tokenizer.json, and the merge loop. The result equals HF's
// Word::merge_all (a heap of (rank, position) pairs, stale entries skipped): at every step the
// adjacent pair with the lowest rank merges, the leftmost one on ties. Short words use a rank array
// scanned linearly (same order, fewer allocations); long words use the heap like HF.
#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstring>
#include <queue>

#include "medr1/core/error.h"
#include "tokenizer/byte_level.h"

namespace medr1::tokenizer::detail {

namespace {
constexpr size_t kSmallWord = 64;  // symbols; above this the heap is cheaper than rescans
}  // namespace

void MergeMap::reserve(size_t n) {
  size_t cap = 16;
  int bits = 4;
  while (cap < n * 3) {  // load factor <= 1/3 keeps probes short
    cap <<= 1;
    ++bits;
  }
  slots_.assign(cap, Slot{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

void MergeMap::insert(int32_t a, int32_t b, int32_t rank, int32_t new_id) {
  if ((size_ + 1) * 3 > slots_.size()) {
    std::vector<Slot> old;
    old.swap(slots_);
    reserve((size_ + 1) * 2);
    for (const Slot& s : old) {
      if (s.key != kEmpty) insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key & 0xFFFFFFFFu),
                                  s.rank, s.new_id);
    }
  }
  const uint64_t key = make_key(a, b);
  size_t i = hash(key);
  for (;;) {
    Slot& s = slots_[i];
    if (s.key == key) {
      s.rank = rank;
      s.new_id = new_id;
      return;
    }
    if (s.key == kEmpty) {
      s = Slot{key, rank, new_id};
      ++size_;
      return;
    }
    i = (i + 1) & mask_;
  }
}

void FlatStringMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;  // load factor <= 1/2
  if (cap <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  for (const Slot& s : old) {
    if (!s.used) continue;
    size_t i = s.hash & mask_;
    while (slots_[i].used) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void FlatStringMap::grow() { reserve(std::max<size_t>(16, size_ * 2 + 2)); }

void FlatStringMap::insert(std::string_view key, int32_t value) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t h = hash_bytes(key);
  size_t i = h & mask_;
  for (;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (!s.used) break;
    if (s.hash == h && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), key.size()) == 0) {
      s.value = value;
      return;
    }
  }
  Slot& s = slots_[i];
  s.hash = h;
  s.off = static_cast<uint32_t>(arena_.size());
  s.len = static_cast<uint32_t>(key.size());
  s.value = value;
  s.used = true;
  arena_.append(key);
  ++size_;
}

BPE BPE::build(const nlohmann::json& model, BpeSource src, bool byte_level) {
  const std::string where = "tokenizer.json: model";
  MEDR1_CHECK(model.is_object(), where, ": expected an object");
  MEDR1_CHECK(model.value("type", std::string("BPE")) == "BPE", where, ".type: expected \"BPE\", got ",
              model["type"].dump());
  MEDR1_CHECK(model.contains("vocab") && model["vocab"].is_object(), where, ".vocab: missing or not an object");
  MEDR1_CHECK(model.contains("merges") && model["merges"].is_array(), where, ".merges: missing or not an array");
  auto str_or_empty = [&](const char* key) {
    if (!model.contains(key) || model[key].is_null()) return std::string();
    MEDR1_CHECK(model[key].is_string(), where, ".", key, ": expected a string or null");
    return model[key].get<std::string>();
  };
  MEDR1_CHECK(str_or_empty("continuing_subword_prefix").empty() && str_or_empty("end_of_word_suffix").empty(),
              where, ": continuing_subword_prefix / end_of_word_suffix are not supported");
  MEDR1_CHECK(!model.value("byte_fallback", false), where, ".byte_fallback=true is not supported");

  BPE bpe;
  bpe.byte_level_ = byte_level;
  bpe.ignore_merges_ = model.value("ignore_merges", false);
  bpe.fuse_unk_ = model.value("fuse_unk", false);
  bpe.vocab_ = std::move(src.vocab);
  const std::string unk = str_or_empty("unk_token");
  if (!unk.empty()) {
    auto u = bpe.token_to_id(unk);
    MEDR1_CHECK(u.has_value(), where, ".unk_token \"", unk, "\" is not in the vocab");
    bpe.unk_id_ = *u;
  }

  bpe.merges_.reserve(src.merges.size());
  std::string merged;
  for (size_t rank = 0; rank < src.merges.size(); ++rank) {
    const auto& [left, right] = src.merges[rank];
    auto a = bpe.token_to_id(left);
    auto b = bpe.token_to_id(right);
    MEDR1_CHECK(a.has_value(), where, ".merges[", rank, "]: token \"", left, "\" is not in the vocab");
    MEDR1_CHECK(b.has_value(), where, ".merges[", rank, "]: token \"", right, "\" is not in the vocab");
    merged.assign(left);
    merged.append(right);
    auto c = bpe.token_to_id(merged);
    MEDR1_CHECK(c.has_value(), where, ".merges[", rank, "]: merged token \"", merged, "\" is not in the vocab");
    bpe.merges_.insert(*a, *b, static_cast<int32_t>(rank), *c);
  }

  const auto& b2s = byte_level_strings();
  for (int b = 0; b < 256; ++b) {
    auto id = bpe.token_to_id(b2s[b]);
    bpe.byte_ids_[b] = id ? *id : -1;
  }
  return bpe;
}

void BPE::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  bool last_unk = false;
  auto add = [&](int32_t id) {
    if (id >= 0) {
      ids.push_back(id);
      last_unk = false;
    } else if (unk_id_ >= 0) {
      // HF: an unknown symbol becomes unk_token, consecutive ones fused into one with fuse_unk.
      if (!(fuse_unk_ && last_unk)) ids.push_back(unk_id_);
      last_unk = true;
    }  // no unk_token: the symbol is dropped, as HF does
  };
  if (byte_level_) {
    for (unsigned char c : word) add(byte_ids_[c]);
    return;
  }
  size_t i = 0;
  while (i < word.size()) {
    const size_t start = i;
    next_code_point(word, i);
    add(vocab_.find(word.substr(start, i - start)).value_or(-1));
  }
}

void BPE::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    std::string mapped;
    if (byte_level_) {
      const auto& b2s = byte_level_strings();
      for (unsigned char c : word) mapped += b2s[c];
    } else {
      mapped.assign(word);
    }
    if (auto id = vocab_.find(mapped)) {
      out.push_back(*id);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  ids.clear();
  initial_symbols(word, ids);
  if (ids.size() > 1) {
    if (ids.size() <= kSmallWord) {
      merge_small(ids);
    } else {
      merge_heap(ids);
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

void BPE::merge_small(std::vector<int32_t>& ids) const {
  // ranks[i] / new_ids[i] describe the pair (ids[i], ids[i+1]); INT32_MAX = no merge.
  int32_t ranks[kSmallWord];
  int32_t new_ids[kSmallWord];
  size_t n = ids.size();
  auto look = [&](size_t i) {
    const MergeMap::Slot* s = merges_.find(ids[i], ids[i + 1]);
    ranks[i] = s ? s->rank : INT32_MAX;
    new_ids[i] = s ? s->new_id : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) look(i);
  while (n > 1) {
    size_t best = 0;
    int32_t best_rank = ranks[0];
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    ids[best] = new_ids[best];
    // Drop symbol best+1 and pair best+1's slot (pair best now spans to the old best+2).
    std::memmove(&ids[best + 1], &ids[best + 2], (n - best - 2) * sizeof(int32_t));
    if (best + 2 < n) {
      std::memmove(&ranks[best + 1], &ranks[best + 2], (n - best - 3) * sizeof(int32_t));
      std::memmove(&new_ids[best + 1], &new_ids[best + 2], (n - best - 3) * sizeof(int32_t));
    }
    --n;
    if (best + 1 < n) look(best);
    if (best > 0) look(best - 1);
  }
  ids.resize(n);
}

void BPE::merge_heap(std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Merge {
    int32_t pos;
    int32_t rank;
    int32_t new_id;
  };
  // priority_queue pops the largest: order so that lower rank, then lower pos, is "larger".
  auto cmp = [](const Merge& a, const Merge& b) {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
  };
  const int32_t n = static_cast<int32_t>(ids.size());
  std::vector<Symbol> sym(ids.size());
  for (int32_t i = 0; i < n; ++i) sym[i] = Symbol{ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::vector<Merge> storage;
  storage.reserve(ids.size());
  std::priority_queue<Merge, std::vector<Merge>, decltype(cmp)> queue(cmp, std::move(storage));
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const MergeMap::Slot* s = merges_.find(sym[i].id, sym[i + 1].id)) queue.push(Merge{i, s->rank, s->new_id});
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = sym[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const int32_t right_pos = cur.next;
    const Symbol right = sym[right_pos];
    // Stale entry: the pair at this position changed since it was queued.
    const MergeMap::Slot* now = merges_.find(cur.id, right.id);
    if (now == nullptr || now->new_id != top.new_id) continue;
    cur.id = top.new_id;
    cur.next = right.next;
    sym[right_pos].alive = false;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeMap::Slot* s = merges_.find(sym[cur.prev].id, cur.id)) {
        queue.push(Merge{cur.prev, s->rank, s->new_id});
      }
    }
    if (cur.next >= 0) {
      if (const MergeMap::Slot* s = merges_.find(cur.id, sym[cur.next].id)) {
        queue.push(Merge{top.pos, s->rank, s->new_id});
      }
    }
  }
  ids.clear();
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) ids.push_back(sym[i].id);
}

}  // namespace medr1::tokenizer::detail

// safetensors reader (mmap, zero-copy views) and atomic writer, single files and sharded folders.
// Validation follows the Rust safetensors lib (Metadata::validate): header <= 100 MB, starts
// with '{', sorted data ranges contiguous from 0 to the end of the file, shape x dtype size ==
// byte range with overflow checks. Also rejected (serde does the same): duplicate keys and
// __metadata__ that is not {str: str}. Shard naming and index json mirror transformers.
#include "medr1/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_file.h"
#include "medr1/core/error.h"
#include "medr1/io/json_util.h"

namespace medr1::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts would need byte swaps");

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // Rust safetensors MAX_HEADER_SIZE
constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},  {"I8", at::kChar, 1},   {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Quote a name for messages; hostile names may hold anything, keep messages one line.
std::string q(const std::string& name) {
  std::string out = "'";
  for (unsigned char c : name.substr(0, 200)) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (name.size() > 200) out += "...";
  return out + "'";
}

// A JSON value that must be a non-negative integer representable in uint64.
bool as_u64(const ojson& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

// Parses the header JSON, rejecting duplicate keys in any object (nlohmann would keep the last
// one silently; serde_json errors on duplicate fields, and a duplicated tensor name is ambiguous).
ojson parse_header(const char* text, size_t n, const std::string& path) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string top_key;                      // the tensor entry being parsed, for messages
  auto cb = [&](int /*depth*/, ojson::parse_event_t ev, ojson& parsed) {
    switch (ev) {
      case ojson::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case ojson::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case ojson::parse_event_t::key: {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (keys.size() == 1) top_key = k;
        if (!keys.empty() && !keys.back().insert(k).second) {
          if (keys.size() == 1) fail(path, ": tensor ", q(k), ": duplicate name in header");
          fail(path, ": tensor ", q(top_key), ": duplicate key ", q(k), " in header");
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return ojson::parse(text, text + n, cb);
  } catch (const ojson::parse_error& e) {
    std::string detail = e.what();
    if (auto p = detail.find("] "); p != std::string::npos) detail = detail.substr(p + 2);
    fail(path, ": invalid header JSON at byte ", e.byte, ": ", detail);
  } catch (const ojson::exception& e) {
    fail(path, ": invalid header JSON: ", e.what());
  }
}

TensorInfo parse_entry(const std::string& name, const ojson& v, const std::string& path) {
  auto where = [&] { return path + ": tensor " + q(name) + ": "; };
  MEDR1_CHECK(v.is_object(), where(), "header entry must be an object, got ", json_type_name(v));
  TensorInfo info;
  info.name = name;

  auto dt = v.find("dtype");
  MEDR1_CHECK(dt != v.end(), where(), "missing dtype");
  MEDR1_CHECK(dt->is_string(), where(), "dtype must be a string, got ", json_type_name(*dt));
  info.dtype = dt->get<std::string>();
  const DtypeEntry* d = find_dtype(info.dtype);
  MEDR1_CHECK(d != nullptr, where(), "unsupported dtype ", q(info.dtype),
              " (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");

  auto sh = v.find("shape");
  MEDR1_CHECK(sh != v.end(), where(), "missing shape");
  MEDR1_CHECK(sh->is_array(), where(), "shape must be an array, got ", json_type_name(*sh));
  // numel and bytes with overflow checks; everything must also fit int64 for at::Tensor.
  constexpr uint64_t kLimit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  for (size_t i = 0; i < sh->size(); ++i) {
    uint64_t dim = 0;
    MEDR1_CHECK(as_u64((*sh)[i], &dim), where(), "shape[", i,
                "] must be a non-negative integer, got ", (*sh)[i].dump());
    MEDR1_CHECK(dim <= kLimit, where(), "shape[", i, "] = ", dim, " is too large");
    MEDR1_CHECK(dim == 0 || numel <= kLimit / dim, where(), "shape ", (*sh).dump(),
                " overflows the element count");
    numel *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  MEDR1_CHECK(numel <= kLimit / d->size, where(), "shape ", shape_str(info.shape),
              " overflows the byte size");
  uint64_t nbytes = numel * d->size;

  auto off = v.find("data_offsets");
  MEDR1_CHECK(off != v.end(), where(), "missing data_offsets");
  MEDR1_CHECK(off->is_array() && off->size() == 2, where(),
              "data_offsets must be an array [begin, end], got ", off->dump());
  MEDR1_CHECK(as_u64((*off)[0], &info.begin) && as_u64((*off)[1], &info.end), where(),
              "data_offsets must be non-negative integers, got ", off->dump());
  MEDR1_CHECK(info.begin <= info.end, where(), "data_offsets begin ", info.begin, " > end ",
              info.end);
  MEDR1_CHECK(info.end - info.begin == nbytes, where(), "shape ", shape_str(info.shape), " x ",
              info.dtype, " = ", nbytes, " bytes, but data_offsets [", info.begin, ", ",
              info.end, "] span ", info.end - info.begin, " bytes");
  return info;
}

// "model-00001-of-00003.safetensors" (transformers' shard names). No std::regex: GCC 12 warns
// falsely inside <regex> under -O2 with sanitizers.
bool is_shard_name(const std::string& fn) {
  static const std::string pat = "model-#####-of-#####.safetensors";
  if (fn.size() != pat.size()) return false;
  for (size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] == '#' ? !(fn[i] >= '0' && fn[i] <= '9') : fn[i] != pat[i]) return false;
  }
  return true;
}

struct Mapping {
  void* addr = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, len);
  }
};

}  // namespace

at::ScalarType dtype_from_safetensors(const std::string& dtype) {
  const DtypeEntry* d = find_dtype(dtype);
  MEDR1_CHECK(d != nullptr, "safetensors: unsupported dtype ", q(dtype),
              " (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
  return d->type;
}

std::string dtype_to_safetensors(at::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.type == dtype) return d.name;
  fail("safetensors: cannot store dtype ", c10::toString(dtype));
}

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, ": cannot stat (", std::strerror(err), ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(path, ": file too short for a safetensors header (", file_size, " bytes < 8)");
  }
  auto m = std::make_shared<Mapping>();
  // Private + writable: copy-on-write pages, so a caller writing into a view (against the
  // contract) changes only its own memory and can never corrupt the file.
  void* addr = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  if (addr == MAP_FAILED && map_err == ENOMEM) {
    // Strict overcommit accounting (vm.overcommit_memory=2) charges writable private maps;
    // fall back to read-only pages (a write into a view would then fault).
    addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    map_err = errno;
  }
  ::close(fd);
  if (addr == MAP_FAILED) fail(path, ": mmap failed (", std::strerror(map_err), ")");
  m->addr = addr;
  m->len = file_size;
  const auto* base = static_cast<const uint8_t*>(addr);

  uint64_t n = 0;
  std::memcpy(&n, base, 8);  // little-endian u64 (static_assert above)
  MEDR1_CHECK(n <= kMaxHeaderBytes, path, ": header length ", n, " exceeds the ",
              kMaxHeaderBytes, "-byte limit");
  MEDR1_CHECK(n <= file_size - 8, path, ": header length ", n, " exceeds the file size ",
              file_size);
  MEDR1_CHECK(n >= 2 && base[8] == '{', path, ": header must be a JSON object starting with '{'");

  ojson header = parse_header(reinterpret_cast<const char*>(base + 8), n, path);
  MEDR1_CHECK(header.is_object(), path, ": header must be a JSON object, got ",
              json_type_name(header));

  const uint64_t data_size = file_size - 8 - n;
  std::vector<const TensorInfo*> by_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      MEDR1_CHECK(it->is_object(), path, ": __metadata__ must be an object of strings, got ",
                  json_type_name(*it));
      for (auto mt = it->begin(); mt != it->end(); ++mt) {
        MEDR1_CHECK(mt->is_string(), path, ": __metadata__[", q(mt.key()),
                    "] must be a string, got ", json_type_name(*mt));
        f->metadata_[mt.key()] = mt->get<std::string>();
      }
      continue;
    }
    TensorInfo info = parse_entry(name, *it, path);
    MEDR1_CHECK(info.end <= data_size, path, ": tensor ", q(name), ": data_offsets [",
                info.begin, ", ", info.end, "] out of bounds of the ", data_size,
                "-byte data section");
    f->names_.push_back(name);
    f->infos_.emplace(name, std::move(info));
  }
  for (const auto& [name, info] : f->infos_) by_offset.push_back(&info);
  // Rust safetensors: sorted by offsets, the ranges tile [0, data_size) with no gap or overlap.
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  for (const TensorInfo* info : by_offset) {
    MEDR1_CHECK(info->begin == pos, path, ": tensor ", q(info->name), ": data_offsets [",
                info->begin, ", ", info->end, "] ",
                info->begin < pos ? "overlap the previous tensor" : "leave a gap after byte ",
                info->begin < pos ? "" : std::to_string(pos),
                " (tensor data must be contiguous)");
    pos = info->end;
  }
  MEDR1_CHECK(pos == data_size, path, ": tensors cover ", pos, " bytes but the data section has ",
              data_size, " bytes (truncated or trailing data)");

  f->data_ = base + 8 + n;
  f->data_size_ = data_size;
  f->mapping_ = std::move(m);
  return f;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  MEDR1_CHECK(it != infos_.end(), path_, ": no tensor ", q(name));
  return it->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const DtypeEntry* d = find_dtype(ti.dtype);  // validated at open
  auto opts = at::TensorOptions().dtype(d->type).device(at::kCPU);
  const uint8_t* p = data_ + ti.begin;
  const uint64_t nbytes = ti.end - ti.begin;
  if (d->type == at::kBool) {
    // A bool byte other than 0/1 is undefined behaviour in C++ and torch.
    for (uint64_t i = 0; i < nbytes; ++i)
      MEDR1_CHECK(p[i] <= 1, path_, ": tensor ", q(name), ": BOOL byte ", i, " has value ",
                  int(p[i]), " (must be 0 or 1)");
  }
  if (nbytes == 0) return at::empty(ti.shape, opts);
  if (reinterpret_cast<uintptr_t>(p) % d->size != 0) {
    // Unaligned for the dtype (files written by other tools may do that): copy.
    at::Tensor t = at::empty(ti.shape, opts);
    std::memcpy(t.data_ptr(), p, nbytes);
    return t;
  }
  std::shared_ptr<void> keep = mapping_;
  // from_blob wants void*; the pages are private copy-on-write (see open), never the file.
  return at::from_blob(const_cast<uint8_t*>(p), ti.shape, [keep](void*) mutable { keep.reset(); },
                       opts);
}

// ---------------------------------------------------------------------------------------------
// Folders and shards

std::vector<std::shared_ptr<SafetensorsFile>> open_safetensors(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {SafetensorsFile::open(path)};

  fs::path dir(path);
  if (fs::exists(dir / kSingleName, ec)) return {SafetensorsFile::open((dir / kSingleName).string())};
  const std::string index_path = (dir / kIndexName).string();
  MEDR1_CHECK(fs::exists(index_path, ec), path, ": no ", kSingleName, " or ", kIndexName,
              " in this folder (pass a HF checkpoint folder or a .safetensors file)");

  nlohmann::json index = read_json_file(index_path);
  JsonCtx ctx(index_path);
  const nlohmann::json& wm = get_object(index, "weight_map", ctx);
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    MEDR1_CHECK(it->is_string(), index_path, ": weight_map[", q(it.key()),
                "] must be a string, got ", json_type_name(*it));
    const std::string shard = it->get<std::string>();
    // A hostile index must not send us outside the folder.
    MEDR1_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                    shard.find('\\') == std::string::npos && shard != "." && shard != "..",
                index_path, ": weight_map[", q(it.key()), "] = ", q(shard),
                " is not a file name in the checkpoint folder");
    by_shard[shard].push_back(it.key());
  }
  MEDR1_CHECK(!by_shard.empty(), index_path, ": weight_map is empty");

  std::vector<std::shared_ptr<SafetensorsFile>> files;
  std::map<std::string, std::string> owner;  // tensor -> shard, to catch duplicates
  for (const auto& [shard, names] : by_shard) {
    auto f = SafetensorsFile::open((dir / shard).string());
    for (const auto& n : names)
      MEDR1_CHECK(f->contains(n), index_path, ": weight_map says tensor ", q(n), " is in ", shard,
                  " but that file has no such tensor");
    for (const auto& n : f->names()) {
      auto [it, inserted] = owner.emplace(n, shard);
      MEDR1_CHECK(inserted, path, ": tensor ", q(n), " appears in two shards: ", it->second,
                  " and ", shard);
    }
    files.push_back(std::move(f));
  }
  return files;
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (const auto& f : open_safetensors(path)) {
    for (const auto& n : f->names()) {
      auto [it, inserted] = out.emplace(n, f->tensor(n));
      MEDR1_CHECK(inserted, path, ": tensor ", q(n), " appears twice");
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    at::Tensor t;  // contiguous CPU
    std::string dtype;
    size_t elem;
    uint64_t nbytes;
    uint64_t begin = 0;
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    MEDR1_CHECK(!name.empty(), path, ": empty tensor name");
    MEDR1_CHECK(name != "__metadata__", path, ": tensor name '__metadata__' is reserved");
    MEDR1_CHECK(seen.insert(name).second, path, ": tensor ", q(name), " given twice");
    MEDR1_CHECK(t.defined(), path, ": tensor ", q(name), " is undefined");
    const std::string dt = dtype_to_safetensors(t.scalar_type());
    at::Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
    items.push_back({&name, c, dt, static_cast<size_t>(c.element_size()),
                     static_cast<uint64_t>(c.numel()) * static_cast<uint64_t>(c.element_size())});
  }
  // Data order: decreasing element size, stable, so every tensor stays aligned for its dtype
  // (the data section starts 8-aligned and every byte size is a multiple of the element size).
  std::vector<Item*> order;
  for (auto& it : items) order.push_back(&it);
  std::stable_sort(order.begin(), order.end(),
                   [](const Item* a, const Item* b) { return a->elem > b->elem; });
  uint64_t pos = 0;
  for (Item* it : order) {
    it->begin = pos;
    pos += it->nbytes;
  }

  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  for (const auto& it : items) {
    ojson e = ojson::object();
    e["dtype"] = it.dtype;
    e["shape"] = it.t.sizes().vec();
    e["data_offsets"] = {it.begin, it.begin + it.nbytes};
    header[*it.name] = std::move(e);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const ojson::exception& e) {
    fail(path, ": cannot serialise header (tensor names and metadata must be UTF-8): ", e.what());
  }
  // Pad with spaces to a multiple of 8 (the Rust writer does this), so the data is 8-aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();

  detail::AtomicFile out(path);
  out.write(&n, 8);
  out.write(text.data(), text.size());
  for (const Item* it : order)
    if (it->nbytes) out.write(it->t.data_ptr(), it->nbytes);
  out.commit();
}

void save_safetensors_sharded(const std::string& dir,
                              const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                              uint64_t max_shard_bytes) {
  MEDR1_CHECK(max_shard_bytes > 0, dir, ": max_shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  MEDR1_CHECK(!ec, dir, ": cannot create folder (", ec.message(), ")");

  // huggingface_hub split_state_dict_into_shards: fill in order; an oversized tensor gets its
  // own shard (appended immediately, before the shard being filled).
  using Shard = std::vector<std::pair<std::string, at::Tensor>>;
  std::vector<Shard> shards;
  Shard cur;
  uint64_t cur_size = 0, total = 0;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    MEDR1_CHECK(seen.insert(name).second, dir, ": tensor ", q(name), " given twice");
    MEDR1_CHECK(t.defined(), dir, ": tensor ", q(name), " is undefined");
    const uint64_t sz = static_cast<uint64_t>(t.numel()) * static_cast<uint64_t>(t.element_size());
    total += sz;
    if (sz > max_shard_bytes) {
      shards.push_back({{name, t}});
      continue;
    }
    if (cur_size + sz > max_shard_bytes) {
      shards.push_back(std::move(cur));
      cur.clear();
      cur_size = 0;
    }
    cur.emplace_back(name, t);
    cur_size += sz;
  }
  if (!cur.empty() || shards.empty()) shards.push_back(std::move(cur));

  std::set<std::string> written;
  if (shards.size() == 1) {
    save_safetensors((fs::path(dir) / kSingleName).string(), shards[0]);
    written.insert(kSingleName);
  } else {
    const size_t n = shards.size();
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < n; ++i) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
      save_safetensors((fs::path(dir) / buf).string(), shards[i]);
      written.insert(buf);
      for (const auto& [name, t] : shards[i]) weight_map[name] = buf;
    }
    // transformers: json.dumps(index, indent=2, sort_keys=True) + "\n"
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::string text = index.dump(2) + "\n";
    detail::AtomicFile out((fs::path(dir) / kIndexName).string());
    out.write(text.data(), text.size());
    out.commit();
    written.insert(kIndexName);
  }

  // Remove what a previous save left that is not part of this one.
  bool removed = false;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string fn = e.path().filename().string();
    const bool ours = fn == kSingleName || fn == kIndexName || is_shard_name(fn);
    if (ours && !written.count(fn)) {
      fs::remove(e.path(), ec);
      MEDR1_CHECK(!ec, e.path().string(), ": cannot remove stale shard (", ec.message(), ")");
      removed = true;
    }
  }
  if (removed) detail::fsync_dir(dir);
}

}  // namespace medr1::io

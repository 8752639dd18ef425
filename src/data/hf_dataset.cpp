// Hugging Face `datasets` folders in and out (hf_dataset.h), through Apache Arrow's C++ library
// (the libarrow of the venv's pyarrow wheel). Mirrors datasets 5.2 Dataset.save_to_disk /
// load_from_disk: state.json lists the shards, each an Arrow IPC stream of record batches whose
// schema carries the features under the "huggingface" metadata key; the Image feature is
// struct<bytes: binary, path: string>. Every batch read is fully validated (ValidateFull) so a
// corrupt file is an error, not a crash. No multi-shard writing, no dataset cache files.
#include "medr1/data/hf_dataset.h"

#include <arrow/array.h>
#include <arrow/builder.h>
#include <arrow/io/file.h>
#include <arrow/ipc/reader.h>
#include <arrow/ipc/writer.h>
#include <arrow/record_batch.h>
#include <arrow/type.h>
#include <arrow/util/key_value_metadata.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "medr1/core/error.h"

// libarrow of the pyarrow wheel exports std::__cxx11::basic_string in its API (GCC 14,
// manylinux_2_28).
#if defined(_GLIBCXX_USE_CXX11_ABI)
static_assert(_GLIBCXX_USE_CXX11_ABI == 1,
              "the pyarrow wheel's libarrow uses the new C++11 std::string ABI");
#endif

namespace medr1::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kState = "state.json";
constexpr const char* kInfo = "dataset_info.json";
constexpr const char* kDict = "dataset_dict.json";
constexpr int64_t kRowsPerBatch = 100;  // datasets' ARROW_RECORD_BATCH_SIZE_FOR_IMAGE_DATASETS

void check_ok(const arrow::Status& st, const std::string& what) {
  MEDR1_CHECK(st.ok(), what, ": ", st.ToString());
}
template <typename T>
T value_or_fail(arrow::Result<T> r, const std::string& what) {
  check_ok(r.status(), what);
  return std::move(r).ValueOrDie();
}

json read_json(const fs::path& p, const std::string& label) {
  std::ifstream in(p, std::ios::binary);
  MEDR1_CHECK(in.good(), label, ": ", p.filename().string(), ": cannot open (",
              std::strerror(errno), ")");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(label, ": ", p.filename().string(), ": JSON parse error: ", e.what());
  }
}

// Writes through a temporary name, so a reader never sees half a file.
void write_text_atomic(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MEDR1_CHECK(out.good(), tmp.string(), ": cannot write (", std::strerror(errno), ")");
    out << text;
    out.flush();
    MEDR1_CHECK(out.good(), tmp.string(), ": write failed (", std::strerror(errno), ")");
  }
  fs::rename(tmp, p);
}

bool is_string_type(const arrow::DataType& t) {
  return t.id() == arrow::Type::STRING || t.id() == arrow::Type::LARGE_STRING;
}
bool is_binary_type(const arrow::DataType& t) {
  return t.id() == arrow::Type::BINARY || t.id() == arrow::Type::LARGE_BINARY;
}

// The value of a string / binary array at row i (not null).
std::string_view bytes_at(const arrow::Array& a, int64_t i) {
  switch (a.type_id()) {
    case arrow::Type::STRING:
      return static_cast<const arrow::StringArray&>(a).GetView(i);
    case arrow::Type::LARGE_STRING:
      return static_cast<const arrow::LargeStringArray&>(a).GetView(i);
    case arrow::Type::BINARY:
      return static_cast<const arrow::BinaryArray&>(a).GetView(i);
    case arrow::Type::LARGE_BINARY:
      return static_cast<const arrow::LargeBinaryArray&>(a).GetView(i);
    default:
      fail("internal: bytes_at on ", a.type()->ToString());
  }
}

// Types an extra column may have to land in Record::extra.
bool json_convertible(const arrow::DataType& t) {
  switch (t.id()) {
    case arrow::Type::NA:
    case arrow::Type::BOOL:
    case arrow::Type::INT8:
    case arrow::Type::INT16:
    case arrow::Type::INT32:
    case arrow::Type::INT64:
    case arrow::Type::UINT8:
    case arrow::Type::UINT16:
    case arrow::Type::UINT32:
    case arrow::Type::UINT64:
    case arrow::Type::FLOAT:
    case arrow::Type::DOUBLE:
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING:
      return true;
    case arrow::Type::LIST:
    case arrow::Type::LARGE_LIST:
    case arrow::Type::FIXED_SIZE_LIST:
      return json_convertible(*t.field(0)->type());
    case arrow::Type::STRUCT:
      for (const auto& f : t.fields())
        if (!json_convertible(*f->type())) return false;
      return true;
    default:
      return false;
  }
}

template <typename ArrayT>
json numeric_at(const arrow::Array& a, int64_t i) {
  return json(static_cast<const ArrayT&>(a).Value(i));
}

json list_to_json(const arrow::Array& values, int64_t off, int64_t len);

// Row i of an array of a json_convertible type.
json to_json(const arrow::Array& a, int64_t i) {
  if (a.IsNull(i)) return nullptr;
  switch (a.type_id()) {
    case arrow::Type::BOOL:
      return static_cast<const arrow::BooleanArray&>(a).Value(i);
    case arrow::Type::INT8:
      return numeric_at<arrow::Int8Array>(a, i);
    case arrow::Type::INT16:
      return numeric_at<arrow::Int16Array>(a, i);
    case arrow::Type::INT32:
      return numeric_at<arrow::Int32Array>(a, i);
    case arrow::Type::INT64:
      return numeric_at<arrow::Int64Array>(a, i);
    case arrow::Type::UINT8:
      return numeric_at<arrow::UInt8Array>(a, i);
    case arrow::Type::UINT16:
      return numeric_at<arrow::UInt16Array>(a, i);
    case arrow::Type::UINT32:
      return numeric_at<arrow::UInt32Array>(a, i);
    case arrow::Type::UINT64:
      return numeric_at<arrow::UInt64Array>(a, i);
    case arrow::Type::FLOAT:
      return numeric_at<arrow::FloatArray>(a, i);
    case arrow::Type::DOUBLE:
      return numeric_at<arrow::DoubleArray>(a, i);
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING:
      return std::string(bytes_at(a, i));
    case arrow::Type::LIST: {
      const auto& l = static_cast<const arrow::ListArray&>(a);
      return list_to_json(*l.values(), l.value_offset(i), l.value_length(i));
    }
    case arrow::Type::LARGE_LIST: {
      const auto& l = static_cast<const arrow::LargeListArray&>(a);
      return list_to_json(*l.values(), l.value_offset(i), l.value_length(i));
    }
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& l = static_cast<const arrow::FixedSizeListArray&>(a);
      return list_to_json(*l.values(), l.value_offset(i), l.value_length(i));
    }
    case arrow::Type::STRUCT: {
      const auto& s = static_cast<const arrow::StructArray&>(a);
      json o = json::object();
      for (int k = 0; k < s.num_fields(); ++k)
        o[s.type()->field(k)->name()] = to_json(*s.field(k), i);
      return o;
    }
    default:
      return nullptr;  // not reached: columns are checked with json_convertible
  }
}

json list_to_json(const arrow::Array& values, int64_t off, int64_t len) {
  json arr = json::array();
  for (int64_t k = 0; k < len; ++k) arr.push_back(to_json(values, off + k));
  return arr;
}

// Where the three Med-R1 columns are in one shard's schema.
struct Columns {
  int image = -1, problem = -1, solution = -1;
  int image_bytes = -1,
      image_path = -1;  // fields of the Image struct; -1 for a plain string image column
  std::vector<int> extras;
};

Columns find_columns(const arrow::Schema& schema, const std::string& where,
                     std::set<std::string>& warned_columns) {
  Columns c;
  std::string names;
  for (int i = 0; i < schema.num_fields(); ++i) names += (i ? ", " : "") + schema.field(i)->name();
  auto column = [&](const char* name, bool required) {
    const int i = schema.GetFieldIndex(name);
    MEDR1_CHECK(i >= 0 || !required, where, ": ", name, ": missing (columns: ", names, ")");
    return i;
  };
  c.image = column("image", true);
  c.problem = column("problem", true);
  c.solution = column("solution", false);
  const arrow::DataType& it = *schema.field(c.image)->type();
  if (it.id() == arrow::Type::STRUCT) {
    const auto& st = static_cast<const arrow::StructType&>(it);
    c.image_bytes = st.GetFieldIndex("bytes");
    c.image_path = st.GetFieldIndex("path");
    MEDR1_CHECK(c.image_bytes >= 0 || c.image_path >= 0, where,
                ": image: expected an Image (struct<bytes: binary, ", "path: string>), got ",
                it.ToString());
    MEDR1_CHECK(c.image_bytes < 0 || is_binary_type(*st.field(c.image_bytes)->type()), where,
                ": image.bytes: expected binary, got ",
                st.field(c.image_bytes)->type()->ToString());
    MEDR1_CHECK(c.image_path < 0 || is_string_type(*st.field(c.image_path)->type()), where,
                ": image.path: expected string, got ", st.field(c.image_path)->type()->ToString());
  } else {
    MEDR1_CHECK(is_string_type(it), where,
                ": image: expected an Image (struct<bytes: binary, path: string>) or a ",
                "string path, got ", it.ToString());
  }
  for (int i : {c.problem, c.solution}) {
    if (i < 0) continue;
    const auto& f = *schema.field(i);
    MEDR1_CHECK(is_string_type(*f.type()), where, ": ", f.name(), ": expected string, got ",
                f.type()->ToString());
  }
  for (int i = 0; i < schema.num_fields(); ++i) {
    if (i == c.image || i == c.problem || i == c.solution) continue;
    const auto& f = *schema.field(i);
    if (json_convertible(*f.type())) {
      c.extras.push_back(i);
    } else if (warned_columns.insert(f.name()).second) {
      spdlog::warn(
          "{}: column '{}' ({}) is not loaded (only null, bool, numbers, strings and lists / "
          "structs of "
          "those go to the records' extra fields)",
          where, f.name(), f.type()->ToString());
    }
  }
  return c;
}

// The record batches of one .arrow file: an IPC stream (what save_to_disk writes) or an IPC file
// ("ARROW1").
class ShardReader {
 public:
  ShardReader(const fs::path& path, const std::string& where) : where_(where) {
    auto file =
        value_or_fail(arrow::io::ReadableFile::Open(path.string()), where + ": cannot open");
    char magic[6] = {};
    const int64_t got = value_or_fail(file->ReadAt(0, 6, magic), where + ": cannot read");
    check_ok(file->Seek(0), where + ": cannot read");
    if (got == 6 && std::memcmp(magic, "ARROW1", 6) == 0) {
      file_reader_ = value_or_fail(arrow::ipc::RecordBatchFileReader::Open(file),
                                   where + ": not a readable Arrow IPC file");
      schema_ = file_reader_->schema();
    } else {
      stream_reader_ = value_or_fail(arrow::ipc::RecordBatchStreamReader::Open(file),
                                     where + ": not a readable Arrow IPC stream");
      schema_ = stream_reader_->schema();
    }
  }
  const arrow::Schema& schema() const { return *schema_; }
  // Null at the end.
  std::shared_ptr<arrow::RecordBatch> next() {
    std::shared_ptr<arrow::RecordBatch> b;
    if (file_reader_) {
      if (next_batch_ >= file_reader_->num_record_batches()) return nullptr;
      b = value_or_fail(file_reader_->ReadRecordBatch(next_batch_),
                        where_ + ": record batch " + std::to_string(next_batch_));
    } else {
      check_ok(stream_reader_->ReadNext(&b),
               where_ + ": record batch " + std::to_string(next_batch_));
      if (!b) return nullptr;
    }
    check_ok(b->ValidateFull(),
             where_ + ": record batch " + std::to_string(next_batch_) + " is corrupt");
    ++next_batch_;
    return b;
  }

 private:
  std::string where_;
  std::shared_ptr<arrow::ipc::RecordBatchFileReader> file_reader_;
  std::shared_ptr<arrow::ipc::RecordBatchStreamReader> stream_reader_;
  std::shared_ptr<arrow::Schema> schema_;
  int next_batch_ = 0;
};

// The shard file names state.json lists, checked to exist.
std::vector<fs::path> shard_files(const fs::path& dir, const json& state,
                                  const std::string& label) {
  const std::string w = label + ": " + kState;
  MEDR1_CHECK(state.is_object(), w, ": expected an object");
  auto it = state.find("_data_files");
  MEDR1_CHECK(it != state.end(), w, ": _data_files: missing");
  MEDR1_CHECK(it->is_array(), w, ": _data_files: expected an array");
  std::vector<fs::path> files;
  for (size_t k = 0; k < it->size(); ++k) {
    const json& e = (*it)[k];
    const std::string wk = w + ": _data_files[" + std::to_string(k) + "]";
    MEDR1_CHECK(e.is_object() && e.contains("filename") && e["filename"].is_string(), wk,
                ": filename: missing or not a string");
    const std::string name = e["filename"].get<std::string>();
    const fs::path p = dir / name;
    std::error_code ec;
    MEDR1_CHECK(fs::is_regular_file(p, ec), wk, ": ", name, ": file not found");
    files.push_back(p);
  }
  return files;
}

std::string quoted_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "'" : ", '") + x + "'";
  return s;
}

std::vector<std::string> dict_splits(const fs::path& folder) {
  const json d = read_json(folder / kDict, folder.string());
  const std::string w = folder.string() + ": " + kDict;
  MEDR1_CHECK(d.is_object() && d.contains("splits") && d["splits"].is_array(), w,
              ": splits: missing or not a list");
  std::vector<std::string> splits;
  for (const auto& s : d["splits"]) {
    MEDR1_CHECK(s.is_string(), w, ": splits: expected strings");
    splits.push_back(s.get<std::string>());
  }
  MEDR1_CHECK(!splits.empty(), w, ": splits: empty");
  return splits;
}

}  // namespace

bool is_hf_dataset(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  for (const char* f : {kState, kInfo, kDict})
    if (fs::is_regular_file(fs::path(path) / f, ec)) return true;
  return false;
}

std::string choose_hf_split(const std::string& folder, const LoadOptions& opts) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(folder) / kDict, ec)) return "";
  const std::vector<std::string> splits = dict_splits(folder);
  for (const auto& s : splits)
    if (s == opts.hf_split) return s;
  MEDR1_CHECK(splits.size() == 1, folder, ": ", kDict, ": no split '", opts.hf_split,
              "' (splits: ", quoted_list(splits), ")");
  spdlog::info("{}: no split '{}'; reading its only split '{}'", folder, opts.hf_split, splits[0]);
  return splits[0];
}

std::vector<Record> load_hf_dataset(const std::string& folder, const LoadOptions& opts,
                                    int64_t first_index) {
  const std::string split = choose_hf_split(folder, opts);
  const fs::path dir = split.empty() ? fs::path(folder) : fs::path(folder) / split;
  std::error_code ec;
  MEDR1_CHECK(fs::is_regular_file(dir / kState, ec), (split.empty() ? folder : dir.string()), ": ",
              kState, ": not found (a folder written by datasets' save_to_disk has it)");
  const json state = read_json(dir / kState, dir.string());
  std::string label = folder;
  if (!split.empty()) {
    label += " (" + split + ")";
  } else if (state.is_object() && state.contains("_split") && state["_split"].is_string()) {
    label += " (" + state["_split"].get<std::string>() + ")";
  }
  const std::vector<fs::path> shards = shard_files(dir, state, label);

  std::vector<Record> out;
  std::set<std::string> warned;
  int64_t row = 0;
  for (const fs::path& shard : shards) {
    const std::string sw = label + ": " + shard.filename().string();
    ShardReader reader(shard, sw);
    const Columns c = find_columns(reader.schema(), sw, warned);
    while (auto batch = reader.next()) {
      const arrow::Array& image = *batch->column(c.image);
      const arrow::Array& problem = *batch->column(c.problem);
      const arrow::Array* solution = c.solution >= 0 ? batch->column(c.solution).get() : nullptr;
      const arrow::Array* img_bytes = nullptr;
      const arrow::Array* img_path = &image;
      std::shared_ptr<arrow::Array> bytes_child,
          path_child;  // StructArray::field slices to the batch's rows
      if (image.type_id() == arrow::Type::STRUCT) {
        const auto& s = static_cast<const arrow::StructArray&>(image);
        if (c.image_bytes >= 0) bytes_child = s.field(c.image_bytes);
        if (c.image_path >= 0) path_child = s.field(c.image_path);
        img_bytes = bytes_child.get();
        img_path = path_child.get();
      }
      for (int64_t i = 0; i < batch->num_rows(); ++i, ++row) {
        const std::string w = label + ": row " + std::to_string(row);
        Record r;
        r.index = first_index + static_cast<int64_t>(out.size());
        r.file_index = row;
        r.source_file = dir.string();
        MEDR1_CHECK(!problem.IsNull(i), w, ": problem: missing (null)");
        r.problem = std::string(bytes_at(problem, i));
        if (solution != nullptr && !solution->IsNull(i))
          r.solution = std::string(bytes_at(*solution, i));
        MEDR1_CHECK(r.solution || !opts.require_solution, w, ": solution: missing");
        const bool struct_null = image.IsNull(i);
        const bool has_bytes = !struct_null && img_bytes != nullptr && !img_bytes->IsNull(i);
        const bool has_path = !struct_null && img_path != nullptr && !img_path->IsNull(i);
        MEDR1_CHECK(has_bytes || has_path, w, ": image: missing (null, no bytes and no path)");
        r.image = has_path ? std::string(bytes_at(*img_path, i))
                           : dir.string() + "#" + std::to_string(row);
        if (has_bytes) {
          const std::string_view b = bytes_at(*img_bytes, i);
          r.image_bytes = std::make_shared<const std::vector<uint8_t>>(b.begin(), b.end());
          r.image_path = r.image;
        } else {
          r.image_path = resolve_image_path(r.image, opts.image_root);
        }
        for (int k : c.extras)
          r.extra[batch->schema()->field(k)->name()] = to_json(*batch->column(k), i);
        out.push_back(std::move(r));
      }
    }
  }
  spdlog::debug("{}: {} rows from {} shard(s)", label, out.size(), shards.size());
  return out;
}

namespace {

enum class Kind { int64, float64, boolean, string, json_text };

struct ExtraColumn {
  std::string name;
  Kind kind = Kind::string;
};

std::vector<ExtraColumn> extra_columns(const std::vector<Record>& records) {
  std::vector<ExtraColumn> cols;
  std::map<std::string, size_t> pos;
  std::vector<std::set<int>>
      seen;  // value kinds per column: 0 int, 1 float, 2 bool, 3 string, 4 other
  for (const auto& r : records) {
    if (!r.extra.is_object()) continue;
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) {
      if (it.key() == "image" || it.key() == "problem" || it.key() == "solution") continue;
      auto [p, fresh] = pos.emplace(it.key(), cols.size());
      if (fresh) {
        cols.push_back({it.key()});
        seen.emplace_back();
      }
      const json& v = it.value();
      if (v.is_null()) continue;
      seen[p->second].insert(v.is_number_integer() ? 0
                             : v.is_number()       ? 1
                             : v.is_boolean()      ? 2
                             : v.is_string()       ? 3
                                                   : 4);
    }
  }
  for (size_t k = 0; k < cols.size(); ++k) {
    const auto& s = seen[k];
    if (s.empty() || s == std::set<int>{3}) {
      cols[k].kind = Kind::string;
    } else if (s == std::set<int>{0}) {
      cols[k].kind = Kind::int64;
    } else if (s == std::set<int>{0, 1} || s == std::set<int>{1}) {
      cols[k].kind = Kind::float64;
    } else if (s == std::set<int>{2}) {
      cols[k].kind = Kind::boolean;
    } else {
      cols[k].kind = Kind::json_text;
    }
  }
  return cols;
}

const char* dtype_of(Kind k) {
  switch (k) {
    case Kind::int64:
      return "int64";
    case Kind::float64:
      return "float64";
    case Kind::boolean:
      return "bool";
    default:
      return "string";
  }
}

std::shared_ptr<arrow::DataType> arrow_type_of(Kind k) {
  switch (k) {
    case Kind::int64:
      return arrow::int64();
    case Kind::float64:
      return arrow::float64();
    case Kind::boolean:
      return arrow::boolean();
    default:
      return arrow::utf8();
  }
}

std::vector<uint8_t> read_image_file(const Record& r, const std::string& where) {
  std::ifstream in(r.image_path, std::ios::binary);
  MEDR1_CHECK(in.good(), where, ": image '", r.image_path, "': cannot open (", std::strerror(errno),
              ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  return {s.begin(), s.end()};
}

// FNV-1a 64 of the file: a stable 16-hex-digit _fingerprint (datasets makes a random or content
// hash there).
std::string fingerprint_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  uint64_t h = 1469598103934665603ull;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ull;
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

void write_hf_dataset(const std::vector<Record>& records, const std::string& folder,
                      const std::string& split) {
  const fs::path dir(folder);
  fs::create_directories(dir);
  bool any_solution = false;
  for (const auto& r : records) any_solution = any_solution || r.solution.has_value();
  const std::vector<ExtraColumn> extras = extra_columns(records);

  // Features in column order (dataset_info.json and the schema's "huggingface" metadata).
  nlohmann::ordered_json features = nlohmann::ordered_json::object();
  features["image"] = {{"_type", "Image"}};
  features["problem"] = {{"dtype", "string"}, {"_type", "Value"}};
  if (any_solution) features["solution"] = {{"dtype", "string"}, {"_type", "Value"}};
  for (const auto& e : extras) features[e.name] = {{"dtype", dtype_of(e.kind)}, {"_type", "Value"}};

  const auto image_type =
      arrow::struct_({arrow::field("bytes", arrow::binary()), arrow::field("path", arrow::utf8())});
  arrow::FieldVector fields{arrow::field("image", image_type),
                            arrow::field("problem", arrow::utf8())};
  if (any_solution) fields.push_back(arrow::field("solution", arrow::utf8()));
  for (const auto& e : extras) fields.push_back(arrow::field(e.name, arrow_type_of(e.kind)));
  const nlohmann::ordered_json hf_meta = {{"info", {{"features", features}}}};
  const auto schema =
      arrow::schema(fields, arrow::key_value_metadata({"huggingface"}, {hf_meta.dump()}));

  const std::string data_name = "data-00000-of-00001.arrow";
  const fs::path data_path = dir / data_name;
  const fs::path data_tmp = dir / (data_name + ".tmp");
  const std::string w = folder + ": " + data_name;
  auto sink =
      value_or_fail(arrow::io::FileOutputStream::Open(data_tmp.string()), w + ": cannot write");
  auto writer =
      value_or_fail(arrow::ipc::MakeStreamWriter(sink, schema), w + ": cannot start the stream");

  try {  // a failed write leaves no half file behind
    // No record batch at all for no records (the stream holds just the schema, as pyarrow writes an
    // empty table).
    for (size_t start = 0; start < records.size(); start += kRowsPerBatch) {
      const size_t end = std::min(records.size(), start + kRowsPerBatch);
      arrow::MemoryPool* pool = arrow::default_memory_pool();
      auto bytes_b = std::make_shared<arrow::BinaryBuilder>(pool);
      auto path_b = std::make_shared<arrow::StringBuilder>(pool);
      arrow::StructBuilder image_b(image_type, pool, {bytes_b, path_b});
      arrow::StringBuilder problem_b(pool), solution_b(pool);
      std::vector<std::unique_ptr<arrow::ArrayBuilder>> extra_b;
      for (const auto& e : extras) {
        switch (e.kind) {
          case Kind::int64:
            extra_b.push_back(std::make_unique<arrow::Int64Builder>(pool));
            break;
          case Kind::float64:
            extra_b.push_back(std::make_unique<arrow::DoubleBuilder>(pool));
            break;
          case Kind::boolean:
            extra_b.push_back(std::make_unique<arrow::BooleanBuilder>(pool));
            break;
          default:
            extra_b.push_back(std::make_unique<arrow::StringBuilder>(pool));
            break;
        }
      }
      for (size_t i = start; i < end; ++i) {
        const Record& r = records[i];
        const std::string wr = folder + ": record " + std::to_string(i);
        if (r.image.empty() && !r.image_bytes) {
          check_ok(image_b.AppendNull(), wr);
        } else {
          std::vector<uint8_t> file_bytes;
          const std::vector<uint8_t>* b = r.image_bytes.get();
          if (b == nullptr) {
            file_bytes = read_image_file(r, wr);
            b = &file_bytes;
          }
          check_ok(image_b.Append(), wr);
          check_ok(bytes_b->Append(b->data(), static_cast<int64_t>(b->size())), wr + ": image");
          check_ok(r.image.empty() ? path_b->AppendNull() : path_b->Append(r.image),
                   wr + ": image");
        }
        check_ok(problem_b.Append(r.problem), wr + ": problem");
        if (any_solution)
          check_ok(r.solution ? solution_b.Append(*r.solution) : solution_b.AppendNull(), wr);
        for (size_t k = 0; k < extras.size(); ++k) {
          const auto it = r.extra.is_object() ? r.extra.find(extras[k].name) : r.extra.end();
          arrow::ArrayBuilder& ab = *extra_b[k];
          if (!r.extra.is_object() || it == r.extra.end() || it->is_null()) {
            check_ok(ab.AppendNull(), wr);
            continue;
          }
          switch (extras[k].kind) {
            case Kind::int64:
              check_ok(static_cast<arrow::Int64Builder&>(ab).Append(it->get<int64_t>()), wr);
              break;
            case Kind::float64:
              check_ok(static_cast<arrow::DoubleBuilder&>(ab).Append(it->get<double>()), wr);
              break;
            case Kind::boolean:
              check_ok(static_cast<arrow::BooleanBuilder&>(ab).Append(it->get<bool>()), wr);
              break;
            case Kind::string:
              check_ok(static_cast<arrow::StringBuilder&>(ab).Append(it->get<std::string>()), wr);
              break;
            case Kind::json_text:
              check_ok(static_cast<arrow::StringBuilder&>(ab).Append(
                           it->is_string() ? it->get<std::string>() : it->dump()),
                       wr);
              break;
          }
        }
      }
      arrow::ArrayVector cols;
      cols.push_back(value_or_fail(image_b.Finish(), w));
      cols.push_back(value_or_fail(problem_b.Finish(), w));
      if (any_solution) cols.push_back(value_or_fail(solution_b.Finish(), w));
      for (auto& b : extra_b) cols.push_back(value_or_fail(b->Finish(), w));
      const auto batch = arrow::RecordBatch::Make(schema, static_cast<int64_t>(end - start), cols);
      check_ok(writer->WriteRecordBatch(*batch), w + ": write");
    }
    check_ok(writer->Close(), w + ": close");
    check_ok(sink->Close(), w + ": close");
  } catch (...) {
    (void)sink->Close();
    writer.reset();
    sink.reset();
    std::error_code ec;
    fs::remove(data_tmp, ec);
    throw;
  }
  fs::rename(data_tmp, data_path);

  nlohmann::ordered_json info = nlohmann::ordered_json::object();
  info["citation"] = "";
  info["description"] = "";
  info["features"] = features;
  info["homepage"] = "";
  info["license"] = "";
  write_text_atomic(dir / kInfo, info.dump(2));
  json state = {{"_data_files", json::array({{{"filename", data_name}}})},
                {"_fingerprint", fingerprint_of(data_path)},
                {"_format_columns", nullptr},
                {"_format_kwargs", json::object()},
                {"_format_type", nullptr},
                {"_output_all_columns", false},
                {"_split", split.empty() ? json(nullptr) : json(split)}};
  write_text_atomic(dir / kState, state.dump(2));  // keys sorted, as json.dump(sort_keys=True)
}

void write_hf_dataset_dict(const std::vector<std::pair<std::string, std::vector<Record>>>& splits,
                           const std::string& folder) {
  MEDR1_CHECK(!splits.empty(), folder, ": a DatasetDict needs at least one split");
  json names = json::array();
  for (const auto& [name, recs] : splits) {
    MEDR1_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
                folder, ": split name '", name, "' is not a folder name");
    write_hf_dataset(recs, (fs::path(folder) / name).string(), name);
    names.push_back(name);
  }
  write_text_atomic(fs::path(folder) / kDict, json{{"splits", names}}.dump());
}

}  // namespace medr1::data

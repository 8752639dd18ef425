// safetensors reader/writer: hand-built files from the format spec, round trips of every dtype,
// zero-copy and alignment behaviour, hostile headers, atomic replacement, sharded folders.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "io_test_util.h"
#include "medr1/io/safetensors.h"

using namespace medr1::io;
using namespace medr1::io::test;
using nlohmann::json;

namespace {

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  at::Tensor ca = a.contiguous(), cb = b.contiguous();
  const size_t n = static_cast<size_t>(ca.numel()) * ca.element_size();
  return n == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), n) == 0;
}

// Six distinctive values per dtype, including extremes, inf/nan and subnormals.
at::Tensor values_for(at::ScalarType t) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (t) {
    case at::kDouble: return at::tensor({0.1, -1e300, inf, -0.0, nan, 5e-324}, at::kDouble);
    case at::kFloat:
      return at::tensor({1.5f, -2.25f, 3.4e38f, 1e-45f, static_cast<float>(inf),
                         static_cast<float>(nan)}, at::kFloat);
    case at::kHalf:
    case at::kBFloat16:
      return at::tensor({1.0f, -0.5f, 65504.0f, 6e-8f, static_cast<float>(inf), -3.0f}).to(t);
    case at::kLong:
      return at::tensor({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                         int64_t{-1}, int64_t{0}, int64_t{42}, int64_t{7}}, at::kLong);
    case at::kInt: return at::tensor({INT32_MIN, INT32_MAX, -1, 0, 42, 7}, at::kInt);
    case at::kShort: return at::tensor({-32768, 32767, -1, 0, 42, 7}, at::kInt).to(at::kShort);
    case at::kChar: return at::tensor({-128, 127, -1, 0, 42, 7}, at::kInt).to(at::kChar);
    case at::kByte: return at::tensor({0, 255, 1, 128, 42, 7}, at::kInt).to(at::kByte);
    case at::kBool: return at::tensor({1, 0, 0, 1, 1, 0}, at::kInt).to(at::kBool);
    default: ADD_FAILURE() << "no values for dtype"; return {};
  }
}

const std::vector<std::pair<std::string, at::ScalarType>> kAllDtypes = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool}};

}  // namespace

TEST(Safetensors, DtypeNames) {
  for (const auto& [name, type] : kAllDtypes) {
    EXPECT_EQ(dtype_from_safetensors(name), type) << name;
    EXPECT_EQ(dtype_to_safetensors(type), name) << name;
  }
  EXPECT_THROW(dtype_from_safetensors("F8_E4M3"), medr1::Error);
  EXPECT_THROW(dtype_to_safetensors(at::kComplexFloat), medr1::Error);
}

// Bytes written by hand from the format spec: the reader must decode them exactly.
TEST(Safetensors, ReadsHandBuiltFile) {
  TempDir d;
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[],"data_offsets":[8,10]},)"
      R"("__metadata__":{"format":"pt","k":"v"}})";
  // 1.0f = 0x3f800000, -2.0f = 0xc0000000, bf16 1.5 = 0x3fc0, all little-endian.
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\xc0\xc0\x3f", 10);
  write_bytes(d.file("x.safetensors"), st_bytes(header + "  ", data));  // trailing spaces ok
  auto f = SafetensorsFile::open(d.file("x.safetensors"));
  EXPECT_EQ(f->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f->metadata().at("k"), "v");
  EXPECT_EQ(f->info("b").dtype, "BF16");
  EXPECT_TRUE(f->info("b").shape.empty());
  at::Tensor a = f->tensor("a");
  ASSERT_EQ(a.scalar_type(), at::kFloat);
  EXPECT_EQ(a[0].item<float>(), 1.0f);
  EXPECT_EQ(a[1].item<float>(), -2.0f);
  at::Tensor b = f->tensor("b");
  EXPECT_EQ(b.dim(), 0);
  EXPECT_EQ(b.to(at::kFloat).item<float>(), 1.5f);
  EXPECT_THROW(f->tensor("c"), medr1::Error);
}

// The writer's bytes follow the spec exactly: compact header, spaces to 8 bytes, LE data.
TEST(Safetensors, WriterBytesFollowSpec) {
  TempDir d;
  save_safetensors(d.file("w.safetensors"), {{"w", at::tensor({1.0f, -2.0f})}});
  std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string expected = st_bytes(header, std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8));
  EXPECT_EQ(read_bytes(d.file("w.safetensors")), expected);
}

TEST(Safetensors, RoundTripEveryDtypeAndShape) {
  TempDir d;
  std::vector<std::pair<std::string, at::Tensor>> ts;
  for (const auto& [name, type] : kAllDtypes) {
    at::Tensor v = values_for(type);
    ts.emplace_back(name + ".mat", v.reshape({2, 3}));
    ts.emplace_back(name + ".scalar", v[4].clone());  // shape []
    ts.emplace_back(name + ".empty", at::empty({0, 3}, v.options()));
    ts.emplace_back(name + ".odd", v.slice(0, 1, 4));  // 3 elements: misaligns the next one
    ts.emplace_back(name + ".strided", v.reshape({3, 2}).t());  // non-contiguous input
  }
  const std::string path = d.file("all.safetensors");
  save_safetensors(path, ts, {{"format", "pt"}, {"note", "round trip"}});
  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->names().size(), ts.size());
  EXPECT_EQ(f->metadata().at("note"), "round trip");
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& [name, t] = ts[i];
    EXPECT_EQ(f->names()[i], name) << "header keeps the given order";
    at::Tensor r = f->tensor(name);
    EXPECT_TRUE(same_bytes(r, t)) << name;
    EXPECT_EQ(f->info(name).dtype, dtype_to_safetensors(t.scalar_type()));
    // The writer sorts data by element size, so every tensor is aligned: zero-copy views.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data_ptr()) % r.element_size(), 0u) << name;
  }
  auto all = load_safetensors(path);
  EXPECT_EQ(all.size(), ts.size());
  EXPECT_TRUE(same_bytes(all.at("F32.mat"), ts[5].second));
}

TEST(Safetensors, ViewsAreZeroCopyAndOutliveTheFile) {
  TempDir d;
  save_safetensors(d.file("v.safetensors"), {{"x", at::arange(10, at::kFloat)}});
  at::Tensor x1, x2;
  {
    auto f = SafetensorsFile::open(d.file("v.safetensors"));
    x1 = f->tensor("x");
    x2 = f->tensor("x");
  }  // the file object is gone; the views keep the mapping alive
  EXPECT_EQ(x1.data_ptr(), x2.data_ptr()) << "two views of one mapping, not copies";
  EXPECT_EQ(x1.sum().item<float>(), 45.0f);
  x2.reset();
  EXPECT_EQ(x1[9].item<float>(), 9.0f);
}

// Another tool may place an F32 tensor at an odd offset: it must come back as a correct copy.
TEST(Safetensors, UnalignedTensorIsCopied) {
  TempDir d;
  const std::string header =
      R"({"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  ASSERT_NE((8 + header.size() + 1) % 4, 0u) << "f must start misaligned in the file";
  const std::string data("\x07\x00\x00\x80\x3f\x00\x00\x00\xc0", 9);
  write_bytes(d.file("u.safetensors"), st_bytes(header, data));
  auto f = SafetensorsFile::open(d.file("u.safetensors"));
  at::Tensor a = f->tensor("f"), b = f->tensor("f");
  EXPECT_NE(a.data_ptr(), b.data_ptr()) << "copies";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data_ptr()) % 4, 0u);
  EXPECT_EQ(a[0].item<float>(), 1.0f);
  EXPECT_EQ(a[1].item<float>(), -2.0f);
  EXPECT_EQ(f->tensor("u").item<uint8_t>(), 7);
}

TEST(Safetensors, HostileFilesAreRejectedWithFileAndTensor) {
  TempDir d;
  struct Case {
    const char* what;
    std::string bytes;
    const char* expect;  // substring of the message (after "<path>: ")
  };
  auto f32 = [](const std::string& entry_x) {  // header {"x": entry_x}, 8 data bytes
    return st_bytes("{\"x\":" + entry_x + "}", std::string(8, '\0'));
  };
  std::string big_len(8, '\0');
  big_len[3] = 0x10;  // 0x10000000 = 268 MB
  std::string over_len(8, '\0');
  over_len[0] = 100;
  std::vector<Case> cases = {
      {"short file", "abc", "file too short for a safetensors header (3 bytes < 8)"},
      {"header over cap", big_len + "{}", "header length 268435456 exceeds the 100000000-byte limit"},
      {"header over file", over_len + "{}", "header length 100 exceeds the file size 10"},
      {"invalid json", st_bytes("{\"x\":", ""), "invalid header JSON at byte"},
      {"not an object", st_bytes("[1,2]", ""), "header must be a JSON object starting with '{'"},
      {"bad utf8", st_bytes("{\"\xff\":1}", ""), "invalid header JSON"},
      {"trailing garbage", st_bytes("{} x", ""), "invalid header JSON"},
      {"entry not object", f32("[1]"), "tensor 'x': header entry must be an object, got array"},
      {"missing dtype", f32(R"({"shape":[2],"data_offsets":[0,8]})"), "tensor 'x': missing dtype"},
      {"dtype not string", f32(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"),
       "tensor 'x': dtype must be a string, got number"},
      {"unknown dtype", f32(R"({"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]})"),
       "tensor 'x': unsupported dtype 'F8_E4M3'"},
      {"missing shape", f32(R"({"dtype":"F32","data_offsets":[0,8]})"), "tensor 'x': missing shape"},
      {"shape not array", f32(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"),
       "tensor 'x': shape must be an array, got number"},
      {"negative dim", f32(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"),
       "tensor 'x': shape[0] must be a non-negative integer, got -2"},
      {"float dim", f32(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"),
       "tensor 'x': shape[0] must be a non-negative integer, got 2.0"},
      {"dim overflow", f32(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
       "tensor 'x': shape [4294967296,4294967296] overflows the element count"},
      {"dim over int64", f32(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]})"),
       "tensor 'x': shape[0] = 18446744073709551615 is too large"},
      {"bytes overflow", f32(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]})"),
       "tensor 'x': shape [2305843009213693952] overflows the byte size"},
      {"size mismatch", f32(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"),
       "tensor 'x': shape [3] x F32 = 12 bytes, but data_offsets [0, 8] span 8 bytes"},
      {"missing offsets", f32(R"({"dtype":"F32","shape":[2]})"), "tensor 'x': missing data_offsets"},
      {"offsets length", f32(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"),
       "tensor 'x': data_offsets must be an array [begin, end], got [0]"},
      {"offsets negative", f32(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"),
       "tensor 'x': data_offsets must be non-negative integers"},
      {"begin > end", f32(R"({"dtype":"F32","shape":[0],"data_offsets":[8,0]})"),
       "tensor 'x': data_offsets begin 8 > end 0"},
      {"out of bounds", f32(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"),
       "tensor 'x': data_offsets [0, 16] out of bounds of the 8-byte data section"},
      {"gap", f32(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"),
       "tensor 'x': data_offsets [4, 8] leave a gap after byte 0"},
      {"overlap",
       st_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                std::string(8, '\0')),
       "tensor 'y': data_offsets [4, 8] overlap the previous tensor"},
      {"trailing data", st_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                 std::string(8, '\0')),
       "tensors cover 4 bytes but the data section has 8 bytes"},
      {"duplicate name",
       st_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                std::string(8, '\0')),
       "tensor 'x': duplicate name in header"},
      {"duplicate field", f32(R"({"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]})"),
       "tensor 'x': duplicate key 'dtype' in header"},
      {"metadata not str", st_bytes(R"({"__metadata__":{"a":1}})", ""),
       "__metadata__['a'] must be a string, got number"},
      {"metadata not object", st_bytes(R"({"__metadata__":"pt"})", ""),
       "__metadata__ must be an object of strings, got string"},
  };
  for (const auto& c : cases) {
    const std::string path = d.file("hostile.safetensors");
    write_bytes(path, c.bytes);
    std::string msg = error_of([&] { SafetensorsFile::open(path); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << c.what << ": " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": " << msg;
  }
  // Control characters in hostile names are escaped, so a message stays one line.
  EXPECT_EQ(error_of([&] {
              write_bytes(d.file("n.safetensors"), st_bytes("{\"a\\nb\":1}", ""));
              SafetensorsFile::open(d.file("n.safetensors"));
            }).find('\n'),
            std::string::npos);
  // A BOOL byte other than 0/1 is rejected when the tensor is read.
  write_bytes(d.file("b.safetensors"),
              st_bytes(R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", "\x01\x02"));
  auto f = SafetensorsFile::open(d.file("b.safetensors"));
  EXPECT_NE(error_of([&] { f->tensor("m"); }).find("tensor 'm': BOOL byte 1 has value 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { SafetensorsFile::open(d.file("absent.safetensors")); })
                .find("absent.safetensors: cannot open (No such file or directory)"),
            std::string::npos);
}

TEST(Safetensors, AtomicReplace) {
  TempDir d;
  const std::string path = d.file("m.safetensors");
  save_safetensors(path, {{"a", at::ones({3})}});
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  const std::string old_bytes = read_bytes(path);

  // Failure before writing (dtype not storable): old file intact, no temp file.
  EXPECT_THROW(save_safetensors(path, {{"a", at::ones({3}, at::kComplexFloat)}}), medr1::Error);
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(count_temp_files(d.path), 0);

  // Failure after all bytes were written (the final rename onto a non-empty folder fails):
  // the temp file is removed.
  fs::create_directories(d.path / "dir.safetensors" / "x");
  std::string msg = error_of([&] { save_safetensors(d.file("dir.safetensors"), {{"a", at::ones({3})}}); });
  EXPECT_NE(msg.find("rename from"), std::string::npos) << msg;
  EXPECT_EQ(count_temp_files(d.path), 0);

  // Success replaces the file (a new inode, renamed over the old one).
  save_safetensors(path, {{"b", at::zeros({2})}});
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->names(), std::vector<std::string>{"b"});
  EXPECT_EQ(count_temp_files(d.path), 0);

  // Writer input errors.
  EXPECT_THROW(save_safetensors(path, {{"a", at::ones({1})}, {"a", at::ones({1})}}), medr1::Error);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", at::ones({1})}}), medr1::Error);
  EXPECT_THROW(save_safetensors(path, {{"\xff", at::ones({1})}}), medr1::Error);  // not UTF-8
  EXPECT_THROW(save_safetensors(d.file("no/such/dir/x.safetensors"), {{"a", at::ones({1})}}),
               medr1::Error);
  EXPECT_EQ(open_safetensors(path).size(), 1u);
  EXPECT_EQ(count_temp_files(d.path), 0);
}

TEST(Safetensors, ShardedFolderRoundTrip) {
  TempDir d;
  std::vector<std::pair<std::string, at::Tensor>> ts;
  for (int i = 0; i < 10; ++i)  // 64 bytes each
    ts.emplace_back("model.layers." + std::to_string(i) + ".w",
                    at::arange(16, at::kFloat).reshape({4, 4}) + i);
  ts.emplace_back("lm_head.weight", at::ones({2, 3}, at::kBFloat16));  // 12 bytes
  const std::string dir = d.file("ckpt");
  save_safetensors_sharded(dir, ts, /*max_shard_bytes=*/200);  // 3 x 64 per shard -> 4 shards

  for (int i = 1; i <= 4; ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05d-of-00004.safetensors", i);
    EXPECT_TRUE(fs::exists(fs::path(dir) / buf)) << buf;
  }
  EXPECT_FALSE(fs::exists(fs::path(dir) / "model.safetensors"));
  json index = json::parse(read_bytes(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 10u * 64 + 12);
  EXPECT_EQ(index["weight_map"].size(), 11u);
  EXPECT_EQ(index["weight_map"]["model.layers.0.w"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["model.layers.2.w"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["model.layers.3.w"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["model.layers.9.w"], "model-00004-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["lm_head.weight"], "model-00004-of-00004.safetensors");

  auto loaded = load_safetensors(dir);
  ASSERT_EQ(loaded.size(), ts.size());
  for (const auto& [name, t] : ts) EXPECT_TRUE(same_bytes(loaded.at(name), t)) << name;
  EXPECT_EQ(open_safetensors(dir).size(), 4u);

  // Re-save into the same folder as one file: stale shards and index are removed, other files
  // (side files, look-alike names) are kept.
  write_bytes(dir + "/tokenizer.json", "{}");
  write_bytes(dir + "/model-1-of-2.safetensors", "not ours");
  save_safetensors_sharded(dir, ts);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"model-1-of-2.safetensors", "model.safetensors",
                                             "tokenizer.json"}));
  EXPECT_EQ(load_safetensors(dir).size(), ts.size());
}

// huggingface_hub: a tensor larger than the limit gets its own shard, appended immediately.
TEST(Safetensors, OversizedTensorGetsItsOwnShard) {
  TempDir d;
  std::vector<std::pair<std::string, at::Tensor>> ts = {
      {"a", at::zeros({10})}, {"big", at::zeros({100})}, {"c", at::zeros({10})}};
  save_safetensors_sharded(d.file("c"), ts, 100);
  json index = json::parse(read_bytes(d.file("c") + "/model.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"]["big"], "model-00001-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["a"], "model-00002-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["c"], "model-00002-of-00002.safetensors");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 480u);
}

TEST(Safetensors, HostileIndexIsRejected) {
  TempDir d;
  const std::string dir = d.file("ckpt");
  save_safetensors_sharded(dir, {{"a", at::zeros({16})}, {"b", at::zeros({16})}}, 64);
  const std::string index_path = dir + "/model.safetensors.index.json";
  auto with_map = [&](const std::string& wm) {
    write_bytes(index_path, R"({"metadata":{"total_size":128},"weight_map":)" + wm + "}");
    return error_of([&] { load_safetensors(dir); });
  };
  EXPECT_NE(with_map(R"({"a":"../x.safetensors"})").find("is not a file name in the checkpoint folder"),
            std::string::npos);
  EXPECT_NE(with_map(R"({"a":"model-00002-of-00002.safetensors"})")
                .find("weight_map says tensor 'a' is in model-00002-of-00002.safetensors but that "
                      "file has no such tensor"),
            std::string::npos);
  EXPECT_NE(with_map(R"({"a":3})").find("weight_map['a'] must be a string, got number"),
            std::string::npos);
  EXPECT_NE(with_map(R"({"a":"missing.safetensors"})").find("missing.safetensors: cannot open"),
            std::string::npos);
  // The same tensor in two shards.
  save_safetensors(dir + "/model-00002-of-00002.safetensors",
                   {{"a", at::zeros({16})}, {"b", at::zeros({16})}});
  std::string msg = with_map(
      R"({"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"})");
  EXPECT_NE(msg.find("tensor 'a' appears in two shards"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { load_safetensors(d.file("empty_dir_absent")); }).find("cannot open"),
            std::string::npos);
  fs::create_directories(d.path / "empty");
  EXPECT_NE(error_of([&] { load_safetensors(d.file("empty")); })
                .find("no model.safetensors or model.safetensors.index.json"),
            std::string::npos);
}

// Deterministic fuzzing of the safetensors reader: 5000 mutated files (bit flips, truncations,
// header-length edits, JSON character edits, structured field edits, insertions/deletions).
// Every file must either load completely (all tensors materialised and summed) or throw
// medr1::Error; any other exception fails the test, and a crash kills it.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <random>

#include "io_test_util.h"
#include "medr1/io/safetensors.h"

using namespace medr1::io;
using namespace medr1::io::test;
using ojson = nlohmann::ordered_json;

namespace {

// A valid base file with a mix of dtypes, an odd-sized U8, a scalar, an empty tensor and a BOOL.
ojson base_header() {
  return ojson::parse(R"({
    "__metadata__": {"format": "pt"},
    "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    "i": {"dtype": "I64", "shape": [], "data_offsets": [24, 32]},
    "h": {"dtype": "BF16", "shape": [3], "data_offsets": [32, 38]},
    "u": {"dtype": "U8", "shape": [5], "data_offsets": [38, 43]},
    "m": {"dtype": "BOOL", "shape": [2], "data_offsets": [43, 45]},
    "e": {"dtype": "F16", "shape": [0, 4], "data_offsets": [45, 45]},
    "d": {"dtype": "F64", "shape": [1], "data_offsets": [45, 53]}
  })");
}

std::string base_data() {
  std::string data(53, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 37 + 11) & 0x7f);
  data[43] = 1;  // BOOL bytes valid
  data[44] = 0;
  return data;
}

std::string serialise(const ojson& h, const std::string& data) {
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return st_bytes(text, data);
}

// Interesting integers for shapes and offsets, as JSON values (incl. wrong types).
ojson interesting(std::mt19937_64& rng) {
  static const std::vector<ojson> vals = {
      0, 1, 2, 3, 5, 8, 24, 45, 53, 54, -1, -8, 4294967296ull, 9223372036854775807ll,
      9223372036854775808ull, 18446744073709551615ull, 1.5, 2.0, "3", nullptr, true,
      ojson::array(), ojson::object()};
  return vals[rng() % vals.size()];
}

void mutate_structured(ojson& h, std::mt19937_64& rng) {
  std::vector<std::string> names;
  for (auto it = h.begin(); it != h.end(); ++it) names.push_back(it.key());
  const std::string name = names[rng() % names.size()];
  ojson& e = h[name];
  static const std::vector<ojson> dtypes = {"F32", "F64", "F16", "BF16", "I64", "I32", "I16", "I8",
                                            "U8",  "BOOL", "X", "f32", "F8_E4M3", "", 3, nullptr};
  switch (rng() % 10) {
    case 0:
      if (e.is_object()) e["dtype"] = dtypes[rng() % dtypes.size()];
      break;
    case 1:
      if (e.is_object() && e.contains("shape") && e["shape"].is_array() && !e["shape"].empty())
        e["shape"][rng() % e["shape"].size()] = interesting(rng);
      break;
    case 2:
      if (e.is_object() && e.contains("shape") && e["shape"].is_array()) {
        if (rng() % 2 && !e["shape"].empty()) e["shape"].erase(e["shape"].size() - 1);
        else e["shape"].push_back(interesting(rng));
      }
      break;
    case 3:
      if (e.is_object() && e.contains("data_offsets") && e["data_offsets"].is_array() &&
          e["data_offsets"].size() == 2)
        e["data_offsets"][rng() % 2] = interesting(rng);
      break;
    case 4:
      if (e.is_object()) {
        static const char* keys[] = {"dtype", "shape", "data_offsets"};
        e.erase(keys[rng() % 3]);
      }
      break;
    case 5: e = interesting(rng); break;
    case 6: h["__metadata__"] = ojson{{"format", interesting(rng)}}; break;
    case 7:
      if (e.is_object()) e["data_offsets"] = ojson::array({interesting(rng), interesting(rng)});
      break;
    case 8: h.erase(name); break;
    default:
      if (e.is_object()) e["extra"] = interesting(rng);  // unknown keys are allowed
      break;
  }
}

}  // namespace

TEST(SafetensorsFuzz, MutatedFilesLoadOrThrowMedr1Error) {
  TempDir d;
  const std::string path = d.file("fuzz.safetensors");
  const ojson header = base_header();
  const std::string data = base_data();
  const std::string base = serialise(header, data);
  {  // the base itself is valid
    write_bytes(path, base);
    ASSERT_EQ(load_safetensors(path).size(), 7u);
  }

  std::mt19937_64 rng(20261128);
  const char kJsonChars[] = "{}[]\":,0123456789-+eE. tnfu\\\x00\xff\x80";
  int accepted = 0, rejected = 0;
  const int kIters = 5000;
  for (int it = 0; it < kIters; ++it) {
    std::string bytes = base;
    const uint64_t n = base.size() - 8 - data.size();  // header length of the base file
    const int kind = it % 7;
    switch (kind) {
      case 0: {  // bit flips anywhere
        int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] ^= static_cast<char>(1 << (rng() % 8));
        break;
      }
      case 1:  // truncation
        bytes.resize(rng() % bytes.size());
        break;
      case 2: {  // header length field
        static const uint64_t lens[] = {0, 1, 2, 7, 8, 100000001ull, 1ull << 63, ~0ull};
        uint64_t v;
        switch (rng() % 4) {
          case 0: v = lens[rng() % 8]; break;
          case 1: v = n + (rng() % 17) - 8; break;
          case 2: v = bytes.size() - 8 + (rng() % 5) - 2; break;
          default: v = rng(); break;
        }
        for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((v >> (8 * i)) & 0xff);
        break;
      }
      case 3: {  // JSON character edits inside the header, length kept
        int edits = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < edits; ++k)
          bytes[8 + rng() % n] = kJsonChars[rng() % (sizeof(kJsonChars) - 1)];
        break;
      }
      case 4:
      case 5: {  // structured edits, re-serialised with a consistent length
        ojson h = header;
        int edits = 1 + static_cast<int>(rng() % 2);
        for (int k = 0; k < edits && !h.empty(); ++k) mutate_structured(h, rng);
        std::string dd = data;
        if (rng() % 4 == 0) dd.resize(rng() % (dd.size() + 8), '\x01');
        bytes = serialise(h, dd);
        break;
      }
      default: {  // insert or delete header bytes, fixing the length field half of the time
        std::string text = bytes.substr(8, n);
        size_t pos = rng() % text.size();
        if (rng() % 2) text.insert(pos, 1, kJsonChars[rng() % (sizeof(kJsonChars) - 1)]);
        else text.erase(pos, 1 + rng() % 4);
        std::string rest = bytes.substr(8 + n);
        bytes = rng() % 2 ? st_bytes(text, rest) : bytes.substr(0, 8) + text + rest;
        break;
      }
    }
    write_bytes(path, bytes);
    try {
      auto tensors = load_safetensors(path);
      // Touch every byte: materialise and reduce.
      for (const auto& [name, t] : tensors) (void)t.to(at::kDouble).sum().item<double>();
      ++accepted;
    } catch (const medr1::Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << it << " kind " << kind << ": non-medr1 exception: " << e.what();
    }
  }
  EXPECT_EQ(accepted + rejected, kIters);
  EXPECT_GT(rejected, kIters / 2);  // most mutations must be caught
  EXPECT_GT(accepted, 0);           // some are harmless (e.g. flips inside the data)
  RecordProperty("accepted", accepted);
  RecordProperty("rejected", rejected);
  std::printf("[fuzz] %d files: %d loaded, %d rejected with medr1::Error\n", kIters, accepted,
              rejected);
}

// Test helpers for test_vision: a minimal safetensors reader for the vendored goldens (kept local so the
// vision tests do not depend on the io part) and comparison helpers that print max-abs and first mismatches.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace medr1::vision::test {

inline std::string data_dir() { return MEDR1_TEST_DATA; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return nlohmann::json::parse(f);
}

// All tensors of one safetensors file, copied into owned CPU tensors.
inline std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const auto j = nlohmann::json::parse(header);
  const std::streamoff base = 8 + static_cast<std::streamoff>(n);
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, info] : j.items()) {
    if (name == "__metadata__") continue;
    const std::string dt = info["dtype"];
    at::ScalarType st = dt == "F32" ? at::kFloat : dt == "F64" ? at::kDouble : dt == "I64" ? at::kLong
                        : dt == "U8" ? at::kByte : dt == "I32" ? at::kInt : at::kFloat;
    EXPECT_TRUE(dt == "F32" || dt == "F64" || dt == "I64" || dt == "U8" || dt == "I32") << name << " " << dt;
    std::vector<int64_t> shape = info["shape"].get<std::vector<int64_t>>();
    const uint64_t b = info["data_offsets"][0], e = info["data_offsets"][1];
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
    EXPECT_EQ(static_cast<uint64_t>(t.nbytes()), e - b) << name;
    f.seekg(base + static_cast<std::streamoff>(b));
    f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e - b));
    out[name] = t;
  }
  return out;
}

// max |a - b| over all elements (as double).
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0) return 0.0;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// Describes the first few mismatching positions of two same-shape tensors.
inline std::string first_mismatches(const at::Tensor& a, const at::Tensor& b, double tol, int max_count = 5) {
  at::Tensor d = (a.to(at::kDouble) - b.to(at::kDouble)).abs().flatten();
  at::Tensor idx = (d > tol).nonzero().flatten();
  std::ostringstream os;
  os << idx.numel() << " mismatches";
  at::Tensor af = a.to(at::kDouble).flatten(), bf = b.to(at::kDouble).flatten();
  for (int64_t i = 0; i < std::min<int64_t>(idx.numel(), max_count); ++i) {
    const int64_t k = idx[i].item<int64_t>();
    os << "; flat[" << k << "] ours " << af[k].item<double>() << " ref " << bf[k].item<double>();
  }
  return os.str();
}

}  // namespace medr1::vision::test

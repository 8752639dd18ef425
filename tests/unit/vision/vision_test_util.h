// Test helpers for test_vision: the vendored goldens' JSON and comparison helpers that print max-abs and first
// mismatches (the goldens' tensors are read with io::load_safetensors).
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
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

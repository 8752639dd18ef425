// libFuzzer target: what medr1-train reads back when it resumes a checkpoint: trainer_state.json
// (rl::parse_trainer_state, then the RNG restore of its mt_state) or optimizer.safetensors
// (io::load_safetensors + rl::load_optimizer_state into an AdamW over two parameters, the torch RNG
// state restored, then one optimizer step on the loaded moments). The first byte picks which.
#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_util.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/rl/train_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    std::mt19937_64 mt(7);
    if (data[0] & 1) {
      const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
      const auto st = medr1::rl::parse_trainer_state(medr1::io::parse_json(text, "trainer_state.json"),
                                                     "trainer_state.json");
      medr1::rl::restore_rng(st, mt);
      (void)mt();
    } else {
      const std::string path = medr1::fuzz::write_scratch(data + 1, size - 1, "optimizer.safetensors");
      std::vector<std::pair<std::string, at::Tensor>> params = {
          {"model.a.weight", at::zeros({2, 3}).requires_grad_(true)},
          {"model.b.bias", at::zeros({4}).requires_grad_(true)}};
      std::vector<at::Tensor> list;
      for (auto& [n, p] : params) list.push_back(p);
      torch::optim::AdamW opt(list, torch::optim::AdamWOptions(1e-3));
      medr1::rl::TrainerState st;
      medr1::rl::load_optimizer_state(medr1::io::load_safetensors(path), path, st, opt, params);
      medr1::rl::restore_rng(st, mt);
      for (auto& [n, p] : params) p.mutable_grad() = at::ones_like(p);
      opt.step();
    }
  } catch (const std::exception&) {
  }
  return 0;
}

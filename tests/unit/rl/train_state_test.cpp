// Resume readers of a trainer checkpoint: trainer_state.json (parse_trainer_state) and
// optimizer.safetensors (load_optimizer_state). Every bad field is refused naming the file and the
// field, before anything reaches the session (a world_size of 0 used to reach an integer division in
// the sampler rescale; an exp_avg_sq of the wrong shape reached AdamW unchecked).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "medr1/core/error.h"
#include "medr1/rl/train_state.h"

namespace medr1::rl {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "(no error)";
}

nlohmann::json good_state() {
  return {{"global_step", 3},
          {"sampler", {{"epoch", 1}, {"position", 2}}},
          {"world_size", 2},
          {"log_history", nlohmann::json::array({{{"step", 1}, {"loss", 0.5}}})}};
}

TEST(TrainStateParse, ReadsEveryField) {
  TrainerState st = parse_trainer_state(good_state(), "ck/trainer_state.json");
  EXPECT_EQ(st.global_step, 3);
  EXPECT_EQ(st.sampler.epoch, 1);
  EXPECT_EQ(st.sampler.position, 2);
  EXPECT_EQ(st.world_size, 2);
  ASSERT_EQ(st.log_history.size(), 1u);
  EXPECT_EQ(st.log_history[0]["loss"], 0.5);
  nlohmann::json old = good_state();
  old.erase("world_size");  // single-process checkpoints of older runs
  EXPECT_EQ(parse_trainer_state(old, "x").world_size, 1);
  // mt_state round trip through restore_rng
  std::mt19937_64 a(5), b(9);
  TrainerState with_mt = parse_trainer_state(good_state(), "x");
  capture_rng(with_mt, a);
  with_mt.torch_rng_state = at::Tensor();
  restore_rng(with_mt, b);
  EXPECT_EQ(a(), b());
}

TEST(TrainStateParse, BadFieldsAreRefusedNamingFileAndField) {
  const std::string path = "ck/trainer_state.json";
  auto refused = [&](const std::function<void(nlohmann::json&)>& mutate) {
    nlohmann::json j = good_state();
    mutate(j);
    return error_of([&] { parse_trainer_state(j, path); });
  };
  auto has = [](const std::string& e, const std::string& what) {
    return e.find(what) != std::string::npos;
  };
  std::string e = refused([](nlohmann::json& j) { j["world_size"] = 0; });
  EXPECT_TRUE(has(e, path) && has(e, "world_size: 0 is not in [1, ")) << e;
  e = refused([](nlohmann::json& j) { j["global_step"] = -1; });
  EXPECT_TRUE(has(e, "global_step: -1 is not in [0, ")) << e;
  e = refused([](nlohmann::json& j) { j["global_step"] = 2.5; });
  EXPECT_TRUE(has(e, "global_step: expected an integer, got 2.5")) << e;
  e = refused([](nlohmann::json& j) { j["sampler"]["position"] = 18446744073709551615ull; });
  EXPECT_TRUE(has(e, "sampler.position: 18446744073709551615 is not in")) << e;
  e = refused([](nlohmann::json& j) { j["sampler"].erase("epoch"); });
  EXPECT_TRUE(has(e, "sampler.epoch: missing")) << e;
  e = refused([](nlohmann::json& j) { j["sampler"] = 4; });
  EXPECT_TRUE(has(e, "sampler: expected an object")) << e;
  e = refused([](nlohmann::json& j) { j["log_history"] = nlohmann::json::array({1}); });
  EXPECT_TRUE(has(e, "log_history[0]: expected an object")) << e;
  e = refused([](nlohmann::json& j) { j.erase("log_history"); });
  EXPECT_TRUE(has(e, "log_history: expected an array")) << e;
  e = refused([](nlohmann::json& j) { j["mt_state"] = 12; });
  EXPECT_TRUE(has(e, "mt_state: expected a string")) << e;
  EXPECT_TRUE(has(error_of([&] { parse_trainer_state(nlohmann::json::array(), path); }), "expected a JSON object"));
  // an mt_state that is not a generator state is refused when restored
  TrainerState bad_mt = parse_trainer_state(good_state(), path);
  bad_mt.mt_state = "1 2 three";
  std::mt19937_64 mt;
  EXPECT_TRUE(has(error_of([&] { restore_rng(bad_mt, mt); }), "mt_state")) << "restore_rng";
}

struct Params {
  std::vector<std::pair<std::string, at::Tensor>> named = {{"w", at::zeros({2, 3}).requires_grad_(true)},
                                                           {"b", at::zeros({4}).requires_grad_(true)}};
  torch::optim::AdamW opt{std::vector<at::Tensor>{named[0].second, named[1].second},
                          torch::optim::AdamWOptions(1e-3)};
};

std::map<std::string, at::Tensor> good_moments() {
  return {{"w.exp_avg", at::full({2, 3}, 0.1)},
          {"w.exp_avg_sq", at::full({2, 3}, 0.01)},
          {"w.step", at::scalar_tensor(3, at::kLong)},
          {"torch_rng_state", at::zeros({5056}, at::kByte)}};
}

TEST(TrainStateOptimizer, LoadsMomentsAndRefusesBadOnes) {
  {
    Params p;
    TrainerState st;
    load_optimizer_state(good_moments(), "ck/optimizer.safetensors", st, p.opt, p.named);
    EXPECT_EQ(p.opt.state().size(), 1u);  // b never stepped: no state
    EXPECT_EQ(st.torch_rng_state.numel(), 5056);
  }
  auto refused = [](const std::function<void(std::map<std::string, at::Tensor>&)>& mutate) {
    Params p;
    TrainerState st;
    auto t = good_moments();
    mutate(t);
    return error_of([&] { load_optimizer_state(t, "ck/optimizer.safetensors", st, p.opt, p.named); });
  };
  auto has = [](const std::string& e, const std::string& what) {
    return e.find("ck/optimizer.safetensors") != std::string::npos && e.find(what) != std::string::npos;
  };
  std::string e = refused([](auto& t) { t["w.exp_avg_sq"] = at::zeros({3, 2}); });
  EXPECT_TRUE(has(e, "w.exp_avg_sq: shape [3, 2] != parameter [2, 3]")) << e;
  e = refused([](auto& t) { t["w.exp_avg"] = at::zeros({2, 3}, at::kLong); });
  EXPECT_TRUE(has(e, "w.exp_avg: expected a floating-point tensor")) << e;
  e = refused([](auto& t) { t["w.step"] = at::zeros({2}); });
  EXPECT_TRUE(has(e, "w.step: expected one value")) << e;
  e = refused([](auto& t) { t["w.step"] = at::scalar_tensor(-2.0); });
  EXPECT_TRUE(has(e, "w.step: expected a step count, got -2")) << e;
  e = refused([](auto& t) { t["w.step"] = at::scalar_tensor(std::nan("")); });
  EXPECT_TRUE(has(e, "w.step: expected a step count")) << e;
  e = refused([](auto& t) { t.erase("w.exp_avg_sq"); });
  EXPECT_TRUE(has(e, "w: incomplete AdamW state")) << e;
  e = refused([](auto& t) { t["torch_rng_state"] = at::zeros({4}, at::kFloat); });
  EXPECT_TRUE(has(e, "torch_rng_state: expected a 1-D uint8 tensor")) << e;
  // a uint8 tensor of the wrong size is refused when restored, naming the field
  TrainerState st;
  st.torch_rng_state = at::zeros({16}, at::kByte);
  std::mt19937_64 mt;
  const std::string r = error_of([&] { restore_rng(st, mt); });
  EXPECT_NE(r.find("torch_rng_state: not a CPU generator state"), std::string::npos) << r;
}

}  // namespace
}  // namespace medr1::rl

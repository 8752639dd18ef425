// Trainer checkpoint folders: HF model part + exact-resume state, committed atomically (train_state.h).
#include "medr1/rl/train_state.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/core/torch_compat.h"
#include "medr1/io/checkpoint.h"
#include "medr1/io/safetensors.h"

namespace medr1::rl {

namespace fs = std::filesystem;

void capture_rng(TrainerState& st, const std::mt19937_64& mt) {
  std::ostringstream os;
  os << mt;
  st.mt_state = os.str();
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  st.torch_rng_state = gen.get_state();
}

void restore_rng(const TrainerState& st, std::mt19937_64& mt) {
  if (!st.mt_state.empty()) {
    std::istringstream is(st.mt_state);
    is >> mt;
    MEDR1_CHECK(!is.fail(), "trainer_state.json: mt_state: not a std::mt19937_64 state");
  }
  if (st.torch_rng_state.defined()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(st.torch_rng_state);
  }
}

namespace {

nlohmann::json state_json(const TrainerState& st) {
  nlohmann::json j;
  j["global_step"] = st.global_step;
  j["sampler"] = {{"epoch", st.sampler.epoch}, {"position", st.sampler.position}};
  j["world_size"] = st.world_size;
  j["mt_state"] = st.mt_state;
  j["log_history"] = st.log_history;
  return j;
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, const TrainerState& st,
                            const std::vector<std::pair<std::string, at::Tensor>>& weights,
                            const nlohmann::json& model_config, const std::string& side_files_dir,
                            const torch::optim::AdamW* opt,
                            const std::vector<std::pair<std::string, at::Tensor>>& opt_params,
                            const nlohmann::json& run_config) {
  const std::string name = "checkpoint-" + std::to_string(st.global_step);
  const fs::path final_dir = fs::path(output_dir) / name;
  const fs::path tmp = fs::path(output_dir) / (".tmp-" + name);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  io::write_json_atomic((tmp / "config.json").string(), model_config);
  io::save_safetensors_sharded(tmp.string(), weights);
  io::copy_hf_side_files(side_files_dir, tmp.string());
  if (const char* k = std::getenv(kKillDuringSaveEnv); k && std::to_string(st.global_step) == k) {
    std::raise(SIGKILL);  // test hook: die with a half-written checkpoint
  }
  if (opt != nullptr) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [pname, p] : opt_params) {
      auto it = opt->state().find(compat::optimizer_state_key(opt->state(), p));
      if (it == opt->state().end()) continue;
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      tensors.emplace_back(pname + ".exp_avg", s.exp_avg());
      tensors.emplace_back(pname + ".exp_avg_sq", s.exp_avg_sq());
      tensors.emplace_back(pname + ".step", at::full({1}, s.step(), at::kLong));
    }
    if (st.torch_rng_state.defined()) tensors.emplace_back("torch_rng_state", st.torch_rng_state);
    io::save_safetensors((tmp / "optimizer.safetensors").string(), tensors);
    io::write_json_atomic((tmp / "trainer_state.json").string(), state_json(st));
    io::write_json_atomic((tmp / "training_args.json").string(), run_config);
  }
  io::commit_dir_atomic(tmp.string(), final_dir.string());
  return final_dir.string();
}

void load_trainer_state(const std::string& dir, TrainerState& st, torch::optim::AdamW& opt,
                        const std::vector<std::pair<std::string, at::Tensor>>& opt_params) {
  const fs::path sp = fs::path(dir) / "trainer_state.json";
  const fs::path op = fs::path(dir) / "optimizer.safetensors";
  MEDR1_CHECK(fs::exists(sp) && fs::exists(op), dir,
              ": not a resumable checkpoint (trainer_state.json / optimizer.safetensors missing; "
              "saved with save_only_model?)");
  std::ifstream f(sp);
  nlohmann::json j = nlohmann::json::parse(f);
  st.global_step = j.at("global_step").get<int64_t>();
  st.sampler.epoch = j.at("sampler").at("epoch").get<int64_t>();
  st.sampler.position = j.at("sampler").at("position").get<int64_t>();
  st.world_size = j.value("world_size", int64_t{1});  // absent in single-process checkpoints of older runs
  st.mt_state = j.value("mt_state", std::string{});
  st.log_history.clear();
  for (const auto& r : j.at("log_history")) st.log_history.push_back(r);
  std::map<std::string, at::Tensor> t = io::load_safetensors(op.string());
  if (auto it = t.find("torch_rng_state"); it != t.end()) st.torch_rng_state = it->second.clone();
  for (const auto& [pname, p] : opt_params) {
    auto a = t.find(pname + ".exp_avg");
    if (a == t.end()) continue;  // never stepped (no grad so far)
    auto b = t.find(pname + ".exp_avg_sq");
    auto c = t.find(pname + ".step");
    MEDR1_CHECK(b != t.end() && c != t.end(), op.string(), ": ", pname, ": incomplete AdamW state");
    MEDR1_CHECK(a->second.sizes() == p.sizes(), op.string(), ": ", pname, ".exp_avg: shape ", a->second.sizes(),
                " != parameter ", p.sizes());
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(c->second.item<int64_t>());
    s->exp_avg(a->second.to(p.device(), p.scalar_type()).clone());
    s->exp_avg_sq(b->second.to(p.device(), p.scalar_type()).clone());
    opt.state()[compat::optimizer_state_key(opt.state(), p)] = std::move(s);
  }
}

std::optional<std::string> resolve_resume_dir(const std::string& resume, const std::string& output_dir) {
  if (resume.empty()) return std::nullopt;
  if (resume != "latest") {
    io::recover_dir_atomic(resume);
    MEDR1_CHECK(fs::is_directory(resume), "resume: '", resume, "' is not a folder");
    return resume;
  }
  int64_t best = -1;
  std::string best_dir;
  if (!fs::is_directory(output_dir)) return std::nullopt;
  for (const auto& e : fs::directory_iterator(output_dir)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("checkpoint-", 0) != 0) continue;
    const std::string num = n.substr(11);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
    const int64_t s = std::stoll(num);
    if (s > best && fs::exists(e.path() / "trainer_state.json")) {
      best = s;
      best_dir = e.path().string();
    }
  }
  if (best < 0) return std::nullopt;
  return best_dir;
}

}  // namespace medr1::rl

// Trainer checkpoint folders: HF model part + exact-resume state, committed atomically (train_state.h).
#include "medr1/rl/train_state.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/core/torch_compat.h"
#include "medr1/io/checkpoint.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/io/peft_adapter.h"

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
    try {
      gen.set_state(st.torch_rng_state);
    } catch (const c10::Error& e) {
      fail("optimizer.safetensors: torch_rng_state: not a CPU generator state (", e.what_without_backtrace(), ")");
    }
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
                            const nlohmann::json& run_config,
                            const std::vector<std::pair<std::string, at::Tensor>>* ref_weights,
                            const nlohmann::json* adapter_config) {
  const std::string name = "checkpoint-" + std::to_string(st.global_step);
  const fs::path final_dir = fs::path(output_dir) / name;
  const fs::path tmp = fs::path(output_dir) / (".tmp-" + name);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  if (adapter_config != nullptr) {
    io::write_peft_adapter(tmp.string(), weights, *adapter_config);
  } else {
    io::write_json_atomic((tmp / "config.json").string(), model_config);
    io::save_safetensors_sharded(tmp.string(), weights);
  }
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
    if (ref_weights != nullptr) {  // sync_ref_model: the drifted reference, an HF folder of its own
      const fs::path ref_dir = tmp / "ref_model";
      fs::create_directories(ref_dir);
      io::save_safetensors_sharded(ref_dir.string(), *ref_weights);
      io::write_json_atomic((ref_dir / "config.json").string(), model_config);
    }
  }
  io::commit_dir_atomic(tmp.string(), final_dir.string());
  return final_dir.string();
}

TrainerState parse_trainer_state(const nlohmann::json& j, const std::string& path) {
  MEDR1_CHECK(j.is_object(), path, ": expected a JSON object, got ", j.type_name());
  // An integer field in [lo, hi]; anything else names the file and the field.
  auto int_at = [&](const nlohmann::json& obj, const char* key, const std::string& field, int64_t lo,
                    int64_t hi) {
    MEDR1_CHECK(obj.contains(key), path, ": ", field, ": missing");
    const nlohmann::json& v = obj.at(key);
    MEDR1_CHECK(v.is_number_integer(), path, ": ", field, ": expected an integer, got ", v.dump());
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi)
                                             : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    MEDR1_CHECK(fits, path, ": ", field, ": ", v.dump(), " is not in [", lo, ", ", hi, "]");
    return v.get<int64_t>();
  };
  constexpr int64_t kMaxCount = int64_t{1} << 40;  // steps, epochs, prompts: far beyond any run
  TrainerState st;
  st.global_step = int_at(j, "global_step", "global_step", 0, kMaxCount);
  MEDR1_CHECK(j.contains("sampler") && j.at("sampler").is_object(), path,
              ": sampler: expected an object {epoch, position}");
  st.sampler.epoch = int_at(j.at("sampler"), "epoch", "sampler.epoch", 0, kMaxCount);
  st.sampler.position = int_at(j.at("sampler"), "position", "sampler.position", 0, kMaxCount);
  // absent in single-process checkpoints of older runs
  st.world_size = j.contains("world_size") ? int_at(j, "world_size", "world_size", 1, int64_t{1} << 20) : 1;
  if (j.contains("mt_state")) {
    MEDR1_CHECK(j.at("mt_state").is_string(), path, ": mt_state: expected a string");
    st.mt_state = j.at("mt_state").get<std::string>();
  }
  MEDR1_CHECK(j.contains("log_history") && j.at("log_history").is_array(), path,
              ": log_history: expected an array of metric records");
  for (const auto& r : j.at("log_history")) {
    MEDR1_CHECK(r.is_object(), path, ": log_history[", st.log_history.size(), "]: expected an object, got ",
                r.type_name());
    st.log_history.push_back(r);
  }
  return st;
}

void load_optimizer_state(const std::map<std::string, at::Tensor>& t, const std::string& path, TrainerState& st,
                          torch::optim::AdamW& opt,
                          const std::vector<std::pair<std::string, at::Tensor>>& opt_params) {
  if (auto it = t.find("torch_rng_state"); it != t.end()) {
    MEDR1_CHECK(it->second.scalar_type() == at::kByte && it->second.dim() == 1, path,
                ": torch_rng_state: expected a 1-D uint8 tensor, got ", it->second.scalar_type(), " ",
                it->second.sizes());
    st.torch_rng_state = it->second.clone();
  }
  for (const auto& [pname, p] : opt_params) {
    auto a = t.find(pname + ".exp_avg");
    if (a == t.end()) continue;  // never stepped (no grad so far)
    auto b = t.find(pname + ".exp_avg_sq");
    auto c = t.find(pname + ".step");
    MEDR1_CHECK(b != t.end() && c != t.end(), path, ": ", pname, ": incomplete AdamW state");
    for (auto m : {a, b}) {
      MEDR1_CHECK(m->second.sizes() == p.sizes(), path, ": ", m->first, ": shape ", m->second.sizes(),
                  " != parameter ", p.sizes());
      MEDR1_CHECK(at::isFloatingType(m->second.scalar_type()), path, ": ", m->first,
                  ": expected a floating-point tensor, got ", m->second.scalar_type());
    }
    MEDR1_CHECK(c->second.numel() == 1, path, ": ", c->first, ": expected one value, got shape ",
                c->second.sizes());
    const double step = c->second.to(at::kDouble).item<double>();
    MEDR1_CHECK(std::isfinite(step) && step >= 0 && step <= 1e12 && step == std::floor(step), path, ": ",
                c->first, ": expected a step count, got ", step);
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(static_cast<int64_t>(step));
    s->exp_avg(a->second.to(p.device(), p.scalar_type()).clone());
    s->exp_avg_sq(b->second.to(p.device(), p.scalar_type()).clone());
    opt.state()[compat::optimizer_state_key(opt.state(), p)] = std::move(s);
  }
}

void load_trainer_state(const std::string& dir, TrainerState& st, torch::optim::AdamW& opt,
                        const std::vector<std::pair<std::string, at::Tensor>>& opt_params) {
  const fs::path sp = fs::path(dir) / "trainer_state.json";
  const fs::path op = fs::path(dir) / "optimizer.safetensors";
  MEDR1_CHECK(fs::exists(sp) && fs::exists(op), dir,
              ": not a resumable checkpoint (trainer_state.json / optimizer.safetensors missing; "
              "saved with save_only_model?)");
  TrainerState parsed = parse_trainer_state(io::read_json_file(sp.string()), sp.string());
  load_optimizer_state(io::load_safetensors(op.string()), op.string(), parsed, opt, opt_params);
  st = std::move(parsed);
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

// GRPO / SFT training loop (grpo_trainer.h): sequences rollout -> rewards -> advantages -> loss -> AdamW step
// -> metrics -> checkpoint. Each step first builds all its micro-batches (rollouts, reference and old logps),
// then runs forward/backward per micro-batch, as TRL's buffered _prepare_inputs does (Med-R1's compute_loss is
// the num_iterations == 1 case of it: identical values). Data-parallel (torchrun variables, docs/distributed.md):
// rank 0's weights are broadcast at start, each rank rolls out its shard of the prompts (a prompt's G samples
// stay on its rank, as in Med-R1), gradients are averaged on the last micro-step only (DDP no_sync), metrics
// are averaged before logging, and only rank 0 writes files (checkpoints behind barriers).
#include "medr1/rl/grpo_trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>

#include "medr1/core/device.h"
#include "medr1/model/attention.h"
#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/data/progress.h"
#include "medr1/dist/grad_sync.h"
#include "medr1/dist/launch_env.h"
#include "medr1/dist/process_group.h"
#include "medr1/dist/sampler.h"
#include "medr1/io/checkpoint.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/advantages.h"
#include "medr1/rl/lr_schedule.h"
#include "medr1/rl/optim.h"
#include "medr1/rl/policy_loss.h"
#include "medr1/rl/sft.h"
#include "medr1/rl/train_state.h"

namespace medr1::rl {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool has_weights(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors") || fs::exists(fs::path(dir) / "model.safetensors.index.json");
}

// HF _init_weights of Qwen2-VL: Linear / Embedding / Conv ~ normal(0, initializer_range), biases 0,
// (RMS/Layer)Norm weights 1 (biases 0); seeded for a reproducible start.
void init_weights_hf(torch::nn::Module& m, double std, uint64_t seed) {
  at::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : m.named_parameters()) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    const bool is_norm = name.find("norm") != std::string::npos || name.find("ln_q") != std::string::npos;
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) p.zero_();
    else if (is_norm) p.fill_(1.0);
    else p.normal_(0.0, std, gen);
  }
}

model::Qwen2VLForConditionalGeneration load_policy(const std::string& dir, at::ScalarType dtype, uint64_t seed) {
  if (has_weights(dir)) return model::load_qwen2_vl(dir, dtype);
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  MEDR1_CHECK(fs::exists(cfg_path), "model_name_or_path '", dir, "': no config.json");
  model::Qwen2VLConfig mc = model::load_qwen2_vl_config(cfg_path);
  spdlog::warn("{}: no weights; initialising from config.json (seed {})", dir, seed);
  model::Qwen2VLForConditionalGeneration m(mc);
  init_weights_hf(*m, mc.raw.value("initializer_range", 0.02), seed);
  m->to(dtype);
  return m;
}

// One micro-batch with everything the loss needs.
struct MicroBatch {
  Rollout r;
  at::Tensor advantages;  // [N] float32 (GRPO)
  at::Tensor ref_logps;   // [N, T] or undefined
  at::Tensor old_logps;   // [N, T] or undefined (num_iterations == 1)
  RewardResult rewards;
  double reward_std = 0;  // mean of the group stds (Med-R1's reward_std)
  double rollout_s = 0;
};

at::Tensor logps_of(model::Qwen2VLForConditionalGeneration& m, const Rollout& r) {
  return selective_log_softmax(completion_logits(m, r), r.completion_ids).to(at::kFloat);
}

// The loss-side tensors of a micro-batch on the training device (pixel_values are moved by the vision tower,
// image_grid_thw stays on the CPU where the rope / window code reads it).
void to_device(Rollout& r, at::Device dev) {
  for (at::Tensor* t : {&r.prompt_ids, &r.prompt_mask, &r.completion_ids, &r.completion_mask})
    if (t->defined()) *t = t->to(dev);
}

// `device` of the config -> the device this process trains on. "cuda" is cuda:LOCAL_RANK (torchrun: one GPU
// per local rank, as accelerate / the HF Trainer place the model); an explicit cuda:N must equal it when
// data-parallel, because the NCCL group communicates on cuda:LOCAL_RANK.
at::Device resolve_train_device(const std::string& spec, const dist::LaunchEnv& env) {
  if (spec == "cpu") return at::Device(at::kCPU);
  const at::Device dev = resolve_device(spec, env.local_rank);  // errors: CPU-only build, no visible GPU, index
  const int64_t index = dev.index();
  MEDR1_CHECK(!env.is_distributed() || index == env.local_rank, "device ", spec, ": rank ", env.rank,
              " has LOCAL_RANK ", env.local_rank, "; data-parallel runs use device cuda (cuda:LOCAL_RANK)");
  return at::Device(at::kCUDA, static_cast<at::DeviceIndex>(index));
}

struct Metrics {  // sums over the micro-batches of one optimizer step
  double loss = 0, kl = 0, clip = 0, completion_length = 0, reward_std = 0;
  std::vector<double> per_func_sum;
  double reward_sum = 0, n_completions = 0, n_micro = 0;
  double gen_tokens = 0, rollout_s = 0, train_tokens = 0, train_s = 0;
};

}  // namespace

TrainResult train(const GRPOConfig& cfg_in, const TrainerHooks& hooks) {
  GRPOConfig cfg = cfg_in;
  const bool sft = cfg.algo == "sft";
  MEDR1_CHECK(sft || cfg.algo == "grpo", "algo: expected grpo or sft, got '", cfg.algo, "'");
  MEDR1_CHECK(!cfg.output_dir.empty(), "output_dir: required");
  MEDR1_CHECK(!cfg.model_name_or_path.empty(), "model_name_or_path: required");
  MEDR1_CHECK(!cfg.dataset_name.empty(), "dataset_name: required");
  if (sft) cfg.num_generations = std::max<int64_t>(cfg.num_generations, 1);
  const dist::LaunchEnv env = dist::read_launch_env();
  cfg.validate(env.world_size);
  const at::Device device = resolve_train_device(cfg.device, env);
  dist::ProcessGroupOptions pgo;  // world 1: no store, every call a no-op
  pgo.device = device.is_cuda() ? "cuda" : "cpu";  // NCCL on CUDA, gloo on CPU
  dist::ProcessGroup pg(env, pgo);
  const bool is_main = pg.rank() == 0;
  const int64_t world = pg.world_size();
  if (pg.is_distributed())
    spdlog::info("data-parallel: rank {} of {} ({}, {}), global batch {} prompts", pg.rank(), world,
                 pg.backend_name(), device.str(),
                 world * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps);
  if (is_main) {
    fs::create_directories(cfg.output_dir);
    save_grpo_config(cfg, (fs::path(cfg.output_dir) / "resolved_config.json").string());
    // Stale temp folders of a run killed mid-save.
    for (const auto& e : fs::directory_iterator(cfg.output_dir))
      if (e.is_directory() && e.path().filename().string().rfind(".tmp-checkpoint-", 0) == 0)
        fs::remove_all(e.path());
  }
  pg.barrier();  // the folder exists (and is clean) before any rank looks into it

  at::manual_seed(static_cast<uint64_t>(cfg.seed));
  std::mt19937_64 mt(static_cast<uint64_t>(cfg.seed));
  const at::ScalarType run_dtype = cfg.bf16 ? at::kBFloat16 : at::kFloat;
  auto policy = load_policy(cfg.model_name_or_path, run_dtype, static_cast<uint64_t>(cfg.seed));
  policy->to(device);
  policy->train();
  // HF gradient_checkpointing_enable on the policy: every decoder layer and vision block recomputes its
  // activations in backward (the reference model and the no-grad logps never build a graph anyway).
  policy->set_gradient_checkpointing(cfg.gradient_checkpointing);
  model::set_attn_implementation(model::parse_attn_implementation(cfg.attn_implementation));
  // Every rank starts from rank 0's weights (DDP's constructor broadcast) and averages its grads with the
  // others; hooks on the run parameters (bf16: their grads are averaged before the fp32 master copy).
  std::unique_ptr<dist::GradSync> sync;
  if (pg.is_distributed()) sync = std::make_unique<dist::GradSync>(pg, *policy);
  const PromptMode mode = prompt_mode_from_string(cfg.prompt_template);
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_dir(cfg.model_name_or_path);
  const int64_t eos_id = tok.eos_token_id();
  MEDR1_CHECK(eos_id >= 0, cfg.model_name_or_path, ": tokenizer_config.json names no eos_token");
  const int64_t pad_id = tok.pad_token_id() >= 0 ? tok.pad_token_id() : eos_id;

  vision::ImageProcessorConfig ipc;
  if (auto p = fs::path(cfg.model_name_or_path) / "preprocessor_config.json"; fs::exists(p))
    ipc = vision::load_image_processor_config(p.string());
  ipc.max_pixels = cfg.max_pixels;
  ipc.min_pixels = cfg.min_pixels;

  data::LoadOptions lo;
  lo.image_root = cfg.dataset_root;
  lo.require_solution = true;
  const std::vector<data::Record> records = data::load_dataset(cfg.dataset_name, lo);
  MEDR1_CHECK(!records.empty(), cfg.dataset_name, ": no records");

  // Reference model: a frozen copy of the starting policy (Med-R1: create_reference_model).
  model::Qwen2VLForConditionalGeneration ref{nullptr};
  if (!sft && cfg.beta != 0.0) {
    ref = load_policy(cfg.model_name_or_path, run_dtype, static_cast<uint64_t>(cfg.seed));
    ref->to(device);
    ref->eval();
    for (auto& p : ref->parameters()) p.set_requires_grad(false);
    if (pg.is_distributed()) dist::broadcast_module(pg, *ref);
  }

  // Master weights: the policy's own parameters in fp32; fp32 copies when the policy runs in bf16.
  NamedTensors run_params = policy->named_parameters().pairs();
  NamedTensors master;
  for (auto& [n, p] : run_params) {
    if (!cfg.bf16) {
      master.emplace_back(n, p);
      continue;
    }
    at::Tensor m32 = p.detach().to(at::kFloat).clone();
    m32.set_requires_grad(true);
    master.emplace_back(n, m32);
  }
  auto opt = make_adamw(master, cfg);
  std::vector<at::Tensor> master_list;
  for (auto& [n, p] : master) master_list.push_back(p);

  const int64_t B = cfg.per_device_train_batch_size, GA = cfg.gradient_accumulation_steps;
  const int64_t G = sft ? 1 : cfg.num_generations;
  dist::DistributedSampler sampler(static_cast<int64_t>(records.size()), pg.rank(), pg.world_size(),
                                   static_cast<uint64_t>(cfg.seed));
  // HF Trainer (dataloader_drop_last False): len(dataloader) = ceil(shard / B) micro-batches, max_steps =
  // ceil(epochs * max(len // GA, 1)); TRL's sampler repeats every generation batch num_iterations times, so
  // the dataloader (and the step count) of GRPO is num_iterations times longer.
  const int64_t batches_per_epoch = (sampler.num_samples() + B - 1) / B;
  const int64_t iters = sft ? 1 : cfg.num_iterations;
  const int64_t steps_per_epoch = std::max<int64_t>(1, batches_per_epoch * iters / GA);
  const int64_t total_steps = cfg.max_steps > 0
                                  ? cfg.max_steps
                                  : static_cast<int64_t>(std::ceil(cfg.num_train_epochs * steps_per_epoch));
  const LrSchedulerType sched = lr_scheduler_type_from_string(cfg.lr_scheduler_type);
  const int64_t warmup = get_warmup_steps(cfg.warmup_steps, cfg.warmup_ratio, total_steps);
  const LossType loss_type = loss_type_from_string(cfg.loss_type);
  const ScaleRewards scale = scale_rewards_from_string(cfg.scale_rewards);
  const RewardRegistry& registry = hooks.rewards ? *hooks.rewards : default_registry();
  const GenerateFn gen = hooks.generate ? hooks.generate : default_generate_fn();

  TrainerState st;
  const fs::path metrics_path = fs::path(cfg.output_dir) / "metrics.jsonl";
  if (auto dir = resolve_resume_dir(cfg.resume, cfg.output_dir)) {
    model::load_qwen2_vl_weights(policy, *dir);
    if (cfg.bf16) {
      at::NoGradGuard ng;
      NamedTensors fresh = policy->named_parameters().pairs();
      for (size_t i = 0; i < master.size(); ++i) master[i].second.copy_(fresh[i].second.to(at::kFloat));
    }
    load_trainer_state(*dir, st, *opt, master);
    restore_rng(st, mt);
    const int64_t n_records = static_cast<int64_t>(records.size());
    if (st.world_size != world && st.sampler.position >= (n_records + st.world_size - 1) / st.world_size) {
      // The checkpoint ended an epoch (its last, possibly short, step): the next step starts the next epoch
      // whatever the world size (its padded shard length need not fit the new one).
      st.sampler.epoch += 1;
      st.sampler.position = 0;
    }
    if (st.world_size != world) {
      // Same global batch, other world size: the prompts consumed this epoch are the first
      // position * world_size of the shared permutation, so the per-rank position scales.
      const int64_t consumed = st.sampler.position * st.world_size;
      MEDR1_CHECK(consumed % world == 0, *dir, ": resuming a world-size-", st.world_size, " checkpoint (", consumed,
                  " prompts of epoch ", st.sampler.epoch, " consumed) with world size ", world,
                  " needs a multiple of the new world size");
      spdlog::info("resume: world size {} -> {} (sampler position {} -> {})", st.world_size, world,
                   st.sampler.position, consumed / world);
      st.sampler.position = consumed / world;
      st.world_size = world;
    }
    sampler.load_state(st.sampler);
    spdlog::info("resumed from {} at step {}", *dir, st.global_step);
  }
  st.world_size = world;
  if (is_main) {  // metrics.jsonl = the history up to the resume point (drops lines of steps after the checkpoint)
    std::ofstream f(metrics_path, std::ios::trunc);
    for (const auto& r : st.log_history) f << r.dump() << "\n";
  }

  // The prompts of one generation round, as the HF Trainer's epoch loop hands them out (dataloader_drop_last
  // False): up to GA micro-batches of up to B prompts of the current epoch. The epoch's last micro-batch keeps
  // its partial batch (fewer than B prompts), and its last step takes the micro-batches that are left (fewer
  // than GA: HF steps the optimizer at the end of the epoch); a step never spans two epochs. Every rank's shard
  // has the same size (DistributedSampler pads), so the ranks stay in lockstep.
  auto next_round_examples = [&]() {
    if (sampler.remaining() == 0) sampler.set_epoch(sampler.epoch() + 1);
    std::vector<std::vector<PromptExample>> out;
    while (static_cast<int64_t>(out.size()) < GA && sampler.remaining() > 0) {
      std::vector<PromptExample> ex;
      for (int64_t i : sampler.next_batch(B))
        ex.push_back(make_prompt_example(records[static_cast<size_t>(i)], mode, ipc));
      out.push_back(std::move(ex));
    }
    return out;
  };

  RolloutOptions ro;
  ro.num_generations = G;
  ro.max_prompt_length = cfg.max_prompt_length;
  ro.sampling.do_sample = true;
  ro.sampling.temperature = cfg.temperature;
  ro.sampling.top_k = cfg.top_k;
  ro.sampling.top_p = cfg.top_p;
  ro.sampling.repetition_penalty = cfg.repetition_penalty;
  ro.sampling.max_new_tokens = cfg.max_completion_length;
  ro.sampling.eos_token_ids = policy->config().eos_token_id;
  if (ro.sampling.eos_token_ids.empty()) ro.sampling.eos_token_ids = {eos_id};
  ro.mask_eos_ids = {eos_id};  // Med-R1: processing_class.eos_token_id only
  ro.mask_truncated_completions = cfg.mask_truncated_completions;
  ro.seed = static_cast<uint64_t>(cfg.seed);

  // Builds the GA micro-batches of one generation round (rollouts, rewards, advantages, ref / old logps).
  auto build_round = [&](int64_t step) {
    std::vector<MicroBatch> round;
    for (std::vector<PromptExample>& ex : next_round_examples()) {
      MicroBatch mb;
      auto t0 = Clock::now();
      if (sft) {
        mb.r = make_sft_batch(tok, ex, cfg.max_prompt_length, eos_id, pad_id);
        to_device(mb.r, device);
        round.push_back(std::move(mb));
        continue;
      }
      ro.step = step;
      mb.r = make_rollout(policy, tok, ex, ro, pad_id, gen);
      mb.rewards = compute_rewards(RewardInputs{mb.r.completions, mb.r.solutions, mode}, cfg.reward_funcs,
                                   cfg.reward_weights, registry);
      at::Tensor rw = at::tensor(mb.rewards.total, at::kDouble).to(at::kFloat);
      Advantages adv = compute_advantages(rw, G, scale, 1e-4);
      mb.advantages = adv.advantages.to(device);
      to_device(mb.r, device);
      mb.reward_std = at::nan_to_num(adv.std.view({-1, G}).select(1, 0), 0.0).mean().item<double>();
      at::NoGradGuard ng;
      if (ref) mb.ref_logps = logps_of(ref, mb.r);
      if (cfg.num_iterations > 1) {
        policy->eval();
        mb.old_logps = logps_of(policy, mb.r);
        policy->train();
      }
      mb.rollout_s = seconds_since(t0);
      round.push_back(std::move(mb));
    }
    return round;
  };

  data::ProgressOptions po;
  po.initial = st.global_step;
  std::unique_ptr<data::ProgressBar> bar;
  if (hooks.progress_bar && is_main) bar = std::make_unique<data::ProgressBar>(sft ? "sft" : "grpo", total_steps, po);
  std::vector<MicroBatch> round;
  TrainResult result;
  // Also on an epoch's last step with fewer than GA micro-batches: HF's training_step always divides by GA.
  const int64_t divisor = loss_accumulation_divisor(loss_type, GA);
  PolicyLossOptions plo = policy_loss_options(cfg);

  while (st.global_step < total_steps) {
    const int64_t step = st.global_step;
    const auto t_step = Clock::now();
    const double lr = cfg.learning_rate * lr_lambda(sched, step, warmup, total_steps);
    set_learning_rate(*opt, lr);
    if (sft || step % cfg.num_iterations == 0) round = build_round(step);
    Metrics m;
    m.per_func_sum.assign(cfg.reward_funcs.size(), 0.0);
    if (loss_type == LossType::dapo) {
      double items = 0;
      for (const auto& mb : round) items += mb.r.completion_mask.sum().item<double>();
      if (pg.is_distributed()) {
        // TRL: the global token count, scaled by the world size because the ranks' grads are averaged.
        at::Tensor t = at::tensor({items}, at::kDouble);
        pg.allreduce(t);
        items = t.item<double>() / static_cast<double>(world);
      }
      plo.num_items_in_batch = items;
    }
    for (size_t k = 0; k < round.size(); ++k) {
      MicroBatch& mb = round[k];
      // DDP no_sync: only the last micro-step's backward allreduces (the accumulated) grads.
      auto no_sync = sync && k + 1 < round.size() ? sync->no_sync() : dist::GradSync::NoSyncGuard{};
      const auto t0 = Clock::now();
      at::Tensor logps = logps_of(policy, mb.r);
      at::Tensor loss;
      if (sft) {
        loss = sft_loss(logps, mb.r.completion_mask);
        m.completion_length += mb.r.completion_mask.sum(1).to(at::kDouble).mean().item<double>();
      } else {
        PolicyLossOutput out = grpo_policy_loss(logps, mb.old_logps, mb.ref_logps, mb.advantages,
                                                mb.r.completion_mask, plo);
        loss = out.loss;
        m.kl += out.kl.item<double>();
        m.clip += out.clip_ratio_region.item<double>();
        m.completion_length += out.completion_length.item<double>();
        m.reward_std += mb.reward_std;
        for (size_t f = 0; f < mb.rewards.per_func.size(); ++f)
          for (double v : mb.rewards.per_func[f]) m.per_func_sum[f] += std::isnan(v) ? 0.0 : v;
        for (double v : mb.rewards.total) m.reward_sum += std::isnan(v) ? 0.0 : v;
        m.n_completions += static_cast<double>(mb.rewards.total.size());
      }
      const double loss_v = loss.item<double>();
      MEDR1_CHECK(std::isfinite(loss_v), "step ", step + 1, ": loss is ", loss_v,
                  " (non-finite); stopping before the optimizer step, last checkpoint kept");
      at::Tensor scaled = loss / static_cast<double>(divisor);
      if (sync && k + 1 == round.size()) sync->prepare_for_backward(scaled);
      scaled.backward();
      m.loss += loss_v / static_cast<double>(divisor);
      m.n_micro += 1;
      m.gen_tokens += static_cast<double>(mb.r.generated_tokens);
      m.rollout_s += mb.rollout_s;
      m.train_tokens += static_cast<double>(mb.r.completion_ids.size(0) *
                                            (mb.r.prompt_ids.size(1) + mb.r.completion_ids.size(1)));
      m.train_s += seconds_since(t0);
    }
    if (sync) sync->finalize();  // .grad = mean over ranks
    if (cfg.bf16) {
      for (size_t i = 0; i < master.size(); ++i) {
        const at::Tensor& g = run_params[i].second.grad();
        master[i].second.mutable_grad() = g.defined() ? g.to(at::kFloat) : at::Tensor();
      }
    }
    const double grad_norm = cfg.max_grad_norm > 0 ? clip_grad_norm_(master_list, cfg.max_grad_norm)
                                                   : clip_grad_norm_(master_list, 1e30);
    MEDR1_CHECK(std::isfinite(grad_norm), "step ", step + 1, ": gradient norm is ", grad_norm,
                " (non-finite); stopping before the optimizer step, last checkpoint kept");
    opt->step();
    opt->zero_grad();
    if (cfg.bf16) {
      at::NoGradGuard ng;
      for (size_t i = 0; i < master.size(); ++i) {
        run_params[i].second.copy_(master[i].second);
        run_params[i].second.mutable_grad() = at::Tensor();
      }
    }
    st.global_step += 1;
    st.sampler = sampler.state();

    if (st.global_step % std::max<int64_t>(1, cfg.logging_steps) == 0 || st.global_step == total_steps) {
      const double nm = std::max(1.0, m.n_micro);
      nlohmann::json rec;
      rec["step"] = st.global_step;
      rec["epoch"] = static_cast<double>(sampler.epoch()) +
                     static_cast<double>(sampler.state().position) / static_cast<double>(sampler.num_samples());
      rec["loss"] = m.loss;
      if (!sft) {
        const double nc = std::max(1.0, m.n_completions);
        for (size_t f = 0; f < cfg.reward_funcs.size(); ++f)
          rec["rewards/" + cfg.reward_funcs[f]] = m.per_func_sum[f] / nc;
        rec["reward"] = m.reward_sum / nc;
        rec["reward_std"] = m.reward_std / nm;
        rec["kl"] = m.kl / nm;
        rec["clip_ratio"] = m.clip / nm;
      }
      rec["completion_length"] = m.completion_length / nm;
      rec["learning_rate"] = lr;
      rec["grad_norm"] = grad_norm;
      rec["step_time"] = seconds_since(t_step);
      rec["rollout_tokens_per_s"] = m.rollout_s > 0 ? m.gen_tokens / m.rollout_s : 0.0;
      rec["train_tokens_per_s"] = m.train_s > 0 ? m.train_tokens / m.train_s : 0.0;
      if (pg.is_distributed()) {
        // Every rank holds the same keys; the logged value is the mean over ranks (HF Trainer's gather +
        // mean); throughputs are per rank, so the job's is world x their mean.
        std::map<std::string, double> local;
        for (auto it = rec.begin(); it != rec.end(); ++it)
          if (it.key() != "step" && it.key() != "epoch" && it.key() != "learning_rate")
            local[it.key()] = it->get<double>();
        for (const auto& [k, v] : dist::allreduce_mean(pg, local)) rec[k] = v;
        rec["rollout_tokens_per_s"] = rec["rollout_tokens_per_s"].get<double>() * static_cast<double>(world);
        rec["train_tokens_per_s"] = rec["train_tokens_per_s"].get<double>() * static_cast<double>(world);
      }
      st.log_history.push_back(rec);
      if (is_main) std::ofstream(metrics_path, std::ios::app) << rec.dump() << "\n";
      if (hooks.on_log) hooks.on_log(rec);
    }
    if (bar) bar->advance();
    if (cfg.save_steps > 0 && st.global_step % cfg.save_steps == 0) {
      capture_rng(st, mt);
      NamedTensors weights;
      for (auto& [n, p] : master) weights.emplace_back(n, p.detach());
      pg.barrier();  // every rank finished the step
      if (is_main)
        result.last_checkpoint = save_checkpoint(cfg.output_dir, st, weights, model::to_json(policy->config()),
                                                 cfg.model_name_or_path, cfg.save_only_model ? nullptr : opt.get(),
                                                 master, to_json(cfg));
      else
        result.last_checkpoint =
            (fs::path(cfg.output_dir) / ("checkpoint-" + std::to_string(st.global_step))).string();
      pg.barrier();  // the checkpoint is committed before any rank goes on (a later failure leaves it intact)
    }
  }
  if (bar) bar->finish();
  // trainer.save_model(output_dir): the final model as a loadable HF folder.
  NamedTensors weights;
  for (auto& [n, p] : master) weights.emplace_back(n, p.detach());
  pg.barrier();
  if (is_main) {
    io::write_json_atomic((fs::path(cfg.output_dir) / "config.json").string(), model::to_json(policy->config()));
    io::save_safetensors_sharded(cfg.output_dir, weights);
    io::copy_hf_side_files(cfg.model_name_or_path, cfg.output_dir);
  }
  pg.barrier();  // the final model is on disk when train() returns on any rank
  result.global_step = st.global_step;
  result.log_history = st.log_history;
  return result;
}

}  // namespace medr1::rl

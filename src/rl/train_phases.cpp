// The phases of a training run (train_phases.h); grpo_trainer.cpp sequences them. Each step first
// builds all its micro-batches (rollouts, reference and old logps), then runs forward/backward per
// micro-batch, as TRL's buffered _prepare_inputs does (Med-R1's compute_loss is the num_iterations
// == 1 case of it: identical values). Data-parallel (torchrun variables, docs/distributed.md): rank
// 0's weights are broadcast at start, each rank rolls out its shard of the prompts (a prompt's G
// samples stay on its rank, as in Med-R1), gradients are averaged on the last micro-step only (DDP
// no_sync), metrics are averaged before logging, and only rank 0 writes files (checkpoints behind
// barriers).
#include "medr1/rl/train_phases.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>

#include "medr1/core/device.h"
#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/io/checkpoint.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/attention.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/data_screen.h"
#include "medr1/rl/optim.h"
#include "medr1/rl/sft.h"

namespace medr1::rl {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool has_weights(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors") ||
         fs::exists(fs::path(dir) / "model.safetensors.index.json");
}

model::Qwen2VLForConditionalGeneration load_policy(const std::string& dir, at::ScalarType dtype,
                                                   uint64_t seed) {
  if (has_weights(dir)) return model::load_qwen2_vl(dir, dtype);
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  MEDR1_CHECK(fs::exists(cfg_path), "model_name_or_path '", dir, "': no config.json");
  model::Qwen2VLConfig mc = model::load_qwen2_vl_config(cfg_path);
  spdlog::warn("{}: no weights; initialising from config.json (seed {})", dir, seed);
  model::Qwen2VLForConditionalGeneration m(mc);
  model::init_weights_hf(*m, mc.raw.value("initializer_range", 0.02), seed);
  m->to(dtype);
  return m;
}

at::Tensor logps_of(model::Qwen2VLForConditionalGeneration& m, const Rollout& r) {
  return selective_log_softmax(completion_logits(m, r), r.completion_ids).to(at::kFloat);
}

// The loss-side tensors of a micro-batch on the training device (pixel_values are moved by the
// vision tower, image_grid_thw stays on the CPU where the rope / window code reads it).
void to_device(Rollout& r, at::Device dev) {
  for (at::Tensor* t : {&r.prompt_ids, &r.prompt_mask, &r.completion_ids, &r.completion_mask})
    if (t->defined()) *t = t->to(dev);
}

// `device` of the config -> the device this process trains on. "cuda" is cuda:LOCAL_RANK (torchrun:
// one GPU per local rank, as accelerate / the HF Trainer place the model); an explicit cuda:N must
// equal it when data-parallel, because the NCCL group communicates on cuda:LOCAL_RANK.
at::Device resolve_train_device(const std::string& spec, const dist::LaunchEnv& env) {
  if (spec == "cpu") return at::Device(at::kCPU);
  const at::Device dev =
      resolve_device(spec, env.local_rank);  // errors: CPU-only build, no visible GPU, index
  const int64_t index = dev.index();
  MEDR1_CHECK(!env.is_distributed() || index == env.local_rank, "device ", spec, ": rank ",
              env.rank, " has LOCAL_RANK ", env.local_rank,
              "; data-parallel runs use device cuda (cuda:LOCAL_RANK)");
  return at::Device(at::kCUDA, static_cast<at::DeviceIndex>(index));
}

// The prompts of one generation round, as the HF Trainer's epoch loop hands them out
// (dataloader_drop_last False): up to GA micro-batches of up to B prompts of the current epoch. The
// epoch's last micro-batch keeps its partial batch (fewer than B prompts), and its last step takes
// the micro-batches that are left (fewer than GA: HF steps the optimizer at the end of the epoch);
// a step never spans two epochs. Every rank's shard has the same size (DistributedSampler pads), so
// the ranks stay in lockstep.
std::vector<std::vector<PromptExample>> next_round_examples(TrainSession& s) {
  dist::DistributedSampler& sampler = *s.sampler;
  if (sampler.remaining() == 0) sampler.set_epoch(sampler.epoch() + 1);
  std::vector<std::vector<PromptExample>> out;
  while (static_cast<int64_t>(out.size()) < s.GA && sampler.remaining() > 0) {
    std::vector<PromptExample> ex;
    for (int64_t i : sampler.next_batch(s.B))
      ex.push_back(make_prompt_example(s.records[static_cast<size_t>(i)], s.mode, s.ipc));
    out.push_back(std::move(ex));
  }
  return out;
}

// Restores a checkpoint into the session (weights, fp32 masters, optimizer, RNGs, sampler).
// A checkpoint resumes only under the freezing it was trained with: its optimizer state covers exactly
// the parameters that were trainable then (training_args.json records the flags; absent = false).
void check_resume_freezing(const GRPOConfig& cfg, const std::string& dir) {
  const fs::path args = fs::path(dir) / "training_args.json";
  if (!fs::exists(args)) return;  // load_trainer_state names what is missing
  const nlohmann::json j = io::read_json_file(args.string());
  for (const auto& [key, now] : {std::pair<const char*, bool>{"freeze_vision_modules", cfg.freeze_vision_modules},
                                 {"freeze_language_model", cfg.freeze_language_model}}) {
    const bool then = j.contains(key) && j.at(key).is_boolean() && j.at(key).get<bool>();
    MEDR1_CHECK(then == now, "resume: ", dir, " was trained with ", key, " ", then ? "true" : "false",
                " but this run has ", key, " ", now ? "true" : "false",
                "; its optimizer state covers the parameters trainable then (resume with the same flag, or "
                "start a new run from its weights with --model_name_or_path)");
  }
}

// A LoRA run resumes from a LoRA checkpoint of the same adapter shape (its optimizer state covers the
// adapters), and a full run from a full one.
void check_resume_lora(const TrainSession& s, const std::string& dir) {
  const bool adapter = io::is_peft_adapter_dir(dir);
  MEDR1_CHECK(adapter == s.cfg.use_peft, "resume: ", dir, adapter ? " holds a LoRA adapter" : " holds a full model",
              " but this run has use_peft ", s.cfg.use_peft ? "true" : "false",
              adapter ? " (resume with --use_peft true and its lora_* settings)"
                      : " (start a LoRA run from its weights with --model_name_or_path)");
  if (!adapter) return;
  const model::LoraConfig saved = model::read_lora_adapter_config(dir).first;
  const std::vector<std::string> saved_targets = model::resolve_lora_targets(saved);
  MEDR1_CHECK(saved.r == s.lora->config.r && saved.lora_alpha == s.lora->config.lora_alpha &&
                  saved.use_rslora == s.lora->config.use_rslora && saved_targets == s.lora->targets,
              "resume: ", dir, "/adapter_config.json: r ", saved.r, ", lora_alpha ", saved.lora_alpha,
              ", use_rslora ", saved.use_rslora ? "true" : "false", ", ", saved_targets.size(),
              " target projections differ from this run's r ", s.lora->config.r, ", lora_alpha ",
              s.lora->config.lora_alpha, ", use_rslora ", s.lora->config.use_rslora ? "true" : "false", ", ",
              s.lora->targets.size(), " (resume with the same LoRA settings)");
}

void resume_from(TrainSession& s, const std::string& dir) {
  check_resume_freezing(s.cfg, dir);
  check_resume_lora(s, dir);
  if (s.lora)
    s.lora->load_weights(dir);
  else
    model::load_qwen2_vl_weights(s.policy, dir);
  if (s.cfg.bf16) {
    // The fp32 masters come from the checkpoint itself (it holds them); the bf16 run parameters only hold
    // their roundings, from which the masters would resume a little off the uninterrupted run.
    at::NoGradGuard ng;
    const std::string file = s.lora ? (fs::path(dir) / "adapter_model.safetensors").string() : dir;
    const std::map<std::string, at::Tensor> saved = io::load_safetensors(file);
    for (auto& [n, m] : s.master) {
      if (!m.requires_grad()) continue;  // frozen: the run parameter itself, loaded above
      auto it = saved.find(s.lora ? io::peft_key(n) : n);
      MEDR1_CHECK(it != saved.end(), file, ": ", n, ": missing");
      m.copy_(it->second);
    }
  }
  load_trainer_state(dir, s.st, *s.opt, s.master);
  restore_rng(s.st, s.mt);
  if (s.cfg.sync_ref_model && s.ref) {
    // The reference drifted by TR-DPO mixing; the checkpoint holds it (ref_model/). Without it the
    // run could only resume if no mixing happened yet.
    const fs::path ref_dir = fs::path(dir) / "ref_model";
    if (fs::exists(ref_dir / "config.json")) {
      model::load_qwen2_vl_weights(s.ref, ref_dir.string());
    } else {
      MEDR1_CHECK(s.st.global_step < s.cfg.ref_model_sync_steps, "resume: ", dir,
                  " has no ref_model/ folder but this run has sync_ref_model true and step ", s.st.global_step,
                  " >= ref_model_sync_steps ", s.cfg.ref_model_sync_steps,
                  ": the reference it trained against is lost (it was saved without sync_ref_model)");
    }
  }
  if (s.st.world_size != s.world) {
    const dist::SamplerState before = s.st.sampler;
    s.st.sampler = rescale_sampler_for_world(s.st.sampler, s.st.world_size, s.world,
                                             static_cast<int64_t>(s.records.size()), dir);
    spdlog::info(
        "resume: world size {} -> {} (sampler epoch {} position {} -> epoch {} position {})",
        s.st.world_size, s.world, before.epoch, before.position, s.st.sampler.epoch,
        s.st.sampler.position);
    s.st.world_size = s.world;
  }
  s.sampler->load_state(s.st.sampler);
  spdlog::info("resumed from {} at step {}", dir, s.st.global_step);
}

}  // namespace

StepPlan plan_steps(const GRPOConfig& cfg, int64_t shard_samples) {
  const bool sft = cfg.algo == "sft";
  StepPlan p;
  p.batches_per_epoch =
      (shard_samples + cfg.per_device_train_batch_size - 1) / cfg.per_device_train_batch_size;
  const int64_t iters = sft ? 1 : cfg.num_iterations;
  p.steps_per_epoch =
      std::max<int64_t>(1, p.batches_per_epoch * iters / cfg.gradient_accumulation_steps);
  p.total_steps = cfg.max_steps > 0
                      ? cfg.max_steps
                      : static_cast<int64_t>(std::ceil(cfg.num_train_epochs * p.steps_per_epoch));
  p.warmup_steps = get_warmup_steps(cfg.warmup_steps, cfg.warmup_ratio, p.total_steps);
  return p;
}

dist::SamplerState rescale_sampler_for_world(dist::SamplerState s, int64_t saved_world,
                                             int64_t world, int64_t n_records,
                                             const std::string& dir) {
  if (saved_world == world) return s;
  if (s.position >= (n_records + saved_world - 1) / saved_world) {
    // The checkpoint ended an epoch (its last, possibly short, step): the next step starts the next
    // epoch whatever the world size (its padded shard length need not fit the new one).
    s.epoch += 1;
    s.position = 0;
  }
  // Same global batch, other world size: the prompts consumed this epoch are the first position *
  // saved_world of the shared permutation, so the per-rank position scales.
  const int64_t consumed = s.position * saved_world;
  MEDR1_CHECK(consumed % world == 0, dir, ": resuming a world-size-", saved_world, " checkpoint (",
              consumed, " prompts of epoch ", s.epoch, " consumed) with world size ", world,
              " needs a multiple of the new world size");
  s.position = consumed / world;
  return s;
}

namespace {
// The weight a checkpoint holds: the fp32 master; a frozen bf16 run parameter widened to fp32 like them,
// so that every tensor of a saved folder has one dtype.
at::Tensor saved_weight(const at::Tensor& master) {
  return master.requires_grad() || master.scalar_type() == at::kFloat ? master.detach()
                                                                      : master.detach().to(at::kFloat);
}

// What a checkpoint or the final folder holds: every weight (fp32), or with LoRA the adapters only.
NamedTensors saved_weights(const TrainSession& s) {
  NamedTensors weights;
  for (const auto& [n, p] : s.master)
    if (!s.lora || model::is_lora_param(n)) weights.emplace_back(n, saved_weight(p));
  return weights;
}
}  // namespace

std::pair<int64_t, int64_t> apply_freezing(torch::nn::Module& policy, bool freeze_vision_modules,
                                           bool freeze_language_model, bool adapters_only) {
  MEDR1_CHECK(!(freeze_vision_modules && freeze_language_model),
              "freeze_vision_modules and freeze_language_model are both true: no parameter would be trained");
  int64_t trainable = 0, total = 0;
  for (auto& item : policy.named_parameters()) {
    const bool vision = item.key().rfind("visual.", 0) == 0;
    if ((vision && freeze_vision_modules) || (!vision && freeze_language_model) ||
        (adapters_only && !model::is_lora_param(item.key())))
      item.value().set_requires_grad(false);
    total += item.value().numel();
    if (item.value().requires_grad()) trainable += item.value().numel();
  }
  return {trainable, total};
}

model::LoraConfig lora_config_of(const GRPOConfig& cfg) {
  model::LoraConfig c;
  c.r = cfg.lora_r;
  c.lora_alpha = cfg.lora_alpha;
  c.lora_dropout = cfg.lora_dropout;
  c.use_rslora = cfg.use_rslora;
  c.target_modules = cfg.lora_target_modules;
  return c;
}

std::unique_ptr<TrainSession> set_up(const GRPOConfig& cfg_in, const TrainerHooks& hooks) {
  auto sp = std::make_unique<TrainSession>();
  TrainSession& s = *sp;
  s.cfg = cfg_in;
  GRPOConfig& cfg = s.cfg;
  s.sft = cfg.algo == "sft";
  MEDR1_CHECK(s.sft || cfg.algo == "grpo", "algo: expected grpo or sft, got '", cfg.algo, "'");
  MEDR1_CHECK(!cfg.output_dir.empty(), "output_dir: required");
  MEDR1_CHECK(!cfg.model_name_or_path.empty(), "model_name_or_path: required");
  MEDR1_CHECK(!cfg.dataset_name.empty(), "dataset_name: required");
  if (s.sft) cfg.num_generations = std::max<int64_t>(cfg.num_generations, 1);
  s.env = dist::read_launch_env();
  cfg.validate(s.env.world_size);
  if (cfg.use_peft) model::resolve_lora_targets(lora_config_of(cfg));  // names checked before any loading
  s.device = resolve_train_device(cfg.device, s.env);
  dist::ProcessGroupOptions pgo;                     // world 1: no store, every call a no-op
  pgo.device = s.device.is_cuda() ? "cuda" : "cpu";  // NCCL on CUDA, gloo on CPU
  s.pg = std::make_unique<dist::ProcessGroup>(s.env, pgo);
  dist::ProcessGroup& pg = *s.pg;
  s.is_main = pg.rank() == 0;
  s.world = pg.world_size();
  if (const char* f = std::getenv("MEDR1_FAULT_NONFINITE_LOSS"); f != nullptr && *f != '\0') {
    const std::string spec = f;
    const auto colon = spec.find(':');
    s.fault_nonfinite_step = std::stoll(spec.substr(0, colon));
    if (colon != std::string::npos) s.fault_nonfinite_rank = std::stoi(spec.substr(colon + 1));
    spdlog::warn("MEDR1_FAULT_NONFINITE_LOSS={}: the loss of step {} is made NaN (fault injection)",
                 spec, s.fault_nonfinite_step);
  }
  if (pg.is_distributed())
    spdlog::info("data-parallel: rank {} of {} ({}, {}), global batch {} prompts", pg.rank(),
                 s.world, pg.backend_name(), s.device.str(),
                 s.world * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps);
  if (s.is_main) {
    fs::create_directories(cfg.output_dir);
    save_grpo_config(cfg, (fs::path(cfg.output_dir) / "resolved_config.json").string());
    // Stale temp folders of a run killed mid-save.
    for (const auto& e : fs::directory_iterator(cfg.output_dir))
      if (e.is_directory() && e.path().filename().string().rfind(".tmp-checkpoint-", 0) == 0)
        fs::remove_all(e.path());
  }
  pg.barrier();  // the folder exists (and is clean) before any rank looks into it

  at::manual_seed(static_cast<uint64_t>(cfg.seed));
  s.mt.seed(static_cast<uint64_t>(cfg.seed));
  const at::ScalarType run_dtype = cfg.bf16 ? at::kBFloat16 : at::kFloat;
  s.policy = load_policy(cfg.model_name_or_path, run_dtype, static_cast<uint64_t>(cfg.seed));
  s.policy->to(s.device);
  s.policy->train();
  // HF gradient_checkpointing_enable on the policy: every decoder layer and vision block recomputes
  // its activations in backward (the reference model and the no-grad logps never build a graph
  // anyway).
  s.policy->set_gradient_checkpointing(cfg.gradient_checkpointing);
  // LoRA: fresh adapters (lora_A from the seed, lora_B zero: the start equals the base model), everything
  // else frozen.
  if (cfg.use_peft) s.lora = model::inject_lora(*s.policy, lora_config_of(cfg), static_cast<uint64_t>(cfg.seed));
  const auto [trainable, total] =
      apply_freezing(*s.policy, cfg.freeze_vision_modules, cfg.freeze_language_model, cfg.use_peft);
  if (s.is_main) {
    std::string what = cfg.freeze_vision_modules ? " (vision tower frozen)"
                       : cfg.freeze_language_model ? " (language model frozen)"
                                                   : "";
    if (s.lora) {
      what = " (LoRA r " + std::to_string(cfg.lora_r) + ", alpha " + fmt::format("{}", cfg.lora_alpha) + " on";
      for (const std::string& t : s.lora->targets) what += " " + t;
      what += " of " + std::to_string(s.policy->model->layers->size()) + " decoder layers)";
    }
    spdlog::info("trainable params: {} || all params: {} || trainable%: {:.4f}{}", trainable, total,
                 100.0 * static_cast<double>(trainable) / static_cast<double>(std::max<int64_t>(total, 1)), what);
  }
  if (s.is_main)
    model::use_attn_implementation(cfg.attn_implementation, s.device);
  else
    model::set_attn_implementation(model::parse_attn_implementation(cfg.attn_implementation));
  // Every rank starts from rank 0's weights (DDP's constructor broadcast) and averages its grads
  // with the others; hooks on the run parameters (bf16: their grads are averaged before the fp32
  // master copy).
  if (pg.is_distributed()) s.sync = std::make_unique<dist::GradSync>(pg, *s.policy);
  s.mode = prompt_mode_from_string(cfg.prompt_template);
  s.tok = std::make_unique<tokenizer::Tokenizer>(
      tokenizer::Tokenizer::from_dir(cfg.model_name_or_path));
  s.eos_id = s.tok->eos_token_id();
  MEDR1_CHECK(s.eos_id >= 0, cfg.model_name_or_path, ": tokenizer_config.json names no eos_token");
  s.pad_id = s.tok->pad_token_id() >= 0 ? s.tok->pad_token_id() : s.eos_id;

  if (auto p = fs::path(cfg.model_name_or_path) / "preprocessor_config.json"; fs::exists(p))
    s.ipc = vision::load_image_processor_config(p.string());
  s.ipc.max_pixels = cfg.max_pixels;
  s.ipc.min_pixels = cfg.min_pixels;

  data::LoadOptions lo;
  lo.image_root = cfg.dataset_root;
  lo.require_solution = false;  // the screen records each record without one
  {
    std::vector<data::Record> all = data::load_dataset(cfg.dataset_name, lo);
    MEDR1_CHECK(!all.empty(), cfg.dataset_name, ": no records");
    ScreenOptions so;
    so.mode = s.mode;
    so.ipc = s.ipc;
    so.max_prompt_length = cfg.max_prompt_length;
    so.check_answers = !s.sft;
    so.progress = hooks.progress_bar && s.is_main && all.size() >= 1000;
    DataScreen screen = screen_training_records(std::move(all), *s.tok, so);
    if (s.is_main) {
      write_data_screen(screen, cfg.output_dir);
      for (size_t i = 0; i < screen.issues.size() && i < 5; ++i) {
        const DataIssue& d = screen.issues[i];
        spdlog::warn("data: {} record {} ({}): {}{}", d.source_file, d.file_index, d.kind, d.detail,
                     d.skipped ? " [skipped]" : "");
      }
      if (screen.issues.empty())
        spdlog::info("data: {}", screen.summary_line());
      else
        spdlog::warn("data: {} (every item in {})", screen.summary_line(),
                     (fs::path(cfg.output_dir) / "data_issues.jsonl").string());
    }
    MEDR1_CHECK(!screen.kept.empty(), cfg.dataset_name, ": no usable records: ", screen.summary_line(), " (see ",
                (fs::path(cfg.output_dir) / "data_issues.jsonl").string(), ")");
    s.records = std::move(screen.kept);
  }

  // Reference model: a frozen copy of the starting policy (Med-R1: create_reference_model); with LoRA the
  // policy itself with its adapters off (TRL with PEFT: no reference copy).
  if (!s.sft && cfg.beta != 0.0 && !s.lora) {
    s.ref = load_policy(cfg.model_name_or_path, run_dtype, static_cast<uint64_t>(cfg.seed));
    s.ref->to(s.device);
    s.ref->eval();
    for (auto& p : s.ref->parameters()) p.set_requires_grad(false);
    if (pg.is_distributed()) dist::broadcast_module(pg, *s.ref);
  }

  // Master weights: the policy's own parameters in fp32; fp32 copies when the policy runs in bf16.
  s.run_params = s.policy->named_parameters().pairs();
  for (auto& [n, p] : s.run_params) {
    if (!cfg.bf16 || !p.requires_grad()) {  // fp32, or frozen: the run parameter itself
      s.master.emplace_back(n, p);
      continue;
    }
    at::Tensor m32 = p.detach().to(at::kFloat).clone();
    m32.set_requires_grad(true);
    s.master.emplace_back(n, m32);
  }
  s.opt = make_adamw(s.master, cfg);
  for (auto& [n, p] : s.master)
    if (p.requires_grad()) s.master_list.push_back(p);

  s.B = cfg.per_device_train_batch_size;
  s.GA = cfg.gradient_accumulation_steps;
  s.G = s.sft ? 1 : cfg.num_generations;
  s.sampler =
      std::make_unique<dist::DistributedSampler>(static_cast<int64_t>(s.records.size()), pg.rank(),
                                                 pg.world_size(), static_cast<uint64_t>(cfg.seed));
  s.plan = plan_steps(cfg, s.sampler->num_samples());
  s.sched = lr_scheduler_type_from_string(cfg.lr_scheduler_type);
  s.loss_type = loss_type_from_string(cfg.loss_type);
  s.scale = scale_rewards_from_string(cfg.scale_rewards);
  s.registry = hooks.rewards ? hooks.rewards : &default_registry();
  s.gen = hooks.generate ? hooks.generate : default_generate_fn();

  if (auto dir = resolve_resume_dir(cfg.resume, cfg.output_dir)) resume_from(s, *dir);
  s.st.world_size = s.world;

  RolloutOptions& ro = s.ro;
  ro.num_generations = s.G;
  ro.max_prompt_length = cfg.max_prompt_length;
  ro.sampling.do_sample = true;
  ro.sampling.temperature = cfg.temperature;
  ro.sampling.top_k = cfg.top_k;
  ro.sampling.top_p = cfg.top_p;
  ro.sampling.repetition_penalty = cfg.repetition_penalty;
  ro.sampling.max_new_tokens = cfg.max_completion_length;
  ro.sampling.eos_token_ids = s.policy->config().eos_token_id;
  if (ro.sampling.eos_token_ids.empty()) ro.sampling.eos_token_ids = {s.eos_id};
  ro.mask_eos_ids = {s.eos_id};  // Med-R1: processing_class.eos_token_id only
  ro.mask_truncated_completions = cfg.mask_truncated_completions;
  ro.seed = static_cast<uint64_t>(cfg.seed);

  // Also on an epoch's last step with fewer than GA micro-batches: HF's training_step always
  // divides by GA.
  s.divisor = loss_accumulation_divisor(s.loss_type, s.GA);
  s.plo = policy_loss_options(cfg);
  return sp;
}

double set_step_learning_rate(TrainSession& s, int64_t step) {
  const double lr =
      s.cfg.learning_rate * lr_lambda(s.sched, step, s.plan.warmup_steps, s.plan.total_steps);
  set_learning_rate(*s.opt, lr);
  return lr;
}

namespace {

// The rewards of a rollout's completions (as TRL: lengths up to and including the first EOS, before
// mask_truncated_completions, for the length-based rewards).
RewardResult score_rollout(const TrainSession& s, const Rollout& r) {
  const at::Tensor len_t = completion_mask(r.completion_ids.cpu(), s.ro.mask_eos_ids).sum(1).to(at::kLong);
  const std::vector<int64_t> lengths(len_t.data_ptr<int64_t>(), len_t.data_ptr<int64_t>() + len_t.numel());
  RewardInputs in{r.completions, r.solutions, s.mode};
  in.completion_lengths = &lengths;
  in.soft_punish_max_completion_len = s.cfg.resolved_soft_punish_max_completion_len();
  in.soft_punish_cache = s.cfg.soft_punish_cache;
  return compute_rewards(in, s.cfg.reward_funcs, s.cfg.reward_weights, *s.registry);
}

// The rest of a GRPO micro-batch once mb.r and mb.rewards are set: advantages, the device, reference and
// old log-probs. t0: when the micro-batch's rollout began.
void finish_micro_batch(TrainSession& s, MicroBatch& mb, Clock::time_point t0) {
  at::Tensor rw = at::tensor(mb.rewards.total, at::kDouble).to(at::kFloat);
  Advantages adv = compute_advantages(rw, s.G, s.scale, 1e-4);
  mb.advantages = adv.advantages.to(s.device);
  to_device(mb.r, s.device);
  mb.reward_std = at::nan_to_num(adv.std.view({-1, s.G}).select(1, 0), 0.0).mean().item<double>();
  at::NoGradGuard ng;
  auto t_ref = Clock::now();
  if (s.ref) {
    mb.ref_logps = logps_of(s.ref, mb.r);
  } else if (s.lora && s.cfg.beta != 0.0) {  // the base model: adapters off, eval mode as the reference
    model::LoraSet::Disabled off(*s.lora);
    s.policy->eval();
    mb.ref_logps = logps_of(s.policy, mb.r);
    s.policy->train();
  }
  mb.ref_s = seconds_since(t_ref);
  if (s.cfg.num_iterations > 1) {
    auto t_old = Clock::now();
    s.policy->eval();
    mb.old_logps = logps_of(s.policy, mb.r);
    s.policy->train();
    mb.old_s = seconds_since(t_old);
  }
  mb.rollout_s = seconds_since(t0);
}

// One generated group that dynamic sampling keeps: the prompt, its G completions and their rewards.
struct ScoredGroup {
  PromptExample ex;
  PromptCompletions c;
  std::vector<double> total;                 // [G]
  std::vector<std::vector<double>> per_func;  // [funcs][G]
};

// The G rows of group b of a rollout (its completions padded to the rollout's T) and their rewards.
// Generated tokens: up to and including the first generation EOS (where generation stopped).
ScoredGroup group_of(PromptExample ex, const Rollout& r, const RewardResult& rw, int64_t b, int64_t G,
                     const std::vector<int64_t>& eos_ids) {
  ScoredGroup g;
  g.ex = std::move(ex);
  g.c.new_tokens = r.completion_ids.slice(0, b * G, (b + 1) * G);
  g.c.generated_tokens = completion_mask(g.c.new_tokens, eos_ids).sum().item<int64_t>();
  const auto first = static_cast<std::ptrdiff_t>(b * G), last = static_cast<std::ptrdiff_t>((b + 1) * G);
  g.total.assign(rw.total.begin() + first, rw.total.begin() + last);
  for (const auto& f : rw.per_func) g.per_func.emplace_back(f.begin() + first, f.begin() + last);
  return g;
}

// dynamic_sampling drop | refill: generation batches of GA micro-batches are drawn and scored; the groups
// whose rewards all agree are left out; refill draws further batches while any rank holds fewer than
// GA x B groups with spread (the decision is taken by all ranks together, so every rank draws the same
// prompts count and the sampler positions stay equal), up to max_num_gen_batches. The kept groups are
// packed into micro-batches of B prompts (the first GA x B; fewer when short, possibly none).
std::vector<MicroBatch> dynamic_sampling_round(TrainSession& s, int64_t step) {
  const bool refill = s.cfg.dynamic_sampling == "refill";
  const auto target = static_cast<size_t>(s.GA * s.B);
  const auto t_start = Clock::now();
  std::vector<ScoredGroup> kept;
  DynamicSamplingStats& ds = s.dynamic_stats;
  ds = DynamicSamplingStats{};
  s.ro.step = step;
  for (;;) {
    s.ro.gen_batch = ds.gen_batches;
    for (std::vector<PromptExample>& ex : next_round_examples(s)) {
      Rollout r = make_rollout(s.policy, *s.tok, ex, s.ro, s.pad_id, s.gen);
      ds.generated_tokens += r.generated_tokens;
      const RewardResult rw = score_rollout(s, r);
      const std::vector<bool> spread = groups_with_reward_spread(rw.total, s.G);
      for (int64_t b = 0; b < r.num_prompts; ++b) {
        ds.groups += 1;
        if (!spread[static_cast<size_t>(b)]) continue;
        ds.kept += 1;
        if (kept.size() < target)
          kept.push_back(group_of(std::move(ex[static_cast<size_t>(b)]), r, rw, b, s.G, s.ro.sampling.eos_token_ids));
      }
    }
    ds.gen_batches += 1;
    if (!refill) break;
    at::Tensor short_ranks = at::tensor({kept.size() < target ? 1.0 : 0.0}, at::kDouble);
    if (s.pg->is_distributed()) s.pg->allreduce(short_ranks);
    if (short_ranks.item<double>() == 0.0) break;
    if (s.cfg.max_num_gen_batches > 0 && ds.gen_batches >= s.cfg.max_num_gen_batches) {
      if (s.is_main)
        spdlog::warn("step {}: dynamic_sampling refill: {} generation batches (max_num_gen_batches) gave {} of "
                     "the {} groups with reward spread on rank 0; training on those",
                     step + 1, ds.gen_batches, kept.size(), target);
      break;
    }
  }
  s.ro.gen_batch = 0;
  std::vector<MicroBatch> round;
  for (size_t k0 = 0; k0 < kept.size(); k0 += static_cast<size_t>(s.B)) {
    const size_t k1 = std::min(kept.size(), k0 + static_cast<size_t>(s.B));
    std::vector<PromptExample> exs;
    std::vector<PromptCompletions> cs;
    MicroBatch mb;
    mb.rewards.per_func.resize(s.cfg.reward_funcs.size());
    for (size_t k = k0; k < k1; ++k) {
      exs.push_back(kept[k].ex);
      cs.push_back(kept[k].c);
      mb.rewards.total.insert(mb.rewards.total.end(), kept[k].total.begin(), kept[k].total.end());
      for (size_t f = 0; f < kept[k].per_func.size() && f < mb.rewards.per_func.size(); ++f)
        mb.rewards.per_func[f].insert(mb.rewards.per_func[f].end(), kept[k].per_func[f].begin(),
                                      kept[k].per_func[f].end());
    }
    const auto t0 = Clock::now();
    mb.r = assemble_rollout(*s.tok, exs, cs, s.ro, s.pad_id);
    finish_micro_batch(s, mb, t0);
    round.push_back(std::move(mb));
  }
  // The throughput counts every generated group, the dropped ones too: the first micro-batch carries the
  // generation time and tokens that the kept micro-batches' own figures leave out.
  double parts_s = 0;
  int64_t parts_tokens = 0;
  for (const MicroBatch& mb : round) {
    parts_s += mb.rollout_s;
    parts_tokens += mb.r.generated_tokens;
  }
  if (!round.empty()) {
    round.front().rollout_s += std::max(0.0, seconds_since(t_start) - parts_s);
    round.front().r.generated_tokens += std::max<int64_t>(0, ds.generated_tokens - parts_tokens);
  }
  return round;
}

}  // namespace

std::vector<MicroBatch> generation_round(TrainSession& s, int64_t step) {
  if (!s.sft && s.cfg.dynamic_sampling != "none") return dynamic_sampling_round(s, step);
  std::vector<MicroBatch> round;
  for (std::vector<PromptExample>& ex : next_round_examples(s)) {
    MicroBatch mb;
    auto t0 = Clock::now();
    if (s.sft) {
      mb.r = make_sft_batch(*s.tok, ex, s.cfg.max_prompt_length, s.eos_id, s.pad_id);
      to_device(mb.r, s.device);
      round.push_back(std::move(mb));
      continue;
    }
    s.ro.step = step;
    mb.r = make_rollout(s.policy, *s.tok, ex, s.ro, s.pad_id, s.gen);
    mb.rewards = score_rollout(s, mb.r);
    finish_micro_batch(s, mb, t0);
    round.push_back(std::move(mb));
  }
  return round;
}

// "" when every rank's step was finite; else what went wrong where, the same decision on every
// rank. The loss is per rank ("loss is nan (micro-batch 1 of 2) on rank(s) 1"; one allreduce of a
// per-rank flag when distributed); the gradient norm is taken after the gradient allreduce, so it
// is the same on every rank (a NaN loss on one rank makes every rank's norm NaN: the loss is named
// first).
std::string nonfinite_verdict(dist::ProcessGroup& pg, const std::string& local_loss_bad,
                              double grad_norm) {
  std::string ranks;
  if (!pg.is_distributed()) {
    if (!local_loss_bad.empty()) ranks = "0";
  } else {
    at::Tensor flags = at::zeros({pg.world_size()}, at::kFloat);
    if (!local_loss_bad.empty()) flags[pg.rank()] = 1.0f;
    pg.allreduce(flags);
    for (int r = 0; r < pg.world_size(); ++r)
      if (flags[r].item<float>() > 0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!ranks.empty())
    return (local_loss_bad.empty() ? std::string("the loss is non-finite") : local_loss_bad) +
           " on rank(s) " + ranks;
  if (!std::isfinite(grad_norm)) return "gradient norm is " + std::to_string(grad_norm);
  return "";
}

at::Tensor gathered_high_entropy_mask(dist::ProcessGroup& pg, const at::Tensor& entropies, const at::Tensor& mask,
                                     double top_entropy_quantile) {
  at::Tensor local = entropies.masked_select(mask.to(at::kBool)).to(at::kCPU).to(at::kFloat);  // [n_valid]
  at::Tensor pool = local;
  if (pg.is_distributed()) {
    // TRL gathers every rank's non-pad entropies (padded with a negative sentinel, as entropies
    // are >= 0) and takes one quantile over them all; every rank joins, even with no tokens.
    int64_t max_len = 0;
    for (const at::Tensor& n : pg.allgather(at::tensor({static_cast<double>(local.numel())}, at::kDouble)))
      max_len = std::max(max_len, static_cast<int64_t>(n.item<double>()));
    at::Tensor padded = at::full({std::max<int64_t>(max_len, 1)}, -1.0, at::kFloat);
    if (local.numel() > 0) padded.slice(0, 0, local.numel()).copy_(local);
    at::Tensor all = at::cat(pg.allgather(padded));
    pool = all.masked_select(all >= 0);
  }
  return high_entropy_mask(entropies, mask, 1.0 - top_entropy_quantile, pool.to(entropies.device()));
}

namespace {
// top_entropy_quantile < 1: the micro-batch's mask; adds its mean token entropy to m.
at::Tensor top_entropy_mask(dist::ProcessGroup& pg, const at::Tensor& logits, const at::Tensor& mask,
                            double top_entropy_quantile, StepMetrics& m) {
  at::Tensor entropies = entropy_from_logits(logits);  // [N, T] fp32, no grad
  const at::Tensor valid = mask.to(at::kBool);
  const double tokens = static_cast<double>(valid.sum().item<int64_t>());
  m.entropy += tokens > 0 ? entropies.masked_select(valid).sum().item<double>() / tokens : 0.0;
  m.n_entropy += 1;
  return gathered_high_entropy_mask(pg, entropies, mask, top_entropy_quantile);
}
}  // namespace

StepMetrics update(TrainSession& s, std::vector<MicroBatch>& round, int64_t step) {
  StepMetrics m;
  std::string bad;  // this rank's first non-finite loss of the step
  m.per_func_sum.assign(s.cfg.reward_funcs.size(), 0.0);
  if (s.loss_type == LossType::dapo) {
    double items = 0;
    for (const auto& mb : round) items += mb.r.completion_mask.sum().item<double>();
    if (s.pg->is_distributed()) {
      // TRL: the global token count, scaled by the world size because the ranks' grads are
      // averaged.
      at::Tensor t = at::tensor({items}, at::kDouble);
      s.pg->allreduce(t);
      items = t.item<double>() / static_cast<double>(s.world);
    }
    s.plo.num_items_in_batch = items;
  }
  // dynamic_sampling: the round holds as many micro-batches as it kept (at most GA, maybe none), and
  // their mean is the loss (the dropped groups are out of it); dapo's token normaliser spans the round.
  const bool dynamic = !s.sft && s.cfg.dynamic_sampling != "none";
  if (dynamic) m.dynamic = s.dynamic_stats;
  const double divisor = dynamic && s.divisor != 1 ? static_cast<double>(std::max<size_t>(round.size(), 1))
                                                   : static_cast<double>(s.divisor);
  for (size_t k = 0; k < round.size(); ++k) {
    MicroBatch& mb = round[k];
    // DDP no_sync: only the last micro-step's backward allreduces (the accumulated) grads.
    auto no_sync =
        s.sync && k + 1 < round.size() ? s.sync->no_sync() : dist::GradSync::NoSyncGuard{};
    const auto t0 = Clock::now();
    at::Tensor logits = completion_logits(s.policy, mb.r);  // [N, T, V]
    at::Tensor logps = selective_log_softmax(logits, mb.r.completion_ids).to(at::kFloat);
    at::Tensor entropy_mask;
    if (!s.sft && s.cfg.top_entropy_quantile < 1.0) {
      entropy_mask = top_entropy_mask(*s.pg, logits, mb.r.completion_mask, s.cfg.top_entropy_quantile,
                                      m);
    }
    logits = at::Tensor();  // the graph keeps what backward needs
    at::Tensor loss;
    if (s.sft) {
      loss = sft_loss(logps, mb.r.completion_mask);
      m.completion_length += mb.r.completion_mask.sum(1).to(at::kDouble).mean().item<double>();
    } else {
      PolicyLossOutput out = grpo_policy_loss(logps, mb.old_logps, mb.ref_logps, mb.advantages,
                                              mb.r.completion_mask, s.plo, entropy_mask);
      loss = out.loss;
      m.kl += out.kl.item<double>();
      m.clip += out.clip_ratio_region.item<double>();
      m.completion_length += out.completion_length.item<double>();
      m.reward_std += mb.reward_std;
      for (size_t f = 0; f < mb.rewards.per_func.size(); ++f)
        for (double v : mb.rewards.per_func[f]) m.per_func_sum[f] += std::isnan(v) ? 0.0 : v;
      for (double v : mb.rewards.total) m.reward_sum += std::isnan(v) ? 0.0 : v;
      m.n_completions += static_cast<double>(mb.rewards.total.size());
      m.n_prompts += static_cast<double>(mb.r.num_prompts);
    }
    if (s.fault_nonfinite_step == step + 1 &&
        (s.fault_nonfinite_rank < 0 || s.fault_nonfinite_rank == s.pg->rank()))
      loss = loss * std::numeric_limits<double>::quiet_NaN();  // MEDR1_FAULT_NONFINITE_LOSS (tests)
    const double loss_v = loss.item<double>();
    // A non-finite loss still goes through backward: under data parallelism every rank must reach
    // the same gradient allreduces; the decision below is taken by all ranks together.
    if (!std::isfinite(loss_v) && bad.empty())
      bad = "loss is " + std::to_string(loss_v) + " (micro-batch " + std::to_string(k + 1) +
            " of " + std::to_string(round.size()) + ")";
    at::Tensor scaled = loss / divisor;
    if (s.sync && k + 1 == round.size()) s.sync->prepare_for_backward(scaled);
    scaled.backward();
    m.loss += loss_v / divisor;
    m.n_micro += 1;
    m.gen_tokens += static_cast<double>(mb.r.generated_tokens);
    m.rollout_s += mb.rollout_s;
    m.train_tokens += static_cast<double>(mb.r.completion_ids.size(0) *
                                          (mb.r.prompt_ids.size(1) + mb.r.completion_ids.size(1)));
    m.train_s += seconds_since(t0);
  }
  if (s.sync) s.sync->finalize();  // .grad = mean over ranks
  if (s.cfg.bf16) {
    for (size_t i = 0; i < s.master.size(); ++i) {
      const at::Tensor& g = s.run_params[i].second.grad();
      s.master[i].second.mutable_grad() = g.defined() ? g.to(at::kFloat) : at::Tensor();
    }
  }
  m.grad_norm = s.cfg.max_grad_norm > 0 ? clip_grad_norm_(s.master_list, s.cfg.max_grad_norm)
                                        : clip_grad_norm_(s.master_list, 1e30);
  const std::string verdict = nonfinite_verdict(*s.pg, bad, m.grad_norm);
  if (!verdict.empty()) {
    MEDR1_CHECK(s.cfg.skip_nonfinite_steps, "step ", step + 1, ": ", verdict,
                "; stopped before the optimizer step, so no non-finite value reached the weights "
                "or a checkpoint (the "
                "last checkpoint in ",
                s.cfg.output_dir, " is intact; --skip_nonfinite_steps true skips such steps)");
    if (s.is_main)
      spdlog::warn("step {}: {}; optimizer update skipped (skip_nonfinite_steps)", step + 1,
                   verdict);
    s.opt->zero_grad();
    for (auto& [n, p] : s.run_params) p.mutable_grad() = at::Tensor();
    m.skipped = true;
    m.loss = 0.0;  // logged as 0 with nonfinite_step_skipped 1 (JSON has no NaN; resume re-reads
                   // the log)
    m.grad_norm = 0.0;
    s.st.global_step += 1;
    s.st.sampler = s.sampler->state();
    return m;
  }
  s.opt->step();
  s.opt->zero_grad();
  if (s.cfg.bf16) {
    at::NoGradGuard ng;
    for (size_t i = 0; i < s.master.size(); ++i) {
      if (!s.master[i].second.requires_grad()) continue;  // frozen: master is the run parameter
      s.run_params[i].second.copy_(s.master[i].second);
      s.run_params[i].second.mutable_grad() = at::Tensor();
    }
  }
  s.st.global_step += 1;
  s.st.sampler = s.sampler->state();
  return m;
}

double epoch_progress(const TrainSession& s) {
  const dist::SamplerState pos = s.sampler->state();
  return static_cast<double>(pos.epoch) +
         static_cast<double>(pos.position) / static_cast<double>(s.sampler->num_samples());
}

nlohmann::json metrics_record(const StepMetrics& m, const std::vector<std::string>& reward_funcs,
                              bool sft, int64_t step, double epoch, double lr, double step_time) {
  const double nm = std::max(1.0, m.n_micro);
  nlohmann::json rec;
  rec["step"] = step;
  rec["epoch"] = epoch;
  rec["loss"] = m.loss;
  if (!sft) {
    const double nc = std::max(1.0, m.n_completions);
    for (size_t f = 0; f < reward_funcs.size(); ++f)
      rec["rewards/" + reward_funcs[f]] = m.per_func_sum[f] / nc;
    rec["reward"] = m.reward_sum / nc;
    rec["reward_std"] = m.reward_std / nm;
    rec["kl"] = m.kl / nm;
    rec["clip_ratio"] = m.clip / nm;
  }
  rec["completion_length"] = m.completion_length / nm;
  if (m.n_entropy > 0) rec["entropy"] = m.entropy / m.n_entropy;
  rec["learning_rate"] = lr;
  rec["grad_norm"] = m.grad_norm;
  if (m.skipped) rec["nonfinite_step_skipped"] = 1.0;
  if (m.dynamic.gen_batches > 0) {
    rec["dynamic_sampling/gen_batches"] = static_cast<double>(m.dynamic.gen_batches);
    rec["dynamic_sampling/kept_group_ratio"] =
        m.dynamic.groups > 0 ? static_cast<double>(m.dynamic.kept) / static_cast<double>(m.dynamic.groups) : 0.0;
    rec["dynamic_sampling/groups_trained"] = m.n_prompts;
  }
  rec["step_time"] = step_time;
  rec["rollout_tokens_per_s"] = m.rollout_s > 0 ? m.gen_tokens / m.rollout_s : 0.0;
  rec["train_tokens_per_s"] = m.train_s > 0 ? m.train_tokens / m.train_s : 0.0;
  return rec;
}

void average_over_ranks(dist::ProcessGroup& pg, nlohmann::json& rec) {
  if (!pg.is_distributed()) return;
  // Every rank holds the same keys; the logged value is the mean over ranks (HF Trainer's gather +
  // mean); throughputs are per rank, so the job's is world x their mean.
  std::map<std::string, double> local;
  for (auto it = rec.begin(); it != rec.end(); ++it)
    if (it.key() != "step" && it.key() != "epoch" && it.key() != "learning_rate")
      local[it.key()] = it->get<double>();
  for (const auto& [k, v] : dist::allreduce_mean(pg, local)) rec[k] = v;
  const double world = static_cast<double>(pg.world_size());
  rec["rollout_tokens_per_s"] = rec["rollout_tokens_per_s"].get<double>() * world;
  rec["train_tokens_per_s"] = rec["train_tokens_per_s"].get<double>() * world;
}

std::vector<nlohmann::json> completion_rows(const std::vector<MicroBatch>& round,
                                            const std::vector<data::Record>& records,
                                            int64_t step) {
  std::vector<nlohmann::json> rows;
  for (const MicroBatch& mb : round) {
    const size_t n = mb.rewards.total.size();
    if (n == 0 || mb.r.num_prompts == 0) continue;  // SFT: no sampled completions
    const size_t g = n / static_cast<size_t>(mb.r.num_prompts);
    std::vector<float> adv;
    if (mb.advantages.defined()) {
      const at::Tensor a = mb.advantages.detach().to(at::kCPU, at::kFloat).contiguous();
      adv.assign(a.data_ptr<float>(), a.data_ptr<float>() + a.numel());
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t p = i / g;
      const int64_t idx = p < mb.r.dataset_indices.size() ? mb.r.dataset_indices[p] : -1;
      nlohmann::json row;
      row["step"] = step;
      row["prompt_index"] = idx;
      row["generation"] = static_cast<int64_t>(i % g);
      if (idx >= 0 && static_cast<size_t>(idx) < records.size()) {
        const data::Record& rec = records[static_cast<size_t>(idx)];
        row["image"] = rec.image;
        row["problem"] = rec.problem;
      }
      row["solution"] = i < mb.r.solutions.size() ? mb.r.solutions[i] : std::string();
      row["completion"] = i < mb.r.completions.size() ? mb.r.completions[i] : std::string();
      nlohmann::json rw = nlohmann::json::object();
      for (size_t f = 0; f < mb.rewards.names.size() && f < mb.rewards.per_func.size(); ++f)
        rw[mb.rewards.names[f]] = mb.rewards.per_func[f][i];
      row["rewards"] = rw;
      row["reward"] = mb.rewards.total[i];
      row["advantage"] = i < adv.size() ? nlohmann::json(adv[i]) : nlohmann::json(nullptr);
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

void mix_into_reference(const NamedTensors& ref, const NamedTensors& policy, double alpha) {
  MEDR1_CHECK(ref.size() == policy.size(), "sync_ref_model: reference has ", ref.size(), " parameters, policy ",
              policy.size());
  at::NoGradGuard ng;
  for (size_t i = 0; i < ref.size(); ++i) {
    MEDR1_CHECK(ref[i].first == policy[i].first && ref[i].second.sizes() == policy[i].second.sizes(),
                "sync_ref_model: reference parameter ", ref[i].first, " ", ref[i].second.sizes(),
                " does not match policy parameter ", policy[i].first, " ", policy[i].second.sizes());
    at::Tensor t = ref[i].second;
    t.mul_(1.0 - alpha).add_(policy[i].second.to(t.device(), t.scalar_type()), alpha);
  }
}

bool sync_reference_step(TrainSession& s) {
  if (!s.cfg.sync_ref_model || !s.ref || s.st.global_step % s.cfg.ref_model_sync_steps != 0) return false;
  mix_into_reference(s.ref->named_parameters().pairs(), s.run_params, s.cfg.ref_model_mixup_alpha);
  return true;
}

std::string save_checkpoint_step(TrainSession& s) {
  capture_rng(s.st, s.mt);
  NamedTensors weights = saved_weights(s);
  s.pg->barrier();  // every rank finished the step
  std::string dir;
  NamedTensors ref_weights;
  const bool with_ref = s.cfg.sync_ref_model && s.ref && !s.cfg.save_only_model;
  if (with_ref) ref_weights = s.ref->named_parameters().pairs();
  const nlohmann::json adapter_config = s.lora ? s.lora->peft_config(s.cfg.model_name_or_path) : nlohmann::json();
  if (s.is_main) {
    try {
      dir = save_checkpoint(s.cfg.output_dir, s.st, weights, model::to_json(s.policy->config()),
                            s.cfg.model_name_or_path, s.cfg.save_only_model ? nullptr : s.opt.get(),
                            s.master, to_json(s.cfg), with_ref ? &ref_weights : nullptr,
                            s.lora ? &adapter_config : nullptr);
    } catch (const std::exception& e) {
      // Disk full, quota, I/O error: nothing of this save has its final name (temp folder + atomic commit).
      const std::optional<std::string> last = resolve_resume_dir("latest", s.cfg.output_dir);
      fail("step ", s.st.global_step, ": saving checkpoint-", s.st.global_step, " failed: ", e.what(), "; ",
           last ? "the last complete checkpoint, " + *last + ", is intact (--resume latest continues from it)"
                : std::string("no earlier checkpoint was saved"));
    }
  }
  else
    dir =
        (fs::path(s.cfg.output_dir) / ("checkpoint-" + std::to_string(s.st.global_step))).string();
  s.pg->barrier();  // the checkpoint is committed before any rank goes on (a later failure leaves
                    // it intact)
  return dir;
}

void save_final_model(TrainSession& s) {
  NamedTensors weights = saved_weights(s);
  s.pg->barrier();
  if (s.is_main && s.lora) {  // TRL + PEFT: the final folder is the adapter (medr1-merge-adapter merges it)
    io::write_peft_adapter(s.cfg.output_dir, weights, s.lora->peft_config(s.cfg.model_name_or_path));
    io::copy_hf_side_files(s.cfg.model_name_or_path, s.cfg.output_dir);
  } else if (s.is_main) {
    io::write_json_atomic((fs::path(s.cfg.output_dir) / "config.json").string(),
                          model::to_json(s.policy->config()));
    io::save_safetensors_sharded(s.cfg.output_dir, weights);
    io::copy_hf_side_files(s.cfg.model_name_or_path, s.cfg.output_dir);
  }
  s.pg->barrier();  // the final model is on disk when train() returns on any rank
}

}  // namespace medr1::rl

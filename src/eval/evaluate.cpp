// medr1-eval engine (evaluate.h): splits x attacks x templates through run_split, batched greedy generation,
// the attack per item before generation, data-parallel sharding with a rank-0 merge, result JSONs and the
// summary/report/heatmap of eval/report.h.
#include "medr1/eval/evaluate.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/data/hf_dataset.h"
#include "medr1/data/jsonl_writer.h"
#include "medr1/data/prompts.h"
#include "medr1/dist/process_group.h"
#include "medr1/eval/metrics.h"
#include "medr1/io/output_lock.h"
#include "medr1/eval/runner.h"
#include "medr1/generate/generate.h"
#include "medr1/model/attention.h"
#include "medr1/model/qwen2_vl_config.h"
#include "medr1/model/weight_loader.h"
#include "medr1/tokenizer/chat_template.h"
#include "medr1/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace medr1::eval {

std::vector<data::SplitFile> splits_from_args(const std::string& split_file, const std::string& splits_dir,
                                              const std::string& evaluation_type,
                                              const std::vector<std::string>& names) {
  MEDR1_CHECK(split_file.empty() != splits_dir.empty(), "give exactly one of --split FILE and --splits-dir DIR");
  if (!split_file.empty()) {
    MEDR1_CHECK(fs::is_regular_file(split_file) || data::is_hf_dataset(split_file), "--split ", split_file,
                ": no such file (nor a `datasets` folder)");
    data::SplitFile s;
    s.stage = "test";
    s.path = split_file;
    s.name = data::split_name_from_filename(fs::path(split_file).filename().string(), "test");
    return {s};
  }
  return data::list_split_files(splits_dir, data::parse_evaluation_type(evaluation_type), "test", names);
}

std::string build_eval_prompt(std::string_view problem, const std::string& template_text, bool with_image) {
  tokenizer::Message user;
  user.role = "user";
  if (with_image) user.content.push_back(tokenizer::ContentPart::make_image());
  user.content.push_back(tokenizer::ContentPart::make_text(data::format_question(template_text, problem)));
  return tokenizer::apply_chat_template({user}, /*add_generation_prompt=*/true);
}

std::string template_label(const std::string& name) {
  if (name == "think" || name == "nothink" || name == "zeroshot" || name == "custom") return name;
  fail("--template '", name, "': expected think, nothink, zeroshot or custom");
}

namespace {

struct Engine {
  model::Qwen2VLForConditionalGeneration model{nullptr};
  std::optional<tokenizer::Tokenizer> tok;
  vision::ImageProcessorConfig ipc;
  generate::SamplingParams sampling;
  int64_t pad_id = 0;
};

Engine load_engine(const EvalOptions& o) {
  Engine e;
  const std::string tok_dir = o.tokenizer_dir.empty() ? o.model_dir : o.tokenizer_dir;
  MEDR1_CHECK(fs::exists(fs::path(tok_dir) / "tokenizer.json"), tok_dir,
              ": no tokenizer.json (give --tokenizer DIR for a checkpoint saved without one)");
  e.tok = tokenizer::Tokenizer::from_dir(tok_dir);
  std::optional<at::ScalarType> dt;
  if (!o.dtype.empty()) dt = model::dtype_from_name(o.dtype);
  model::use_attn_implementation(o.attn_implementation, at::Device(at::kCPU));  // medr1-eval runs on the CPU
  e.model = model::load_qwen2_vl(o.model_dir, dt);
  e.model->eval();
  for (auto& p : e.model->parameters()) p.set_requires_grad(false);  // attacks need image gradients only

  if (auto p = fs::path(o.model_dir) / "preprocessor_config.json"; fs::exists(p))
    e.ipc = vision::load_image_processor_config(p.string());
  e.ipc.min_pixels = o.min_pixels;
  e.ipc.max_pixels = o.max_pixels;

  // transformers: the checkpoint's generation_config.json supplies the defaults (repetition_penalty, eos ids);
  // Med-R1's test scripts pass max_new_tokens=256, do_sample=False.
  if (auto p = fs::path(o.model_dir) / "generation_config.json"; fs::exists(p))
    e.sampling = generate::sampling_from_generation_config(model::load_generation_config(p.string()));
  e.sampling.do_sample = false;
  e.sampling.max_new_tokens = o.max_new_tokens;
  e.sampling.num_return_sequences = 1;
  if (e.sampling.eos_token_ids.empty() && e.tok->eos_token_id() >= 0)
    e.sampling.eos_token_ids.push_back(e.tok->eos_token_id());
  e.pad_id = e.tok->pad_token_id() >= 0 ? e.tok->pad_token_id()
             : e.sampling.eos_token_ids.empty() ? e.sampling.pad_token_id
                                                : e.sampling.eos_token_ids.front();
  return e;
}

struct Prepared {
  std::string prompt;
  std::vector<vision::ProcessedImage> images;
};

// Greedy generation of prepared prompts in one left-padded batch; decoded new tokens per prompt.
std::vector<std::string> generate_batch(Engine& e, const std::vector<Prepared>& items) {
  std::vector<std::string> texts;
  std::vector<std::vector<vision::ProcessedImage>> images;
  bool any_image = false;
  for (const Prepared& p : items) {
    texts.push_back(p.prompt);
    images.push_back(p.images);
    any_image = any_image || !p.images.empty();
  }
  c10::NoGradGuard ng;
  if (!any_image) images.clear();
  const generate::PromptBatch pb = generate::build_prompt_batch(*e.tok, texts, images, e.pad_id);
  const generate::GenerationOutput out = generate::generate(e.model, pb, e.sampling);
  const at::Tensor toks = out.new_tokens.contiguous();
  std::vector<std::string> res;
  for (size_t b = 0; b < items.size(); ++b) {
    const int64_t n = out.lengths[static_cast<int64_t>(b)].item<int64_t>();
    const int64_t* row = toks.data_ptr<int64_t>() + static_cast<int64_t>(b) * toks.size(1);
    std::vector<int32_t> ids(row, row + n);
    // Med-R1: batch_decode(skip_special_tokens=True) of the trimmed new tokens.
    res.push_back(e.tok->decode(ids, /*skip_special_tokens=*/true));
  }
  return res;
}

// Item folders that runs with another world size leave under <output_dir>/items: items/ itself (one
// process) and items/rank<r>-of-<w>/; `own` (this rank's folder) excluded.
std::vector<fs::path> other_item_dirs(const fs::path& root, const fs::path& own) {
  std::vector<fs::path> dirs;
  if (!fs::is_directory(root)) return dirs;
  if (root != own) dirs.push_back(root);
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("rank", 0) == 0 && n.find("-of-") != std::string::npos && e.path() != own)
      dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// Resume across world sizes: records of `shard` that another layout's `file_name` (item or attack JSONL)
// already holds are appended to this rank's own file, so run_split skips them. The other files are only
// read (complete JSON object lines with an integer index; a torn last line is ignored); returns the number
// of records adopted.
int64_t adopt_done_items(const std::vector<fs::path>& others, const fs::path& own_dir, const std::string& file_name,
                         const std::unordered_set<int64_t>& shard, int fsync_every) {
  std::vector<json> found;
  for (const fs::path& dir : others) {
    std::ifstream in(dir / file_name);
    for (std::string line; in && std::getline(in, line);) {
      if (in.eof()) break;  // no '\n' after it: possibly half written
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("index") || !j["index"].is_number_integer()) continue;
      if (shard.count(j["index"].get<int64_t>()) != 0) found.push_back(std::move(j));
    }
  }
  if (found.empty()) return 0;
  data::JsonlWriterOptions wo;
  wo.fsync_every = fsync_every;
  data::JsonlWriter own((own_dir / file_name).string(), wo);
  int64_t n = 0;
  for (const json& j : found) n += own.write(j) ? 1 : 0;
  own.close();
  return n;
}

}  // namespace

EvalSummary run_evaluation(const EvalOptions& o, dist::ProcessGroup* pg) {
  MEDR1_CHECK(!o.splits.empty(), "medr1-eval: no split files to evaluate");
  MEDR1_CHECK(!o.templates.empty() && !o.attacks.empty(), "medr1-eval: no template or no attack selected");
  MEDR1_CHECK(o.batch_size >= 1, "--batch-size must be >= 1, got ", o.batch_size);
  MEDR1_CHECK(!o.output_dir.empty(), "--output-dir is required");
  const int rank = pg ? pg->rank() : 0;
  const int world = pg ? pg->world_size() : 1;
  const bool main_rank = rank == 0;
  // One writer per output folder: rank 0 holds the lock for the run's life (a refused rank 0 exits, and the
  // launcher stops the other ranks).
  std::optional<io::OutputLock> output_lock;
  if (main_rank) output_lock.emplace(io::lock_output_dir(o.output_dir));

  std::vector<std::pair<std::string, std::string>> templates;  // (label, text)
  for (const std::string& t : o.templates) {
    const std::string label = template_label(t);
    if (label == "custom") {
      MEDR1_CHECK(!o.custom_template.empty(), "--template custom needs --prompt-template TEXT");
      templates.emplace_back(label, data::resolve_template(o.custom_template));
    } else {
      templates.emplace_back(label, data::resolve_template(label));
    }
  }

  Engine e = load_engine(o);
  fs::create_directories(o.output_dir);
  const fs::path items_dir = world <= 1 ? fs::path(o.output_dir) / "items"
                                        : fs::path(o.output_dir) / "items" /
                                              ("rank" + std::to_string(rank) + "-of-" + std::to_string(world));

  EvalSummary summary;
  EvalReport& report = summary.report;
  const fs::path summary_path = fs::path(o.output_dir) / "summary.json";
  if (main_rank && o.resume && fs::exists(summary_path)) {
    try {  // keep cells of earlier runs (other settings); this run's cells replace theirs
      std::ifstream in(summary_path);
      report = EvalReport::from_json(json::parse(in), summary_path.string());
    } catch (const std::exception& ex) {
      spdlog::warn("{}: not reusable ({}); starting a new summary", summary_path.string(), ex.what());
      report = EvalReport{};
    }
  }
  std::vector<std::string> order;
  for (AttackType a : o.attacks)
    for (const auto& t : templates) order.push_back(std::string(to_string(a)) + "/" + t.first);
  report.set_setting_order(order);
  json& meta = report.meta;
  meta["model_path"] = o.model_dir;
  meta["dataset_root"] = o.dataset_root;
  meta["epsilon"] = o.attack.epsilon;
  meta["pgd_alpha"] = o.attack.alpha;
  meta["pgd_iters"] = o.attack.iters;
  meta["pgd_random_start"] = o.attack.random_start;
  meta["attack_loss"] = to_string(o.attack.loss);
  meta["quantized_adversarial"] = o.quantize_adversarial;
  meta["max_new_tokens"] = o.max_new_tokens;
  meta["repetition_penalty"] = e.sampling.repetition_penalty;
  meta["min_pixels"] = o.min_pixels;
  meta["max_pixels"] = o.max_pixels;
  meta["world_size"] = world;

  const int budget = static_cast<int>(std::floor(o.attack.epsilon * 255.0 + 1e-6));
  for (const data::SplitFile& split : o.splits) {
    std::vector<data::Record> records;
    std::string load_error;
    try {
      records = data::load_split(split, o.dataset_root);
    } catch (const std::exception& ex) {
      load_error = ex.what();
      spdlog::error("{}: {}", split.path, load_error);
    }
    const size_t num_in_file = records.size();
    if (o.limit > 0 && static_cast<int64_t>(records.size()) > o.limit) records.resize(static_cast<size_t>(o.limit));
    std::vector<data::Record> shard;
    std::unordered_set<int64_t> shard_indices;
    for (size_t i = 0; i < records.size(); ++i) {
      if (static_cast<int>(i % static_cast<size_t>(world)) != rank) continue;
      shard.push_back(records[i]);
      shard_indices.insert(records[i].index);
    }

    for (AttackType attack : o.attacks) {
      for (const auto& label_tmpl : templates) {
        // Named references, not a structured binding: the lambdas below capture tmpl (clang < 16
        // cannot capture bindings; the fuzz build uses clang-14).
        const auto& label = label_tmpl.first;
        const auto& tmpl = label_tmpl.second;
        const std::string setting = std::string(to_string(attack)) + "/" + label;
        const std::string file = result_file_name(split.name, setting);
        const std::string stem = file.substr(0, file.size() - 5);
        if (o.resume) {  // items an earlier run with another world size finished are not generated again
          const std::vector<fs::path> others = other_item_dirs(fs::path(o.output_dir) / "items", items_dir);
          const int64_t n = adopt_done_items(others, items_dir, stem + ".jsonl", shard_indices, 8);
          if (attack != AttackType::clean)
            adopt_done_items(others, items_dir, stem + ".attack.jsonl", shard_indices, 8);
          if (n > 0) spdlog::info("{} {}: {} items resumed from a run with another world size", split.name, setting, n);
        }
        // Per-item attack figures (losses, L∞) beside the item JSONL; resumable the same way.
        std::optional<data::JsonlWriter> attack_log;
        if (attack != AttackType::clean) {
          data::JsonlWriterOptions wo;
          wo.resume = o.resume;
          wo.fsync_every = 0;
          attack_log.emplace((items_dir / (stem + ".attack.jsonl")).string(), wo);
        }

        // Prepares one record: the prompt, the image, and for an attack the (quantised) adversarial image.
        auto prepare = [&](const data::Record& rec) {
          Prepared p;
          const bool with_image = !rec.image.empty();
          p.prompt = build_eval_prompt(rec.problem, tmpl, with_image);
          if (!with_image) return p;  // text-only record: nothing to attack
          // A `datasets` folder embeds the encoded image (Record::image_bytes); JSON records name a file.
          vision::ProcessedImage img =
              rec.image_bytes ? vision::preprocess(vision::decode_image_rgb(rec.image_bytes->data(),
                                                                            rec.image_bytes->size(), rec.image),
                                                   e.ipc, rec.image)
                              : vision::preprocess_file(rec.image_path, e.ipc);
          if (attack != AttackType::clean) {
            AttackOptions ao = o.attack;
            ao.type = attack;
            ao.seed = o.attack.seed ^ (static_cast<uint64_t>(rec.index) * 0x9E3779B97F4A7C15ull);
            const std::string target = ao.loss == AttackLoss::answer ? rec.solution.value_or("") : "";
            const AttackExample ex = make_attack_example(*e.tok, p.prompt, img, target);
            const at::Tensor clean01 = vision::rgb_to_chw01(img.resized, e.ipc.rescale_factor);
            const AttackResult ar = run_attack(e.model, clean01, e.ipc, ex, ao);
            json rec_j = {{"index", rec.index}, {"clean_loss", ar.clean_loss}, {"adversarial_loss", ar.adversarial_loss},
                          {"linf", ar.linf}, {"forwards", ar.forwards}, {"backwards", ar.backwards}};
            vision::RgbImage adv_u8;
            vision::ProcessedImage adv;
            if (o.quantize_adversarial) {
              adv_u8 = quantize_adversarial(ar.adversarial, img.resized, ao.epsilon);
              const int64_t d = max_abs_diff_u8(adv_u8, img.resized);
              MEDR1_CHECK(d <= budget, "adversarial image leaves the eps-ball: ", d, " > ", budget, " grey levels");
              rec_j["linf_u8"] = d;
              adv = processed_from_resized(adv_u8, e.ipc);
            } else {
              adv_u8 = chw01_to_rgb(ar.adversarial);
              adv.merge_size = e.ipc.merge_size;
              adv.resized = adv_u8;
              adv.grid_thw = img.grid_thw;
              adv.pixel_values = vision::normalize_and_patchify(ar.adversarial, e.ipc).contiguous();
            }
            attack_log->write(rec_j);
            if (rec.file_index < o.save_images) {
              const fs::path dir = fs::path(o.output_dir) / "images" / stem;
              fs::create_directories(dir);
              const std::string base = (dir / std::to_string(rec.index)).string();
              write_png(base + "_clean.png", img.resized);
              write_png(base + "_adv.png", adv_u8);
              write_png(base + "_diff.png",
                        difference_image(adv_u8, img.resized, std::max(1, 255 / std::max(1, budget))));
            }
            img = std::move(adv);
          }
          p.images.push_back(std::move(img));
          return p;
        };
        // A record that fails to prepare makes the batch throw; run_split then retries record by record,
        // so only that record becomes an error item.
        GenerateFn gen = [&](const std::vector<const data::Record*>& batch) {
          std::vector<Prepared> items;
          items.reserve(batch.size());
          for (const data::Record* r : batch) items.push_back(prepare(*r));
          return generate_batch(e, items);
        };

        SplitRunOptions ro;
        ro.output_dir = items_dir.string();
        ro.split_type = split.type;
        ro.setting = setting;
        ro.batch_size = static_cast<int>(o.batch_size);
        ro.fsync_every = 8;
        ro.resume = o.resume;
        ro.show_progress = o.progress && main_rank;
        RunStats st;
        st.split = split.name;
        st.setting = setting;
        const auto t0 = std::chrono::steady_clock::now();
        const SplitRunResult rr = run_split(split.name, shard, gen, ro);
        st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        st.items = rr.n_generated;
        if (attack_log) attack_log->close();
        if (st.items > 0)
          spdlog::info("{} {}: {} items in {:.1f} s ({:.3f} items/s) on rank {}", split.name, setting, st.items,
                       st.seconds, st.items_per_s(), rank);
        if (pg) pg->barrier();
        if (!main_rank) {
          summary.stats.push_back(st);
          continue;
        }

        // Rank 0 rebuilds the split's result from every rank's JSONL.
        SplitMetrics m(split.name, split.type, setting);
        double sum_clean = 0, sum_adv = 0;
        int64_t n_loss = 0;
        for (int r = 0; r < world; ++r) {
          const fs::path dir = world <= 1 ? items_dir
                                          : fs::path(o.output_dir) / "items" /
                                                ("rank" + std::to_string(r) + "-of-" + std::to_string(world));
          const fs::path items = dir / (stem + ".jsonl");
          if (fs::exists(items)) {
            data::JsonlWriter reader(items.string());
            m.add_json_items(reader.existing(), items.string());
          }
          const fs::path alog = dir / (stem + ".attack.jsonl");
          if (fs::exists(alog)) {
            data::JsonlWriter reader(alog.string());
            for (const json& j : reader.existing()) {
              sum_clean += j.value("clean_loss", 0.0);
              sum_adv += j.value("adversarial_loss", 0.0);
              ++n_loss;
            }
          }
        }
        st.errors = m.num_errors;
        summary.stats.push_back(st);
        json rmeta = {{"model_path", o.model_dir},
                      {"test_data_path", split.path},
                      {"attack_type", to_string(attack)},
                      {"template", label},
                      {"epsilon", o.attack.epsilon},
                      {"pgd_alpha", o.attack.alpha},
                      {"pgd_iters", o.attack.iters},
                      {"pgd_random_start", o.attack.random_start},
                      {"attack_loss", to_string(o.attack.loss)},
                      {"quantized_adversarial", o.quantize_adversarial},
                      {"max_new_tokens", o.max_new_tokens},
                      {"num_records_in_file", num_in_file},
                      {"num_records_evaluated", records.size()}};
        if (!load_error.empty()) rmeta["load_error"] = load_error;
        if (n_loss > 0) {
          rmeta["mean_attack_clean_loss"] = sum_clean / static_cast<double>(n_loss);
          rmeta["mean_attack_adversarial_loss"] = sum_adv / static_cast<double>(n_loss);
        }
        if (st.items > 0 && world == 1) rmeta["items_per_s"] = st.items_per_s();
        const std::string out_path = (fs::path(o.output_dir) / file).string();
        write_json_atomic(out_path, m.to_json(rmeta));
        report.add(summarize(m, out_path));
        report.write_all(o.output_dir);
      }
    }
  }
  if (main_rank) report.write_all(o.output_dir);
  return summary;
}

}  // namespace medr1::eval

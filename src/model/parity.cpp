// Parity harness against the transformers v4.49.0 goldens (see include/medr1/model/parity.h).
#include "medr1/model/parity.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/model/weight_loader.h"
#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

namespace medr1::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double kPixelTol = 1e-6;   // pixel_values abs
constexpr double kActRelTol = 1e-5;  // vision activations, hidden states: L2 relative
constexpr double kLogitTol = 1e-4;   // logits abs

struct SetCtx {
  std::string dir;
  json goldens;
  std::shared_ptr<io::SafetensorsFile> gold;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  std::optional<vision::ImageProcessorConfig> proc;
  Qwen2VLForConditionalGeneration model{nullptr};

  bool has(const std::string& name) const { return gold->contains(name); }
  at::Tensor get(const std::string& name) const { return gold->tensor(name).clone(); }
  const vision::ImageProcessorConfig& processor() {
    if (!proc) {
      const fs::path p = fs::path(dir) / "preprocessor_config.json";
      proc = fs::exists(p) ? vision::load_image_processor_config(p.string()) : vision::ImageProcessorConfig{};
    }
    return *proc;
  }
  Qwen2VLForConditionalGeneration& get_model() {
    if (!model) {
      model = load_qwen2_vl(dir, dtype);
      model->to(device);
    }
    return model;
  }
};

// Marks `c` failed (error infinite, both shapes in the note) when the shapes differ; true then.
bool shape_mismatch(const at::Tensor& ours, const at::Tensor& ref, TensorCheck& c) {
  if (ours.sizes() == ref.sizes()) return false;
  std::ostringstream os;
  os << "shape " << ours.sizes() << " vs golden " << ref.sizes();
  c.note = os.str();
  c.pass = false;
  c.error = INFINITY;
  return true;
}

// Float comparison; `valid` (bool, broadcastable to leading dims) restricts it to positions with attention 1.
TensorCheck cmp_float(const std::string& name, const at::Tensor& ours_in, const at::Tensor& ref_in, double tol,
                      bool relative, bool applies, const at::Tensor& valid = {}) {
  TensorCheck c;
  c.name = name;
  c.pass_mark = tol;
  c.relative = relative;
  c.applies = applies;
  at::Tensor ours = ours_in.detach().to(at::kCPU, at::kDouble), ref = ref_in.to(at::kCPU, at::kDouble);
  if (shape_mismatch(ours, ref, c)) return c;
  if (valid.defined()) {
    at::Tensor m = valid.to(at::kCPU, at::kBool);
    while (m.dim() < ours.dim()) m = m.unsqueeze(-1);
    m = m.expand_as(ours);
    ours = ours.masked_select(m);
    ref = ref.masked_select(m);
  }
  double err = ours.numel() ? (ours - ref).abs().max().item<double>() : 0.0;
  if (relative && ref.numel()) {
    // Pass criterion: ||ours - ref||_2 / ||ref||_2. The max-based ratio max|d| / max|ref| is reported too: on
    // qwen2_5vl-tiny's normed final hidden state the reference's own float32 noise reaches 8e-6 by that measure
    // (seen by running medr1 in float64), so a 1e-5 mark on it would test noise, not semantics.
    const double ref_max = ref.abs().max().item<double>();
    const double ref_l2 = ref.norm().item<double>();
    std::ostringstream os;
    os << "(max|d|/max|ref| " << std::setprecision(3) << std::scientific << (ref_max > 0 ? err / ref_max : err)
       << ")";
    c.note = os.str();
    err = ref_l2 > 0 ? (ours - ref).norm().item<double>() / ref_l2 : err;
  }
  c.error = err;
  c.pass = !applies || (std::isfinite(err) && err <= tol);
  return c;
}

// Exact comparison of integer tensors (error = number of differing elements).
TensorCheck cmp_exact(const std::string& name, const at::Tensor& ours_in, const at::Tensor& ref_in) {
  TensorCheck c;
  c.name = name;
  c.exact = true;
  at::Tensor ours = ours_in.detach().to(at::kCPU, at::kLong), ref = ref_in.to(at::kCPU, at::kLong);
  if (shape_mismatch(ours, ref, c)) return c;
  c.error = static_cast<double>((ours != ref).sum().item<int64_t>());
  c.pass = c.error == 0;
  return c;
}

at::Tensor ints(const std::vector<int64_t>& v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong));
}

at::Tensor rgb_tensor(const vision::RgbImage& img) {
  return at::from_blob(const_cast<uint8_t*>(img.data.data()), {img.height, img.width, 3}, at::kByte).clone();
}

// preprocess / preprocess_file: the image processor on the case's file with the case's min/max pixels.
void run_preprocess(SetCtx& s, const std::string& name, const json& cj, CaseResult& r) {
  io::JsonCtx ctx{(fs::path(s.dir) / "goldens.json").string(), "cases." + name};
  const std::string rel = io::get<std::string>(cj, "image", ctx);
  const std::string path = (fs::path(s.dir) / rel).string();
  vision::ImageProcessorConfig cfg = s.processor();
  cfg.min_pixels = io::get_or<int64_t>(cj, "min_pixels", ctx, cfg.min_pixels);
  cfg.max_pixels = io::get_or<int64_t>(cj, "max_pixels", ctx, cfg.max_pixels);
  const std::string p = name + ".";

  if (io::has(cj, "error")) {
    // The reference refuses this file: so must we, with a message naming the file.
    TensorCheck c;
    c.name = "error";
    c.exact = true;
    try {
      (void)vision::preprocess_file(path, cfg);
      c.pass = false;
      c.error = 1;
      c.note = "no error raised; reference: " + io::get<std::string>(cj, "error", ctx);
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      c.pass = msg.find(fs::path(rel).filename().string()) != std::string::npos;
      c.error = c.pass ? 0 : 1;
      c.note = c.pass ? "refused: " + msg : "message does not name the file: " + msg;
    }
    r.checks.push_back(c);
    return;
  }

  vision::RgbImage decoded;
  if (s.has(p + "decoded_rgb") || s.has(p + "decoded_rgb_head") || s.has(p + "decoded_rgb_rowsum")) {
    decoded = vision::load_image_rgb(path);
    at::Tensor d = rgb_tensor(decoded);  // [H, W, 3]
    if (s.has(p + "decoded_rgb")) r.checks.push_back(cmp_exact("decoded_rgb", d, s.get(p + "decoded_rgb")));
    if (s.has(p + "decoded_rgb_head")) {
      at::Tensor ref = s.get(p + "decoded_rgb_head");
      r.checks.push_back(cmp_exact("decoded_rgb_head", d.narrow(0, 0, std::min(ref.size(0), d.size(0))), ref));
    }
    if (s.has(p + "decoded_rgb_rowsum"))
      r.checks.push_back(cmp_exact("decoded_rgb_rowsum", d.to(at::kLong).sum(1), s.get(p + "decoded_rgb_rowsum")));
  }
  vision::ProcessedImage out = vision::preprocess_file(path, cfg);
  if (io::has(cj, "resized_hw"))
    r.checks.push_back(cmp_exact("resized_hw", ints({out.resized.height, out.resized.width}),
                                 ints(io::get<std::vector<int64_t>>(cj, "resized_hw", ctx))));
  at::Tensor grid = ints({out.grid_thw[0], out.grid_thw[1], out.grid_thw[2]}).view({1, 3});
  if (s.has(p + "image_grid_thw")) {
    r.checks.push_back(cmp_exact("image_grid_thw", grid, s.get(p + "image_grid_thw")));
  } else if (io::has(cj, "image_grid_thw")) {
    r.checks.push_back(
        cmp_exact("image_grid_thw", grid.view({3}), ints(io::get<std::vector<int64_t>>(cj, "image_grid_thw", ctx))));
  }
  if (s.has(p + "resized_uint8"))
    r.checks.push_back(cmp_exact("resized_uint8", rgb_tensor(out.resized), s.get(p + "resized_uint8")));
  const at::Tensor& pv = out.pixel_values;  // [P, 1176]
  if (s.has(p + "pixel_values"))
    r.checks.push_back(cmp_float("pixel_values", pv, s.get(p + "pixel_values"), kPixelTol, false, true));
  if (s.has(p + "pixel_values_head")) {
    at::Tensor ref = s.get(p + "pixel_values_head");
    r.checks.push_back(cmp_float("pixel_values_head", pv.narrow(0, 0, std::min(ref.size(0), pv.size(0))), ref,
                                 kPixelTol, false, true));
  }
  if (s.has(p + "pixel_values_tail")) {
    at::Tensor ref = s.get(p + "pixel_values_tail");
    const int64_t n = std::min(ref.size(0), pv.size(0));
    r.checks.push_back(cmp_float("pixel_values_tail", pv.narrow(0, pv.size(0) - n, n), ref, kPixelTol, false, true));
  }
  if (s.has(p + "pixel_values_rowsum")) {
    // A row sum of values each within 1e-6 is within 1e-6 * row width.
    r.checks.push_back(cmp_float("pixel_values_rowsum", pv.to(at::kDouble).sum(1), s.get(p + "pixel_values_rowsum"),
                                 kPixelTol * static_cast<double>(pv.size(1)), false, true));
  }
}

// The pixel values of image `stem` as the forward goldens used them: the golden rows of the preprocess case of
// that file at the processor's default min/max pixels when the set stores them in full, else our processor's.
at::Tensor pixel_values_for(SetCtx& s, const std::string& stem, at::Tensor* grid_out) {
  const auto& proc = s.processor();
  const json& cases = s.goldens.at("cases");
  std::string image_rel;
  for (auto it = cases.begin(); it != cases.end(); ++it) {
    const json& c = it.value();
    const std::string kind = c.value("kind", "");
    if (kind != "preprocess" && kind != "preprocess_file") continue;
    const std::string img = c.value("image", "");
    if (fs::path(img).stem().string() != stem) continue;
    image_rel = img;
    if (c.value("min_pixels", proc.min_pixels) != proc.min_pixels ||
        c.value("max_pixels", proc.max_pixels) != proc.max_pixels)
      continue;
    if (s.has(it.key() + ".pixel_values") && s.has(it.key() + ".image_grid_thw")) {
      *grid_out = s.get(it.key() + ".image_grid_thw").view({1, 3});
      return s.get(it.key() + ".pixel_values");
    }
  }
  if (image_rel.empty()) {
    // No preprocess case names it: look for images/<stem>.*.
    const fs::path d = fs::path(s.dir) / "images";
    if (fs::is_directory(d))
      for (const auto& e : fs::directory_iterator(d))
        if (e.path().stem().string() == stem) image_rel = fs::relative(e.path(), s.dir).string();
  }
  MEDR1_CHECK(!image_rel.empty(), s.dir, ": image \"", stem, "\" of a forward case not found");
  vision::ProcessedImage out = vision::preprocess_file((fs::path(s.dir) / image_rel).string(), proc);
  *grid_out = ints({out.grid_thw[0], out.grid_thw[1], out.grid_thw[2]}).view({1, 3});
  return out.pixel_values;
}

ParityGenerateFn& generate_hook() {
  static ParityGenerateFn fn;
  return fn;
}

// The inputs of forward case `name` (ids, mask, preprocessed images); image grid check appended to r.
Qwen2VLInputs forward_inputs(SetCtx& s, const std::string& name, const json& cj, CaseResult& r) {
  const std::string p = name + ".";
  Qwen2VLInputs in;
  in.input_ids = s.get(p + "input_ids");
  if (s.has(p + "attention_mask")) in.attention_mask = s.get(p + "attention_mask");
  std::vector<std::string> stems;
  if (cj.contains("images")) {
    for (const auto& e : cj.at("images")) {
      if (e.is_array()) {
        for (const auto& x : e) stems.push_back(x.get<std::string>());
      } else {
        stems.push_back(e.get<std::string>());
      }
    }
  }
  if (!stems.empty()) {
    std::vector<at::Tensor> pvs, grids;
    for (const auto& st : stems) {
      at::Tensor g;
      pvs.push_back(pixel_values_for(s, st, &g));
      grids.push_back(g);
    }
    in.pixel_values = at::cat(pvs, 0);
    in.image_grid_thw = s.has(p + "image_grid_thw") ? s.get(p + "image_grid_thw") : at::cat(grids, 0);
    r.checks.push_back(cmp_exact("image_grid_thw(preprocess)", at::cat(grids, 0), in.image_grid_thw));
  }
  return in;
}

void run_forward(SetCtx& s, const std::string& name, const json& cj, CaseResult& r) {
  const std::string p = name + ".";
  // Pass marks apply to float32 (and float64, a debugging aid that shows the reference's own float32 noise).
  const bool fp32 = s.dtype == at::kFloat || s.dtype == at::kDouble;
  auto& model = s.get_model();
  at::NoGradGuard no_grad;

  Qwen2VLInputs in = forward_inputs(s, name, cj, r);
  const at::Tensor mask_cpu = in.attention_mask;  // the comparisons run on the CPU
  // The model's inputs on its device; image_grid_thw stays on the CPU, where the rope / window code reads it.
  in.input_ids = in.input_ids.to(s.device);
  if (in.attention_mask.defined()) in.attention_mask = in.attention_mask.to(s.device);
  if (in.pixel_values.defined()) in.pixel_values = in.pixel_values.to(s.device);
  in.output_hidden_states = true;
  in.compute_logits = false;

  // Vision intermediates (only cases that store them).
  Qwen2VisionDebug dbg;
  at::Tensor image_embeds;
  if (in.pixel_values.defined()) {
    image_embeds = model->get_image_features(in.pixel_values, in.image_grid_thw, &dbg);
    in.image_embeds = image_embeds;
    auto vf = [&](const std::string& key, const at::Tensor& ours) {
      if (s.has(p + "vision." + key) && ours.defined())
        r.checks.push_back(cmp_float("vision." + key, ours, s.get(p + "vision." + key), kActRelTol, true, fp32));
    };
    vf("rot_pos_emb", dbg.rot_pos_emb);
    vf("patch_embed", dbg.patch_embed);
    for (size_t i = 0; i < dbg.block_outputs.size(); ++i) vf("block" + std::to_string(i), dbg.block_outputs[i]);
    vf("merger_out_window_order", dbg.merger_out_window_order);
    vf("image_embeds", image_embeds);
    if (s.has(p + "vision.window_index") && dbg.window_index.defined())
      r.checks.push_back(cmp_exact("vision.window_index", dbg.window_index, s.get(p + "vision.window_index")));
    if (s.has(p + "vision.cu_window_seqlens") && dbg.cu_window_seqlens.defined())
      r.checks.push_back(
          cmp_exact("vision.cu_window_seqlens", dbg.cu_window_seqlens, s.get(p + "vision.cu_window_seqlens")));
  }

  Qwen2VLOutput out = model->forward(in);
  if (s.has(p + "position_ids")) r.checks.push_back(cmp_exact("position_ids", out.position_ids, s.get(p + "position_ids")));
  if (s.has(p + "rope_deltas")) r.checks.push_back(cmp_exact("rope_deltas", out.rope_deltas, s.get(p + "rope_deltas")));
  const int64_t B = in.input_ids.size(0), S = in.input_ids.size(1);
  at::Tensor valid = mask_cpu.defined() ? (mask_cpu != 0) : at::ones({B, S}, at::TensorOptions().dtype(at::kBool));
  if (s.has(p + "causal_mask_4d")) {
    at::Tensor m = make_causal_mask(mask_cpu, B, S, 0, at::kFloat, at::kCPU);
    r.checks.push_back(cmp_float("causal_mask_4d", m, s.get(p + "causal_mask_4d"), 0.0, false, true));
  }
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    const std::string key = "hidden_states." + std::to_string(i);
    if (s.has(p + key))
      r.checks.push_back(cmp_float(key, out.hidden_states[i], s.get(p + key), kActRelTol, true, fp32, valid));
  }
  // Logits row by row (a full [S, V] row block at a time) to bound memory.
  const bool want_cols = s.has(p + "logits_cols") && s.has("vocab_ids");
  at::Tensor vocab_ids = want_cols ? s.get("vocab_ids") : at::Tensor();
  std::vector<at::Tensor> last, cols, top_gold_vals, top1;
  at::Tensor gold_top_ids = s.has(p + "top5_ids") ? s.get(p + "top5_ids") : at::Tensor();  // [B, S, 5]
  for (int64_t b = 0; b < B; ++b) {
    at::Tensor logits = model->lm_logits(out.last_hidden_state.narrow(0, b, 1)).to(at::kCPU, at::kFloat);  // [1, S, V]
    last.push_back(logits.select(1, S - 1));                                                    // [1, V]
    if (want_cols) cols.push_back(logits.index_select(2, vocab_ids));                          // [1, S, K]
    if (gold_top_ids.defined()) {
      top_gold_vals.push_back(logits.gather(2, gold_top_ids.narrow(0, b, 1)));  // ours at the golden top-5 ids
      top1.push_back(std::get<1>(logits.max(2)));                              // [1, S]
    }
  }
  if (s.has(p + "logits_last"))
    r.checks.push_back(cmp_float("logits_last", at::cat(last, 0), s.get(p + "logits_last"), kLogitTol, false, fp32));
  if (want_cols)
    r.checks.push_back(
        cmp_float("logits_cols", at::cat(cols, 0), s.get(p + "logits_cols"), kLogitTol, false, fp32, valid));
  if (gold_top_ids.defined() && s.has(p + "top5_values")) {
    at::Tensor gv = s.get(p + "top5_values");  // [B, S, 5]
    r.checks.push_back(cmp_float("top5_values(at golden ids)", at::cat(top_gold_vals, 0), gv, kLogitTol, false, fp32,
                                 valid));
    // Argmax must agree wherever the reference's top-1/top-2 margin exceeds twice the logit pass mark.
    at::Tensor clear = valid & ((gv.select(2, 0) - gv.select(2, 1)) > 2 * kLogitTol);
    TensorCheck c = cmp_exact("top1_ids(margin>2e-4)", at::cat(top1, 0).masked_select(clear),
                              gold_top_ids.select(2, 0).masked_select(clear));
    c.applies = fp32;
    if (!fp32) c.pass = true;
    r.checks.push_back(c);
  }
}

// generate case: greedy decoding of the prompt of case `inputs` through the generate part's hook; ids exact,
// step logits (and penalised scores) at the golden vocab columns and at the golden step top-5 ids within 1e-4.
void run_generate(SetCtx& s, const std::string& name, const json& cj, CaseResult& r) {
  const std::string p = name + ".";
  const bool fp32 = s.dtype == at::kFloat || s.dtype == at::kDouble;
  std::string base = cj.value("inputs", "");
  if (base.size() > 2 && base.compare(base.size() - 2, 2, ".*") == 0) base.resize(base.size() - 2);
  const json& cases = s.goldens.at("cases");
  MEDR1_CHECK(!base.empty() && cases.contains(base), s.dir, "/goldens.json: generate case \"", name,
              "\" names inputs \"", cj.value("inputs", ""), "\", which is not a case of the set");
  auto& model = s.get_model();
  at::NoGradGuard no_grad;
  Qwen2VLInputs in = forward_inputs(s, base, cases.at(base), r);

  ParityGenerateRequest req;
  req.input_ids = in.input_ids.to(at::kLong);
  req.attention_mask = in.attention_mask.defined() ? in.attention_mask.to(at::kLong) : at::ones_like(req.input_ids);
  req.pixel_values = in.pixel_values;
  req.image_grid_thw = in.image_grid_thw;
  req.max_new_tokens = cj.value("max_new_tokens", int64_t{16});
  req.repetition_penalty = cj.value("repetition_penalty", 1.0);
  // EOS / pad: the set's generation_config.json (transformers reads it), else the README's Qwen2-VL values.
  req.eos_token_ids = {151645, 151643};
  const fs::path gc_path = fs::path(s.dir) / "generation_config.json";
  if (fs::exists(gc_path)) {
    const json gc = io::read_json_file(gc_path.string());
    if (gc.contains("eos_token_id")) {
      const json& e = gc.at("eos_token_id");
      req.eos_token_ids = e.is_array() ? e.get<std::vector<int64_t>>() : std::vector<int64_t>{e.get<int64_t>()};
    }
    if (gc.contains("pad_token_id") && gc.at("pad_token_id").is_number_integer()) {
      req.pad_token_id = gc.at("pad_token_id").get<int64_t>();
    } else if (!req.eos_token_ids.empty()) {
      req.pad_token_id = req.eos_token_ids.front();
    }
  }
  ParityGenerateResult g = generate_hook()(model, req);

  // Ids are exact in float32; in bf16 they may leave the reference's path (reported only).
  auto ids_check = [&](const std::string& key, const at::Tensor& ours) {
    if (!s.has(p + key)) return;
    TensorCheck c = cmp_exact(key, ours, s.get(p + key));
    c.applies = fp32;
    if (!fp32) c.pass = true;
    r.checks.push_back(c);
  };
  ids_check("new_tokens", g.new_tokens);
  ids_check("sequences", g.sequences);
  const at::Tensor vocab_ids = s.has("vocab_ids") ? s.get("vocab_ids") : at::Tensor();
  auto steps = [&](const std::string& prefix, const at::Tensor& ours) {  // ours [B, T, V]
    if (!ours.defined()) return;
    if (vocab_ids.defined() && s.has(p + prefix + "_cols"))
      r.checks.push_back(cmp_float(prefix + "_cols", ours.index_select(2, vocab_ids), s.get(p + prefix + "_cols"),
                                   kLogitTol, false, fp32));
    if (s.has(p + prefix + "_top5_ids") && s.has(p + prefix + "_top5_values"))
      r.checks.push_back(cmp_float(prefix + "_top5_values(at golden ids)",
                                   ours.gather(2, s.get(p + prefix + "_top5_ids")),
                                   s.get(p + prefix + "_top5_values"), kLogitTol, false, fp32));
  };
  // Goldens name the raw logits step_logits_cols / step_top5_*, the penalised ones step_scores_*.
  if (g.step_logits.defined()) {
    if (vocab_ids.defined() && s.has(p + "step_logits_cols"))
      r.checks.push_back(cmp_float("step_logits_cols", g.step_logits.index_select(2, vocab_ids),
                                   s.get(p + "step_logits_cols"), kLogitTol, false, fp32));
    if (s.has(p + "step_top5_ids") && s.has(p + "step_top5_values"))
      r.checks.push_back(cmp_float("step_top5_values(at golden ids)", g.step_logits.gather(2, s.get(p + "step_top5_ids")),
                                   s.get(p + "step_top5_values"), kLogitTol, false, fp32));
  }
  steps("step_scores", g.step_scores);
}

std::string fmt_num(double v) {
  std::ostringstream os;
  os << std::setprecision(3) << std::scientific << v;
  return os.str();
}

}  // namespace

void set_parity_generate_hook(ParityGenerateFn fn) { generate_hook() = std::move(fn); }
bool has_parity_generate_hook() { return static_cast<bool>(generate_hook()); }

int ParityReport::count(CaseStatus s) const {
  int n = 0;
  for (const auto& c : cases) n += c.status == s;
  return n;
}

ParityReport run_parity_set(const ParityOptions& opt) {
  struct AttnScope {
    AttnImplementation saved = attn_implementation();
    explicit AttnScope(AttnImplementation a) { set_attn_implementation(a); }
    ~AttnScope() { set_attn_implementation(saved); }
  } attn_scope(opt.attn);
  SetCtx s;
  s.dir = opt.set_dir;
  s.dtype = opt.dtype;
  s.device = opt.device;
  s.goldens = io::read_json_file((fs::path(s.dir) / "goldens.json").string());
  s.gold = io::SafetensorsFile::open((fs::path(s.dir) / "goldens.safetensors").string());
  ParityReport rep;
  rep.set_dir = s.dir;
  const json& cases = io::get_object(s.goldens, "cases", io::JsonCtx{(fs::path(s.dir) / "goldens.json").string(), ""});
  for (auto it = cases.begin(); it != cases.end(); ++it) {
    if (!opt.only_cases.empty() &&
        std::find(opt.only_cases.begin(), opt.only_cases.end(), it.key()) == opt.only_cases.end())
      continue;
    CaseResult r;
    r.name = it.key();
    r.kind = it.value().value("kind", "");
    try {
      if (r.kind == "preprocess" || r.kind == "preprocess_file") {
        run_preprocess(s, r.name, it.value(), r);
      } else if (r.kind == "forward" || r.kind == "forward_batch") {
        run_forward(s, r.name, it.value(), r);
      } else if (r.kind == "generate" && generate_hook()) {
        run_generate(s, r.name, it.value(), r);
      } else {
        r.status = CaseStatus::Skipped;
        r.message = r.kind == "generate" ? "no generation hook (medr1::generate::register_parity_generate())" : "unknown case kind \"" + r.kind + "\"";
      }
      if (r.status != CaseStatus::Skipped)
        for (const auto& c : r.checks)
          if (!c.pass) r.status = CaseStatus::Failed;
    } catch (const std::exception& e) {
      r.status = CaseStatus::Failed;
      r.message = e.what();
    }
    rep.cases.push_back(std::move(r));
  }
  return rep;
}

std::string format_case(const CaseResult& c) {
  std::ostringstream os;
  const char* st = c.status == CaseStatus::Passed ? "PASS" : c.status == CaseStatus::Failed ? "FAIL" : "SKIP";
  os << "[" << st << "] " << c.name << " (" << c.kind << ")";
  if (!c.message.empty()) os << ": " << c.message;
  os << "\n";
  for (const auto& t : c.checks) {
    os << "    " << (t.pass ? "ok  " : "BAD ") << std::left << std::setw(30) << t.name << " ";
    if (t.exact) {
      os << "mismatches " << t.error << " (exact)";
    } else {
      os << (t.relative ? "rel l2 err  " : "max abs err ") << fmt_num(t.error);
      if (t.applies) {
        os << " <= " << fmt_num(t.pass_mark);
      } else {
        os << " (no pass mark)";
      }
    }
    if (!t.note.empty()) os << "  " << t.note;
    os << "\n";
  }
  return os.str();
}

std::string format_report(const ParityReport& r) {
  std::ostringstream os;
  os << "parity set " << r.set_dir << "\n";
  for (const auto& c : r.cases) os << format_case(c);
  os << r.count(CaseStatus::Passed) << " passed, " << r.count(CaseStatus::Failed) << " failed, "
     << r.count(CaseStatus::Skipped) << " skipped\n";
  return os.str();
}

}  // namespace medr1::model

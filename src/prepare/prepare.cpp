// medr1-prepare (prepare.h): OmniMedVQA release -> Med-R1's Splits/ layout (JSON as Med-R1 wrote
// it), optional Pillow-exact resized copies, `datasets` folders, and a report of every item that
// could not be used.
#include "medr1/prepare/prepare.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "medr1/core/error.h"
#include "medr1/data/hf_dataset.h"
#include "medr1/data/progress.h"
#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

namespace medr1::prepare {
namespace fs = std::filesystem;
using nlohmann::json;

Access parse_access(const std::string& s) {
  if (s == "open") return Access::open;
  if (s == "restricted") return Access::restricted;
  if (s == "all") return Access::all;
  throw Error("--access: '" + s + "' is not one of open, restricted, all");
}

std::string format_problem(const QaItem& q) {
  std::string p = q.question + " ";
  for (size_t i = 0; i < q.options.size(); ++i) {
    if (i) p += ", ";
    p += static_cast<char>('A' + i);
    p += ")";
    p += q.options[i];
  }
  return p;
}

char answer_letter(const QaItem& q) {
  for (size_t i = 0; i < q.options.size(); ++i)
    if (q.options[i] == q.gt_answer) return static_cast<char>('A' + i);
  return '\0';
}

std::string modality_name(const std::string& modality_type) {
  if (modality_type.empty()) return "unknown";
  std::string s = modality_type;
  std::replace(s.begin(), s.end(), '/', '_');
  return s;
}

static std::string str_field(const json& r, const char* key, const std::string& where) {
  if (!r.contains(key) || r[key].is_null()) return "";
  MEDR1_CHECK(r[key].is_string(), where, ": field '", key, "' is not a string");
  return r[key].get<std::string>();
}

std::vector<QaItem> load_qa(const std::string& root, Access access) {
  std::vector<std::string> dirs;
  if (access != Access::restricted) dirs.push_back("Open-access");
  if (access != Access::open) dirs.push_back("Restricted-access");
  std::vector<QaItem> out;
  for (const auto& d : dirs) {
    const fs::path dir = fs::path(root) / "QA_information" / d;
    MEDR1_CHECK(fs::is_directory(dir), "medr1-prepare: ", dir.string(),
                " is not a folder (--omnimedvqa-root ", root, ", --access)");
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      json arr;
      try {
        arr = json::parse(in);
      } catch (const std::exception& e) {
        throw Error(f.string() + ": not valid JSON: " + e.what());
      }
      MEDR1_CHECK(arr.is_array(), f.string(), ": expected a JSON array of QA records");
      for (size_t i = 0; i < arr.size(); ++i) {
        const json& r = arr[i];
        const std::string where = f.string() + "[" + std::to_string(i) + "]";
        MEDR1_CHECK(r.is_object(), where, ": not an object");
        QaItem q;
        q.dataset = str_field(r, "dataset", where);
        q.question_id = str_field(r, "question_id", where);
        q.question_type = str_field(r, "question_type", where);
        q.question = str_field(r, "question", where);
        q.gt_answer = str_field(r, "gt_answer", where);
        q.image_path = str_field(r, "image_path", where);
        q.modality_type = str_field(r, "modality_type", where);
        for (char L = 'A'; L <= 'Z'; ++L) {
          const std::string key = std::string("option_") + L;
          if (!r.contains(key)) break;
          q.options.push_back(str_field(r, key.c_str(), where));
        }
        MEDR1_CHECK(!q.image_path.empty(), where, ": field 'image_path' missing");
        MEDR1_CHECK(!q.question_type.empty(), where, ": field 'question_type' missing");
        q.source_file = f.string();
        out.push_back(std::move(q));
      }
    }
  }
  return out;
}

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

template <class F>
void parallel_for(size_t n, int num_workers, F&& f) {
  int w = num_workers > 0 ? num_workers
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  w = static_cast<int>(std::min<size_t>(static_cast<size_t>(w), std::max<size_t>(n, 1)));
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < w; ++t)
    ts.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) f(i);
    });
  for (auto& t : ts) t.join();
}

// Seeded per-group split: sort by question_id (then image), Fisher-Yates with SplitMix64 seeded by
// seed ^ hash(group); the first round(n * test_ratio) go to test. Order inside each file: the
// sorted order.
void split_group(const std::string& type, const std::string& name, std::vector<const QaItem*> g,
                 uint64_t seed, double test_ratio, SplitContents& c) {
  std::sort(g.begin(), g.end(), [](const QaItem* a, const QaItem* b) {
    return std::tie(a->question_id, a->image_path, a->question) <
           std::tie(b->question_id, b->image_path, b->question);
  });
  std::vector<size_t> idx(g.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  uint64_t s = seed ^ fnv1a(type + "/" + name);
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[splitmix64(s) % i]);
  const size_t n_test =
      static_cast<size_t>(std::llround(static_cast<double>(g.size()) * test_ratio));
  std::vector<bool> is_test(g.size(), false);
  for (size_t i = 0; i < n_test; ++i) is_test[idx[i]] = true;
  std::vector<SplitRecord> test, train;
  for (size_t i = 0; i < g.size(); ++i) {
    SplitRecord r{g[i]->image_path, format_problem(*g[i]),
                  std::string("<answer> ") + answer_letter(*g[i]) + " </answer>"};
    (is_test[i] ? test : train).push_back(std::move(r));
  }
  // An empty file is not written (Med-R1 has unknown_train.json with 1 record and no
  // unknown_test.json).
  if (!test.empty()) c.files[type + "/test/" + name + "_test.json"] = std::move(test);
  if (!train.empty()) c.files[type + "/train/" + name + "_train.json"] = std::move(train);
}

}  // namespace

SplitContents build_splits(const std::vector<QaItem>& items, uint64_t seed, double test_ratio,
                           const std::string& root, bool check_images, int num_workers) {
  MEDR1_CHECK(test_ratio >= 0.0 && test_ratio <= 1.0, "--test-ratio: ", test_ratio,
              " is not in [0, 1]");
  SplitContents c;
  std::map<std::string, std::vector<const QaItem*>> by_mod, by_qt;
  for (const auto& q : items) {
    if (answer_letter(q) == '\0') {
      c.bad.push_back({"no_matching_option", q.question_id, q.image_path, q.source_file,
                       "gt_answer '" + q.gt_answer + "' equals none of the " +
                           std::to_string(q.options.size()) + " options (excluded)"});
      continue;
    }
    by_mod[modality_name(q.modality_type)].push_back(&q);
    by_qt[q.question_type].push_back(&q);
  }
  for (auto& [k, g] : by_mod) {
    c.per_modality[k] = static_cast<int64_t>(g.size());
    split_group("modality", k, g, seed, test_ratio, c);
  }
  for (auto& [k, g] : by_qt) {
    c.per_question_type[k] = static_cast<int64_t>(g.size());
    split_group("question_type", k, g, seed, test_ratio, c);
  }
  if (check_images) {
    std::vector<const QaItem*> uniq;
    std::map<std::string, const QaItem*> seen;
    for (const auto& q : items) seen.emplace(q.image_path, &q);
    for (auto& [p, q] : seen) uniq.push_back(q);
    std::vector<BadItem> bad(uniq.size());
    data::ProgressBar bar("check images", static_cast<int64_t>(uniq.size()));
    parallel_for(uniq.size(), num_workers, [&](size_t i) {
      const QaItem& q = *uniq[i];
      const fs::path p = fs::path(root) / q.image_path;
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) {
        bad[i] = {"missing_image", q.question_id, q.image_path, q.source_file,
                  p.string() + " does not exist"};
      } else {
        try {
          (void)vision::load_image_rgb(p.string());
        } catch (const std::exception& e) {
          bad[i] = {"unreadable_image", q.question_id, q.image_path, q.source_file, e.what()};
        }
      }
      bar.advance();
    });
    bar.finish();
    for (auto& b : bad)
      if (!b.kind.empty()) c.bad.push_back(std::move(b));
  }
  return c;
}

std::string to_json_text(const std::vector<SplitRecord>& records) {
  json arr = json::array();
  for (const auto& r : records)
    arr.push_back({{"image", r.image}, {"problem", r.problem}, {"solution", r.solution}});
  return arr.dump(4, ' ', /*ensure_ascii=*/true);
}

static void write_file_atomic(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    MEDR1_CHECK(out.good(), "medr1-prepare: cannot write ", tmp.string());
    out << text;
    MEDR1_CHECK(out.good(), "medr1-prepare: write failed: ", tmp.string());
  }
  fs::rename(tmp, p);
}

void write_json_splits(const SplitContents& c, const std::string& output_dir) {
  for (const auto& [rel, recs] : c.files)
    write_file_atomic(fs::path(output_dir) / "Splits" / rel, to_json_text(recs));
}

ResizeStats resize_images(const std::vector<std::string>& rel_paths, const std::string& root,
                          const std::string& image_output, int64_t size, int num_workers) {
  MEDR1_CHECK(size > 0, "--resize: ", size, " must be positive");
  MEDR1_CHECK(!image_output.empty(), "--resize needs --image-output");
  std::atomic<int64_t> written{0}, skipped{0}, failed{0};
  data::ProgressBar bar("resize " + std::to_string(size), static_cast<int64_t>(rel_paths.size()));
  parallel_for(rel_paths.size(), num_workers, [&](size_t i) {
    const fs::path out = fs::path(image_output) / rel_paths[i];
    std::error_code ec;
    if (fs::is_regular_file(out, ec)) {
      ++skipped;
    } else {
      try {
        const auto img = vision::load_image_rgb((fs::path(root) / rel_paths[i]).string());
        const auto r = vision::resize_bicubic(img, size, size);
        fs::create_directories(out.parent_path());
        const std::string tmp = out.string() + ".tmp" + std::to_string(i);
        vision::write_png(tmp, r);
        fs::rename(tmp, out);
        ++written;
      } catch (const std::exception&) {
        ++failed;  // already listed by the image check
      }
    }
    bar.advance();
  });
  bar.finish();
  return {written.load(), skipped.load(), failed.load()};
}

// --format hf-dataset: beside Splits/, one `datasets` DatasetDict folder per split group,
// <output>/datasets/<modality|question_type>/<name>/{train,test}/ (what Med-R1's --dataset_name
// ./data/VQA/CT_384 loads with load_from_disk), images embedded from --image-output when --resize
// ran (the 384x384 copies), else from the release. Records without an image file there (missing, or
// unreadable and so never resized) cannot be embedded: they stay in the JSON splits, are listed
// among bad_items already, and are counted here per folder.
static json write_hf_datasets(const SplitContents& c, const PrepareOptions& o) {
  const std::string image_root = o.resize > 0 && !o.image_output.empty() ? o.image_output : o.root;
  std::map<std::string, std::vector<std::pair<std::string, std::vector<data::Record>>>> groups;
  std::map<std::string, int64_t> not_embedded;
  for (const auto& [rel, recs] : c.files) {
    const fs::path p(rel);  // modality/test/X-Ray_test.json
    const std::string type = p.begin()->string();
    const std::string stage = std::next(p.begin())->string();
    std::string name = p.stem().string();
    const std::string suffix = "_" + stage;
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      name.resize(name.size() - suffix.size());
    const std::string key = type + "/" + name;
    std::vector<data::Record> out;
    for (const auto& r : recs) {
      data::Record d;
      d.index = static_cast<int64_t>(out.size());
      d.image = r.image;
      d.image_path = (fs::path(image_root) / r.image).string();
      d.problem = r.problem;
      d.solution = r.solution;
      if (!fs::is_regular_file(d.image_path)) {
        ++not_embedded[key];
        continue;
      }
      out.push_back(std::move(d));
    }
    groups[key].emplace_back(stage, std::move(out));
  }
  json rep = json::object();
  for (auto& [key, splits] : groups) {
    const std::string folder = (fs::path(o.output) / "datasets" / key).string();
    data::write_hf_dataset_dict(splits, folder);
    json j = {{"folder", folder}, {"not_embedded_no_image_file", not_embedded[key]}};
    for (const auto& [stage, recs] : splits) j[stage] = recs.size();
    rep[key] = j;
    std::printf("datasets folder %-50s", folder.c_str());
    for (const auto& [stage, recs] : splits) std::printf(" %s %zu", stage.c_str(), recs.size());
    std::printf("\n");
  }
  return rep;
}

std::string run_prepare(const PrepareOptions& o) {
  MEDR1_CHECK(o.format == "json" || o.format == "hf-dataset", "--format: '", o.format,
              "' is not supported (json | hf-dataset)");
  MEDR1_CHECK(!o.root.empty() && !o.output.empty(),
              "medr1-prepare: --omnimedvqa-root and --output are required");
  const auto items = load_qa(o.root, o.access);
  const auto c = build_splits(items, o.seed, o.test_ratio, o.root, true, o.num_workers);
  write_json_splits(c, o.output);
  json rep;
  rep["omnimedvqa_root"] = o.root;
  rep["seed"] = o.seed;
  rep["test_ratio"] = o.test_ratio;
  rep["qa_items"] = items.size();
  for (const auto& [rel, recs] : c.files) rep["files"][rel] = recs.size();
  rep["per_modality"] = c.per_modality;
  rep["per_question_type"] = c.per_question_type;
  rep["bad_items"] = json::array();
  for (const auto& b : c.bad)
    rep["bad_items"].push_back({{"kind", b.kind},
                                {"question_id", b.question_id},
                                {"image", b.image},
                                {"source_file", b.source_file},
                                {"detail", b.detail}});
  if (o.resize > 0) {
    std::vector<std::string> paths;
    for (const auto& [rel, recs] : c.files)
      for (const auto& r : recs) paths.push_back(r.image);
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    const auto st = resize_images(paths, o.root, o.image_output, o.resize, o.num_workers);
    rep["resize"] = {{"size", o.resize},
                     {"image_output", o.image_output},
                     {"written", st.written},
                     {"skipped_existing", st.skipped_existing},
                     {"failed", st.failed}};
  }
  if (o.format == "hf-dataset") rep["hf_datasets"] = write_hf_datasets(c, o);
  write_file_atomic(fs::path(o.output) / "prepare_report.json", rep.dump(2));
  std::printf("%-60s %8s\n", "split file", "records");
  for (const auto& [rel, recs] : c.files) std::printf("%-60s %8zu\n", rel.c_str(), recs.size());
  std::printf("bad items: %zu\n", c.bad.size());
  for (const auto& b : c.bad)
    std::printf("  %-20s %s (%s)\n", b.kind.c_str(), b.image.c_str(), b.question_id.c_str());
  return rep.dump(2);
}

}  // namespace medr1::prepare

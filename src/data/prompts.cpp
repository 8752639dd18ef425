// Med-R1 prompt templates: name lookup and {Question} substitution (prompts.h).
#include "medr1/data/prompts.h"

#include <utility>

#include "medr1/core/error.h"

namespace medr1::data {

namespace {
const std::vector<std::pair<std::string, std::string_view>>& named_templates() {
  static const std::vector<std::pair<std::string, std::string_view>> t = {
      {"think", kEvalThinkTemplate},          {"nothink", kEvalNoThinkTemplate},
      {"zeroshot", kEvalZeroShotTemplate},    {"readme", kReadmeTemplate},
      {"train_think", kTrainThinkTemplate},   {"train_nothink", kTrainNoThinkTemplate},
  };
  return t;
}

std::string joined_names() {
  std::string s;
  for (const auto& n : template_names()) {
    if (!s.empty()) s += ", ";
    s += n;
  }
  return s;
}
}  // namespace

const std::vector<std::string>& template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [n, t] : named_templates()) v.push_back(n);
    return v;
  }();
  return names;
}

std::string resolve_template(std::string_view name_or_template) {
  for (const auto& [n, t] : named_templates())
    if (n == name_or_template) return std::string(t);
  MEDR1_CHECK(name_or_template.find(kQuestionPlaceholder) != std::string_view::npos,
              "prompt template '", name_or_template,
              "': unknown name and no {Question} placeholder (names: ", joined_names(), ")");
  return std::string(name_or_template);
}

std::string format_question(std::string_view tmpl, std::string_view question) {
  MEDR1_CHECK(tmpl.find(kQuestionPlaceholder) != std::string_view::npos, "prompt template '", tmpl,
              "': no {Question} placeholder");
  std::string out;
  out.reserve(tmpl.size() + question.size());
  size_t pos = 0;
  while (true) {
    size_t hit = tmpl.find(kQuestionPlaceholder, pos);
    if (hit == std::string_view::npos) break;
    out.append(tmpl.substr(pos, hit - pos));
    out.append(question);
    pos = hit + kQuestionPlaceholder.size();
  }
  out.append(tmpl.substr(pos));
  return out;
}

}  // namespace medr1::data

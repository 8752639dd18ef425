// Med-R1 evaluation answer extraction with PCRE2 (answer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "medr1/data/answer.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <memory>

#include "medr1/core/error.h"

namespace medr1::data {

namespace {

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using CodePtr = std::unique_ptr<pcre2_code, CodeDeleter>;

CodePtr compile(bool ignore_case) {
  // MATCH_INVALID_UTF: model output decoded from tokens may in principle hold invalid UTF-8;
  // Python would never see it (it decodes with errors="replace"), so we just match around it.
  uint32_t flags = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  if (ignore_case) flags |= PCRE2_CASELESS;
  static constexpr char kPattern[] = "<answer>\\s*(\\w+)\\s*</answer>";
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                                flags, &err, &off, nullptr);
  MEDR1_CHECK(c != nullptr, "answer regex: pcre2_compile failed with code ", err);
  return CodePtr(c);
}

const pcre2_code* pattern(bool ignore_case) {
  // Compiled once; pcre2_code is read-only during matching, so threads may share it.
  static const CodePtr exact = compile(false);
  static const CodePtr caseless = compile(true);
  return ignore_case ? caseless.get() : exact.get();
}

std::string to_upper_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {  // invalid byte: keep it as is
      out.push_back(static_cast<char>(*p));
      ++p;
      --left;
      continue;
    }
    utf8proc_uint8_t buf[4];
    utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_toupper(cp), buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(m));
    p += n;
    left -= n;
  }
  return out;
}

}  // namespace

std::optional<std::string> extract_option_answer(std::string_view text, const AnswerOptions& opts) {
  const pcre2_code* re = pattern(opts.ignore_case_tags);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(re, nullptr), &pcre2_match_data_free);
  MEDR1_CHECK(md != nullptr, "answer regex: out of memory");
  int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md.get(),
                       nullptr);
  if (rc < 0) {
    MEDR1_CHECK(rc == PCRE2_ERROR_NOMATCH, "answer regex: pcre2_match failed with code ", rc);
    return std::nullopt;
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
  return std::string(text.substr(ov[2], ov[3] - ov[2]));
}

bool answers_match(const std::optional<std::string>& predicted,
                   const std::optional<std::string>& truth, const AnswerOptions& opts) {
  if (!predicted || !truth) return false;
  if (!opts.ignore_case_compare) return *predicted == *truth;
  return to_upper_utf8(*predicted) == to_upper_utf8(*truth);
}

AnswerJudgement judge_answer(std::string_view model_output, std::string_view solution,
                             const AnswerOptions& opts) {
  AnswerJudgement j;
  j.extracted_answer = extract_option_answer(model_output, opts);
  j.gt_answer = extract_option_answer(solution, opts);
  j.correct = answers_match(j.extracted_answer, j.gt_answer, opts);
  return j;
}

}  // namespace medr1::data

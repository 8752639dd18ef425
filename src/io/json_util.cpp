// JSON file reading and typed getters with file + dotted-path error messages (json_util.h).
#include "medr1/io/json_util.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace medr1::io {

JsonCtx JsonCtx::at(std::string_view key) const {
  JsonCtx c{file, path};
  if (!c.path.empty()) c.path += '.';
  c.path += key;
  return c;
}

JsonCtx JsonCtx::index(size_t i) const {
  JsonCtx c{file, path};
  // Appended piecewise: GCC 12 warns falsely (-Wstringop-overflow) on "[" + std::to_string(i).
  c.path += '[';
  c.path += std::to_string(i);
  c.path += ']';
  return c;
}

std::string JsonCtx::where(std::string_view key) const {
  std::string p = path;
  if (!key.empty()) {
    // Array suffixes ("[3]") attach without a dot.
    if (!p.empty() && key.front() != '[') p += '.';
    p += key;
  }
  if (file.empty()) return p;
  if (p.empty()) return file;
  return file + ": " + p;
}

const char* json_type_name(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: return "number";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::object: return "object";
    case nlohmann::json::value_t::binary: return "binary";
    case nlohmann::json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

namespace detail {
void json_type_error(const nlohmann::json& v, const char* expected, const JsonCtx& ctx,
                     std::string_view key) {
  fail(ctx.where(key), ": expected ", expected, ", got ", json_type_name(v));
}
void json_range_error(const nlohmann::json& v, const char* expected, const JsonCtx& ctx,
                      std::string_view key) {
  fail(ctx.where(key), ": expected ", expected, ", got ", v.dump());
}
}  // namespace detail

nlohmann::json parse_json(std::string_view text, const std::string& name) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."; keep
    // the byte position explicit and the library's detail after it.
    std::string detail = e.what();
    if (auto p = detail.find("] "); p != std::string::npos) detail = detail.substr(p + 2);
    fail(name, ": JSON parse error at byte ", e.byte, ": ", detail);
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open (", std::strerror(errno), ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  return parse_json(ss.str(), path);
}

const nlohmann::json& get_member(const nlohmann::json& j, std::string_view key,
                                 const JsonCtx& ctx) {
  if (!j.is_object()) detail::json_type_error(j, "object", ctx, {});
  auto it = j.find(key);
  if (it == j.end()) fail(ctx.where(key), ": missing");
  return *it;
}

const nlohmann::json& get_object(const nlohmann::json& j, std::string_view key,
                                 const JsonCtx& ctx) {
  const auto& v = get_member(j, key, ctx);
  if (!v.is_object()) detail::json_type_error(v, "object", ctx, key);
  return v;
}

bool has(const nlohmann::json& j, std::string_view key) {
  if (!j.is_object()) return false;
  auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

}  // namespace medr1::io

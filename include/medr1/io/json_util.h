// JSON helpers for config files: read a file with errors naming it, and typed field getters
// whose errors name the file and the dotted field path, e.g.
//   "config.json: vision_config.spatial_merge_size: missing"
//   "config.json: rope_theta: expected number, got string"
// No torch here on purpose (configs, tokenizer and data code include this header).
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "medr1/core/error.h"

namespace medr1::io {

// Where a JSON value lives: the file (as it should appear in messages) and the dotted path of the
// object being read. Build one per file, descend with at()/index().
//   JsonCtx ctx{"config.json"};            // or JsonCtx{path}
//   int n = get<int>(j, "hidden_size", ctx);
//   const auto& vj = get_object(j, "vision_config", ctx);
//   int m = get<int>(vj, "spatial_merge_size", ctx.at("vision_config"));
struct JsonCtx {
  JsonCtx() = default;
  explicit JsonCtx(std::string file_, std::string path_ = {})
      : file(std::move(file_)), path(std::move(path_)) {}

  std::string file;  // e.g. "/ckpt/config.json"
  std::string path;  // dotted path of the current object, "" = document root

  // Context of member `key` of the current object.
  JsonCtx at(std::string_view key) const;
  // Context of element `i` of the current array: "layers[3]".
  JsonCtx index(size_t i) const;
  // "file: path.key" (or "file: key" at the root, "file" when both are empty) for messages.
  std::string where(std::string_view key = {}) const;
};

// Reads and parses a JSON file. Errors: "<path>: cannot open (No such file or directory)",
// "<path>: JSON parse error at byte 123: <detail>".
nlohmann::json read_json_file(const std::string& path);
// Parses `text`; `name` is used in error messages the same way as the path above.
nlohmann::json parse_json(std::string_view text, const std::string& name);

// "null", "boolean", "number", "string", "array", "object" (as in the error messages).
const char* json_type_name(const nlohmann::json& j);

namespace detail {
template <class T> struct is_vector : std::false_type {};
template <class T, class A> struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};

[[noreturn]] void json_type_error(const nlohmann::json& v, const char* expected,
                                  const JsonCtx& ctx, std::string_view key);
[[noreturn]] void json_range_error(const nlohmann::json& v, const char* expected,
                                   const JsonCtx& ctx, std::string_view key);
}  // namespace detail

// Converts value `v` (found at ctx.where(key)) to T with strict type checks:
//   bool         <- JSON boolean only
//   integers     <- JSON integer, or a float with an exact integral value (1.0); range-checked
//   float/double <- any JSON number
//   std::string  <- JSON string
//   std::vector<U> <- JSON array, each element converted (errors name "key[i]")
//   std::optional<U> <- null -> nullopt, else U
//   nlohmann::json <- anything
template <class T>
T json_as(const nlohmann::json& v, const JsonCtx& ctx, std::string_view key) {
  using nlohmann::json;
  if constexpr (std::is_same_v<T, json>) {
    return v;
  } else if constexpr (detail::is_optional<T>::value) {
    if (v.is_null()) return std::nullopt;
    return json_as<typename T::value_type>(v, ctx, key);
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) detail::json_type_error(v, "boolean", ctx, key);
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        detail::json_range_error(v, "integer in range", ctx, key);
      return static_cast<T>(u);
    }
    if (v.is_number_integer()) {
      int64_t s = v.get<int64_t>();
      if constexpr (std::is_signed_v<T>) {
        if (s < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            s > static_cast<int64_t>(std::numeric_limits<T>::max()))
          detail::json_range_error(v, "integer in range", ctx, key);
      } else {
        if (s < 0 || static_cast<uint64_t>(s) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
          detail::json_range_error(v, "non-negative integer in range", ctx, key);
      }
      return static_cast<T>(s);
    }
    if (v.is_number_float()) {
      double d = v.get<double>();
      // 2^63 bounds: exact in double; anything integral inside fits int64 / uint64.
      if (!std::isfinite(d) || d != std::floor(d) || d < -9.223372036854775808e18 ||
          d >= 9.223372036854775808e18)
        detail::json_type_error(v, "integer", ctx, key);
      return json_as<T>(json(static_cast<int64_t>(d)), ctx, key);
    }
    detail::json_type_error(v, "integer", ctx, key);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) detail::json_type_error(v, "number", ctx, key);
    return static_cast<T>(v.get<double>());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) detail::json_type_error(v, "string", ctx, key);
    return v.get_ref<const std::string&>();
  } else if constexpr (detail::is_vector<T>::value) {
    if (!v.is_array()) detail::json_type_error(v, "array", ctx, key);
    T out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      std::string k(key);
      k += '[';
      k += std::to_string(i);
      k += ']';
      out.push_back(json_as<typename T::value_type>(v[i], ctx, k));
    }
    return out;
  } else {
    static_assert(sizeof(T) == 0, "json_as: unsupported type");
  }
}

// Required member `key` of object `j`. Errors: "<file>: <path.key>: missing",
// "<file>: <path.key>: expected number, got string", or "<file>: <path>: expected object, got array"
// when `j` itself is not an object.
const nlohmann::json& get_member(const nlohmann::json& j, std::string_view key, const JsonCtx& ctx);

template <class T>
T get(const nlohmann::json& j, std::string_view key, const JsonCtx& ctx) {
  return json_as<T>(get_member(j, key, ctx), ctx, key);
}

// Optional member: returns `def` when `key` is absent or null (HF configs write null for
// "use the default", e.g. "sliding_window": null); a present value of the wrong type is an error.
template <class T>
T get_or(const nlohmann::json& j, std::string_view key, const JsonCtx& ctx, T def) {
  if (!j.is_object()) detail::json_type_error(j, "object", ctx, {});
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  return json_as<T>(*it, ctx, key);
}

// Required member that must be an object (for descending into nested configs).
const nlohmann::json& get_object(const nlohmann::json& j, std::string_view key, const JsonCtx& ctx);

// True if `key` is present and not null.
bool has(const nlohmann::json& j, std::string_view key);

}  // namespace medr1::io

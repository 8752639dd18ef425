// json_util: file reading errors and typed getters whose messages name file and dotted path.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <unistd.h>

#include "medr1/io/json_util.h"

namespace fs = std::filesystem;
using medr1::io::JsonCtx;
using nlohmann::json;

namespace {
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "<no throw>";
}

const json kConfig = json::parse(R"({
  "hidden_size": 1536, "rope_theta": "big", "rms_norm_eps": 1e-06, "tie": true,
  "sliding_window": null, "big": 3000000000, "neg": -1, "f_int": 2.0, "f_frac": 2.5,
  "vision_config": {"depth": 32, "spatial_merge_size": null},
  "rope_scaling": {"mrope_section": [16, 24, "x"]}
})");
}  // namespace

TEST(JsonUtil, TypedGetters) {
  JsonCtx ctx{"config.json"};
  EXPECT_EQ(medr1::io::get<int>(kConfig, "hidden_size", ctx), 1536);
  EXPECT_DOUBLE_EQ(medr1::io::get<double>(kConfig, "rms_norm_eps", ctx), 1e-6);
  EXPECT_TRUE(medr1::io::get<bool>(kConfig, "tie", ctx));
  EXPECT_EQ(medr1::io::get<int64_t>(kConfig, "big", ctx), 3000000000LL);
  EXPECT_EQ(medr1::io::get<int>(kConfig, "f_int", ctx), 2);
  EXPECT_EQ(medr1::io::get<std::optional<int>>(kConfig, "sliding_window", ctx), std::nullopt);
  const json& vj = medr1::io::get_object(kConfig, "vision_config", ctx);
  EXPECT_EQ(medr1::io::get<int>(vj, "depth", ctx.at("vision_config")), 32);
  EXPECT_EQ(medr1::io::get_or<int>(kConfig, "absent", ctx, 7), 7);
  EXPECT_EQ(medr1::io::get_or<int>(kConfig, "sliding_window", ctx, 4096), 4096);
  EXPECT_EQ(medr1::io::get_or<int>(kConfig, "hidden_size", ctx, 1), 1536);
  EXPECT_TRUE(medr1::io::has(kConfig, "tie"));
  EXPECT_FALSE(medr1::io::has(kConfig, "sliding_window"));
  auto sec = medr1::io::get<std::vector<int>>(json::parse(R"({"s":[1,2,3]})"), "s", ctx);
  EXPECT_EQ(sec, (std::vector<int>{1, 2, 3}));
}

TEST(JsonUtil, ErrorsNameFileAndDottedPath) {
  JsonCtx ctx{"config.json"};
  const json& vj = kConfig["vision_config"];
  EXPECT_EQ(error_of([&] { medr1::io::get<int>(vj, "spatial_merge_size", ctx.at("vision_config")); }),
            "config.json: vision_config.spatial_merge_size: expected integer, got null");
  EXPECT_EQ(error_of([&] { medr1::io::get<int>(vj, "patch_size", ctx.at("vision_config")); }),
            "config.json: vision_config.patch_size: missing");
  EXPECT_EQ(error_of([&] { medr1::io::get<double>(kConfig, "rope_theta", ctx); }),
            "config.json: rope_theta: expected number, got string");
  EXPECT_EQ(error_of([&] { medr1::io::get_or<double>(kConfig, "rope_theta", ctx, 1.0); }),
            "config.json: rope_theta: expected number, got string");
  EXPECT_EQ(error_of([&] { medr1::io::get<int>(kConfig, "big", ctx); }),
            "config.json: big: expected integer in range, got 3000000000");
  EXPECT_EQ(error_of([&] { medr1::io::get<uint32_t>(kConfig, "neg", ctx); }),
            "config.json: neg: expected non-negative integer in range, got -1");
  EXPECT_EQ(error_of([&] { medr1::io::get<int>(kConfig, "f_frac", ctx); }),
            "config.json: f_frac: expected integer, got number");
  EXPECT_EQ(error_of([&] { medr1::io::get<bool>(kConfig, "hidden_size", ctx); }),
            "config.json: hidden_size: expected boolean, got number");
  const json& rs = kConfig["rope_scaling"];
  EXPECT_EQ(error_of([&] {
              medr1::io::get<std::vector<int>>(rs, "mrope_section", ctx.at("rope_scaling"));
            }),
            "config.json: rope_scaling.mrope_section[2]: expected integer, got string");
  EXPECT_EQ(error_of([&] { medr1::io::get_object(kConfig, "hidden_size", ctx); }),
            "config.json: hidden_size: expected object, got number");
  EXPECT_EQ(error_of([&] { medr1::io::get<int>(json::array(), "x", ctx.at("layers").index(3)); }),
            "config.json: layers[3]: expected object, got array");
}

TEST(JsonUtil, ReadFileErrors) {
  fs::path dir = fs::temp_directory_path() / ("medr1_json_util_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string missing = (dir / "missing.json").string();
  EXPECT_EQ(error_of([&] { medr1::io::read_json_file(missing); }),
            missing + ": cannot open (No such file or directory)");
  std::string bad = (dir / "bad.json").string();
  std::ofstream(bad) << "{\"a\": 1,, }";
  std::string msg = error_of([&] { medr1::io::read_json_file(bad); });
  EXPECT_EQ(msg.rfind(bad + ": JSON parse error at byte 9: ", 0), 0u) << msg;
  std::string good = (dir / "good.json").string();
  std::ofstream(good) << "{\"a\": [1, 2]}";
  EXPECT_EQ(medr1::io::read_json_file(good)["a"][1].get<int>(), 2);
  fs::remove_all(dir);
}

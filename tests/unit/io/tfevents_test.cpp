// TensorBoard event files (io/tfevents.h): the CRC32C test vector, TFRecord framing by hand, and a
// read-back of our files by the real tensorboard package (EventAccumulator, size_guidance 0 = every
// event kept) from the project venv ($MEDR1_PYTHON): scalars equal the values written
// (float32-rounded), text summaries equal the strings, and a SessionLog START drops the events of
// an earlier file from that step on (a resumed run).
#include "medr1/io/tfevents.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "io_test_util.h"

namespace medr1::io::test {
namespace {

TEST(Tfevents, Crc32cTestVector) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
}

TEST(Tfevents, MaskedCrcIsRotatedPlusDelta) {
  const uint32_t c = crc32c("abc", 3);
  EXPECT_EQ(masked_crc32c("abc", 3), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(Tfevents, FrameIsLengthCrcDataCrc) {
  const std::string data = "hello";
  const std::string rec = tfrecord_frame(data);
  ASSERT_EQ(rec.size(), 8u + 4u + data.size() + 4u);
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t{static_cast<unsigned char>(rec[i])} << (8 * i);
  EXPECT_EQ(len, data.size());
  auto u32 = [&](size_t off) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(rec[off + i])} << (8 * i);
    return v;
  };
  EXPECT_EQ(u32(8), masked_crc32c(rec.data(), 8));
  EXPECT_EQ(rec.substr(12, data.size()), data);
  EXPECT_EQ(u32(12 + data.size()), masked_crc32c(data.data(), data.size()));
}

TEST(Tfevents, ScalarEventBytes) {
  // Event{wall_time 1.0 (0x09 + 8 bytes), step 3 (0x10 03), summary (0x2a) {value (0x0a) {tag "a"
  // (0x0a 01 'a'), simple_value 2.0f (0x15 00 00 00 40)}}}.
  const std::string e = encode_scalar_event(1.0, 3, "a", 2.0f);
  const unsigned char want[] = {0x09, 0,    0,    0,    0,    0,    0,    0xf0,
                                0x3f, 0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a,
                                0x01, 'a',  0x15, 0,    0,    0,    0x40};
  ASSERT_EQ(e.size(), sizeof want);
  EXPECT_EQ(std::memcmp(e.data(), want, sizeof want), 0);
}

TEST(Tfevents, FrameEqualsTensorboardsOwnWriter) {
  // The bytes tensorboard 2.21's EventFileWriter writes for Event(wall_time=1.0, step=3,
  // summary=Summary(value=[ Value(tag="a", simple_value=2.0)])) (length 23, its masked CRC, the
  // event, the event's masked CRC).
  const std::string rec = tfrecord_frame(encode_scalar_event(1.0, 3, "a", 2.0f));
  std::string hex;
  for (unsigned char c : rec) {
    const char* d = "0123456789abcdef";
    hex += d[c >> 4];
    hex += d[c & 15];
  }
  EXPECT_EQ(hex, "1700000000000000e7cef81e09000000000000f03f10032a0a0a080a01611500000040b20c7b47");
}

std::string python() {
  const char* p = std::getenv("MEDR1_PYTHON");
  return p != nullptr && *p != '\0' ? std::string(p) : std::string();
}

// Reads `dir` with tensorboard's EventAccumulator; {"scalars": {tag: [[step, value]...]}, "texts":
// {tag:
// [[step, text]...]}, "plugins": {tag: plugin_name}}.
nlohmann::json read_with_tensorboard(const TempDir& tmp, const std::string& dir) {
  const std::string script = tmp.file("read_events.py");
  std::ofstream(script) << R"(import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "texts": {t: [[e.step, e.tensor_proto.string_val[0].decode("utf-8")] for e in acc.Tensors(t)]
                 for t in tags["tensors"]},
       "plugins": {t: acc.SummaryMetadata(t).plugin_data.plugin_name for t in tags["tensors"]}}
print(json.dumps(out))
)";
  const std::string out_file = tmp.file("events.json");
  std::ostringstream cmd;  // (a stream: GCC 12 warns falsely on "'" + std::string chains)
  cmd << "'" << python() << "' '" << script << "' '" << dir << "' > '" << out_file << "' 2> '"
      << out_file << ".err'";
  const int rc = std::system(cmd.str().c_str());
  EXPECT_EQ(rc, 0) << read_bytes(out_file + ".err");
  if (rc != 0) return nlohmann::json::object();
  return nlohmann::json::parse(read_bytes(out_file));
}

TEST(Tfevents, TensorboardReadsBackScalarsAndText) {
  if (python().empty())
    GTEST_SKIP() << "MEDR1_PYTHON not set (ctest sets it to the project's .venv python)";
  TempDir tmp;
  const std::string dir = tmp.file("run");
  const std::vector<double> loss = {0.1234567891, -2.5e-7, 3.0, 1e10};
  std::string path;
  {
    EventFileWriter w(dir);
    path = w.path();
    for (size_t i = 0; i < loss.size(); ++i) {
      w.add_scalar("loss", loss[i], static_cast<int64_t>(i + 1));
      w.add_scalar("rewards/accuracy", 0.25 * static_cast<double>(i), static_cast<int64_t>(i + 1));
      w.flush();
    }
    w.add_text("completions", "step 4: <answer> C </answer> & \"quotes\" \xc3\xa9", 4);
    w.flush();
    // No close: the file must already be readable (a killed run).
    const nlohmann::json got = read_with_tensorboard(tmp, dir);
    ASSERT_TRUE(got.contains("scalars")) << got.dump();
    ASSERT_EQ(got["scalars"]["loss"].size(), loss.size()) << got.dump();
    for (size_t i = 0; i < loss.size(); ++i) {
      EXPECT_EQ(got["scalars"]["loss"][i][0].get<int64_t>(), static_cast<int64_t>(i + 1));
      EXPECT_EQ(got["scalars"]["loss"][i][1].get<double>(),
                static_cast<double>(static_cast<float>(loss[i])));
      EXPECT_EQ(got["scalars"]["rewards/accuracy"][i][1].get<double>(),
                0.25 * static_cast<double>(i));
    }
    ASSERT_EQ(got["texts"]["completions"].size(), 1u) << got.dump();
    EXPECT_EQ(got["texts"]["completions"][0][0].get<int64_t>(), 4);
    EXPECT_EQ(got["texts"]["completions"][0][1].get<std::string>(),
              "step 4: <answer> C </answer> & \"quotes\" \xc3\xa9");
    EXPECT_EQ(got["plugins"]["completions"].get<std::string>(), "text");
  }
  EXPECT_NE(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), std::string::npos);
}

TEST(Tfevents, SessionStartOfAResumedRunReplacesLaterSteps) {
  if (python().empty())
    GTEST_SKIP() << "MEDR1_PYTHON not set (ctest sets it to the project's .venv python)";
  TempDir tmp;
  const std::string dir = tmp.file("run");
  {
    EventFileWriter first(dir);  // steps 1..4 logged, checkpoint at 2, then killed
    for (int s = 1; s <= 4; ++s) first.add_scalar("loss", s, s);
    first.flush();
  }
  {
    EventFileWriter second(dir);  // resumed from step 2: steps 3, 4 again with other values
    ASSERT_NE(second.path(), std::string()) << "second file";
    second.add_session_start(3);
    for (int s = 3; s <= 4; ++s) second.add_scalar("loss", 10 * s, s);
    second.flush();
  }
  const nlohmann::json got = read_with_tensorboard(tmp, dir);
  ASSERT_TRUE(got.contains("scalars")) << got.dump();
  const nlohmann::json want = nlohmann::json::parse("[[1, 1.0], [2, 2.0], [3, 30.0], [4, 40.0]]");
  EXPECT_EQ(got["scalars"]["loss"], want) << got.dump();
}

}  // namespace
}  // namespace medr1::io::test

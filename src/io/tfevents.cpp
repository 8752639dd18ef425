// TensorBoard event files (tfevents.h): CRC32C, TFRecord framing and the few protobuf fields of
// tensorboard.Event / Summary / TensorProto that scalars and text need, encoded by hand (varint
// keys (field << 3 | wire type); wire 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32;
// little-endian).
#include "medr1/io/tfevents.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "medr1/core/error.h"

namespace medr1::io {
namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, uint32_t field, Wire w) {
  put_varint(out, (uint64_t{field} << 3) | w);
}
void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_bytes(std::string& out, uint32_t field, std::string_view s) {
  put_key(out, field, kLen);
  put_varint(out, s.size());
  out.append(s.data(), s.size());
}
void put_double(std::string& out, uint32_t field, double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  put_key(out, field, kFixed64);
  put_le(out, u, 8);
}
void put_float(std::string& out, uint32_t field, float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  put_key(out, field, kFixed32);
  put_le(out, u, 4);
}
void put_int(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));  // two's complement, as protobuf int64
}

// Event{wall_time = 1, step = 2}.
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  put_int(e, 2, step);
  return e;
}
// Event.summary (5) = Summary{value (1) = value}.
std::string event_with_value(double wall_time, int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = kCrcTable[(c ^ p[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord_frame(std::string_view data) {
  std::string len;
  put_le(len, data.size(), 8);
  std::string out = len;
  put_le(out, masked_crc32c(len.data(), len.size()), 4);
  out.append(data.data(), data.size());
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

std::string encode_file_version_event(double wall_time, std::string_view version) {
  std::string e;
  put_double(e, 1, wall_time);
  put_bytes(e, 3, version);
  return e;
}

std::string encode_scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string v;  // Summary.Value{tag = 1, simple_value = 2}
  put_bytes(v, 1, tag);
  put_float(v, 2, value);
  return event_with_value(wall_time, step, v);
}

std::string encode_text_event(double wall_time, int64_t step, std::string_view tag,
                              std::string_view text) {
  std::string plugin;  // SummaryMetadata.PluginData{plugin_name = 1}
  put_bytes(plugin, 1, "text");
  std::string meta;  // SummaryMetadata{plugin_data = 1}
  put_bytes(meta, 1, plugin);
  std::string
      tensor;  // TensorProto{dtype = 1 (DT_STRING = 7), tensor_shape = 2 (scalar), string_val = 8}
  put_int(tensor, 1, 7);
  put_bytes(tensor, 2, "");
  put_bytes(tensor, 8, text);
  std::string v;  // Summary.Value{tag = 1, tensor = 8, metadata = 9}
  put_bytes(v, 1, tag);
  put_bytes(v, 8, tensor);
  put_bytes(v, 9, meta);
  return event_with_value(wall_time, step, v);
}

std::string encode_session_start_event(double wall_time, int64_t step) {
  std::string log;  // SessionLog{status = 1 (START = 1)}
  put_int(log, 1, 1);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 7, log);  // Event.session_log = 7
  return e;
}

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  MEDR1_CHECK(!ec, dir, ": cannot create the TensorBoard log folder: ", ec.message());
  const auto secs = static_cast<long long>(wall_time_now());
  char name[512];  // (snprintf: GCC 12 warns falsely on the std::string concatenation here)
  std::snprintf(name, sizeof name, "events.out.tfevents.%lld.%s", secs, host_name().c_str());
  if (fs::exists(fs::path(dir) / name))
    std::snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%d", secs, host_name().c_str(),
                  static_cast<int>(::getpid()));
  path_ = (fs::path(dir) / name).string();
  f_ = std::fopen(path_.c_str(), "ab");
  MEDR1_CHECK(f_ != nullptr, path_, ": cannot open for writing: ", std::strerror(errno));
  write_event(encode_file_version_event(wall_time_now()));
  flush();
}

EventFileWriter::~EventFileWriter() {
  if (f_) std::fclose(f_);
}

void EventFileWriter::write_event(const std::string& event) {
  const std::string rec = tfrecord_frame(event);
  MEDR1_CHECK(std::fwrite(rec.data(), 1, rec.size(), f_) == rec.size(), path_,
              ": write failed: ", std::strerror(errno));
}

void EventFileWriter::add_scalar(std::string_view tag, double value, int64_t step) {
  write_event(encode_scalar_event(wall_time_now(), step, tag, static_cast<float>(value)));
}

void EventFileWriter::add_text(std::string_view tag, std::string_view text, int64_t step) {
  write_event(encode_text_event(wall_time_now(), step, tag, text));
}

void EventFileWriter::add_session_start(int64_t step) {
  write_event(encode_session_start_event(wall_time_now(), step));
}

void EventFileWriter::flush() {
  MEDR1_CHECK(std::fflush(f_) == 0, path_, ": flush failed: ", std::strerror(errno));
}

}  // namespace medr1::io

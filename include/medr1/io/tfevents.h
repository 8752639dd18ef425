// TensorBoard event files written natively (no TensorFlow / protobuf library): TFRecord framing
// (uint64 length, masked CRC32C of the length, data, masked CRC32C of the data) around hand-encoded
// tensorboard.Event protobufs, as tensorboard's EventFileWriter writes them
// (compat/proto/event.proto, summary.proto, tensor.proto field numbers). Scalars are
// Summary.Value.simple_value; text is a scalar DT_STRING tensor with plugin "text", what
// tf.summary.text writes. Every record is flushed, so a killed run leaves a readable file. No torch
// here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace medr1::io {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t n);
// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);
// One TFRecord: length (u64 LE), masked crc of the length, data, masked crc of the data.
std::string tfrecord_frame(std::string_view data);

// Serialized tensorboard.Event messages (exposed for tests).
std::string encode_file_version_event(double wall_time, std::string_view version = "brain.Event:2");
std::string encode_scalar_event(double wall_time, int64_t step, std::string_view tag, float value);
std::string encode_text_event(double wall_time, int64_t step, std::string_view tag,
                              std::string_view text);
// SessionLog START at `step`: TensorBoard drops the events of earlier files with step >= `step` (a
// resumed run).
std::string encode_session_start_event(double wall_time, int64_t step);

// Appends events to <dir>/events.out.tfevents.<unix seconds>.<hostname> (a ".<pid>" suffix when
// that name is taken); the first record is the file_version event "brain.Event:2".
class EventFileWriter {
 public:
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  const std::string& path() const { return path_; }
  void add_scalar(std::string_view tag, double value, int64_t step);
  void add_text(std::string_view tag, std::string_view text, int64_t step);
  void add_session_start(int64_t step);
  void flush();  // fflush: the records written so far are in the file

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::FILE* f_ = nullptr;
};

// Seconds since the Unix epoch (Event.wall_time).
double wall_time_now();

}  // namespace medr1::io

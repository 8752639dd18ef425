// SHA-256 and SHA-1 digests for Hub downloads, from OpenSSL's libcrypto (EVP). The Hub names a
// large (LFS) file by the sha256 of its bytes and a small (git) file by its git blob id, sha1("blob
// <len>\0" + bytes): the two ETag forms huggingface_hub checks against. Hex output is lower case,
// as the Hub sends it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace medr1::hub {

enum class HashKind { kSha256, kSha1 };

// Incremental digest (update as bytes arrive, hex_digest once at the end).
class Hasher {
 public:
  explicit Hasher(HashKind kind);
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex_digest();  // finalises; the hasher is reset afterwards
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  HashKind kind_;
};

std::string sha256_hex(std::string_view bytes);
std::string sha1_hex(std::string_view bytes);
// git's blob id: sha1("blob " + decimal length + '\0' + bytes).
std::string git_blob_sha1_hex(std::string_view bytes);

// Digests of a file on disk (read in 4 MiB blocks); `prefix_bytes` >= 0 hashes only the first
// bytes.
std::string sha256_file_hex(const std::string& path, int64_t prefix_bytes = -1);
std::string git_blob_sha1_file_hex(const std::string& path);

// What an ETag value names: 64 hex digits = sha256 (LFS), 40 hex digits = git blob sha1; anything
// else neither.
bool is_sha256_hex(std::string_view s);
bool is_sha1_hex(std::string_view s);

}  // namespace medr1::hub

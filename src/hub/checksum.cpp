// SHA-256 / SHA-1 through OpenSSL EVP (checksum.h).
#include "medr1/hub/checksum.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "medr1/core/error.h"

namespace medr1::hub {

struct Hasher::Impl {
  EVP_MD_CTX* ctx = nullptr;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

namespace {

const EVP_MD* md_of(HashKind kind) { return kind == HashKind::kSha256 ? EVP_sha256() : EVP_sha1(); }

std::string to_hex(const unsigned char* d, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (unsigned i = 0; i < n; ++i) {
    s[2 * i] = digits[d[i] >> 4];
    s[2 * i + 1] = digits[d[i] & 15];
  }
  return s;
}

bool is_hex_of_len(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

// Feeds `limit` bytes (all when < 0) of `path` to `h`; returns the count fed.
int64_t feed_file(Hasher& h, const std::string& path, int64_t limit) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MEDR1_CHECK(f != nullptr, path, ": cannot open for hashing: ", std::strerror(errno));
  std::vector<char> buf(4 << 20);
  int64_t total = 0;
  while (limit < 0 || total < limit) {
    size_t want = buf.size();
    if (limit >= 0) want = static_cast<size_t>(std::min<int64_t>(want, limit - total));
    const size_t got = std::fread(buf.data(), 1, want, f);
    if (got == 0) break;
    h.update(buf.data(), got);
    total += static_cast<int64_t>(got);
  }
  const bool err = std::ferror(f) != 0;
  std::fclose(f);
  MEDR1_CHECK(!err, path, ": read error while hashing");
  return total;
}

}  // namespace

Hasher::Hasher(HashKind kind) : impl_(std::make_unique<Impl>()), kind_(kind) {
  impl_->ctx = EVP_MD_CTX_new();
  MEDR1_CHECK(impl_->ctx != nullptr, "OpenSSL: EVP_MD_CTX_new failed");
  reset();
}
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::reset() {
  MEDR1_CHECK(EVP_DigestInit_ex(impl_->ctx, md_of(kind_), nullptr) == 1,
              "OpenSSL: digest init failed");
}

void Hasher::update(const void* data, size_t n) {
  if (n == 0) return;
  MEDR1_CHECK(EVP_DigestUpdate(impl_->ctx, data, n) == 1, "OpenSSL: digest update failed");
}

std::string Hasher::hex_digest() {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  MEDR1_CHECK(EVP_DigestFinal_ex(impl_->ctx, d, &n) == 1, "OpenSSL: digest final failed");
  reset();
  return to_hex(d, n);
}

std::string sha256_hex(std::string_view bytes) {
  Hasher h(HashKind::kSha256);
  h.update(bytes);
  return h.hex_digest();
}

std::string sha1_hex(std::string_view bytes) {
  Hasher h(HashKind::kSha1);
  h.update(bytes);
  return h.hex_digest();
}

std::string git_blob_sha1_hex(std::string_view bytes) {
  Hasher h(HashKind::kSha1);
  const std::string head = "blob " + std::to_string(bytes.size());
  h.update(head.data(), head.size() + 1);  // with the terminating '\0'
  h.update(bytes);
  return h.hex_digest();
}

std::string sha256_file_hex(const std::string& path, int64_t prefix_bytes) {
  Hasher h(HashKind::kSha256);
  const int64_t fed = feed_file(h, path, prefix_bytes);
  MEDR1_CHECK(prefix_bytes < 0 || fed == prefix_bytes, path, ": expected at least ", prefix_bytes,
              " bytes to hash, found ", fed);
  return h.hex_digest();
}

std::string git_blob_sha1_file_hex(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MEDR1_CHECK(f != nullptr, path, ": cannot open for hashing: ", std::strerror(errno));
  std::fseek(f, 0, SEEK_END);
  const long len = std::ftell(f);
  std::fclose(f);
  MEDR1_CHECK(len >= 0, path, ": cannot size for hashing");
  Hasher h(HashKind::kSha1);
  const std::string head = "blob " + std::to_string(len);
  h.update(head.data(), head.size() + 1);
  const int64_t fed = feed_file(h, path, -1);
  MEDR1_CHECK(fed == len, path, ": changed size while hashing");
  return h.hex_digest();
}

bool is_sha256_hex(std::string_view s) { return is_hex_of_len(s, 64); }
bool is_sha1_hex(std::string_view s) { return is_hex_of_len(s, 40); }

}  // namespace medr1::hub

// HF checkpoint-folder helpers: atomic files and folders, side-file copying (checkpoint.h).
#include "medr1/io/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/atomic_file.h"
#include "medr1/core/error.h"

namespace medr1::io {

namespace fs = std::filesystem;

const std::vector<std::string>& hf_side_files() {
  static const std::vector<std::string> files = {
      "tokenizer.json",         "tokenizer_config.json",   "preprocessor_config.json",
      "chat_template.json",     "generation_config.json",  "special_tokens_map.json",
      "added_tokens.json",      "vocab.json",              "merges.txt"};
  return files;
}

void write_file_atomic(const std::string& path, const std::string& content) {
  detail::AtomicFile out(path);
  out.write(content.data(), content.size());
  out.commit();
}

void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent) {
  std::string text;
  try {
    text = j.dump(indent) + "\n";
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": cannot serialise JSON: ", e.what());
  }
  write_file_atomic(path, text);
}

void copy_hf_side_files(const std::string& src_dir, const std::string& dst_dir) {
  std::error_code ec;
  MEDR1_CHECK(fs::is_directory(src_dir, ec), src_dir, ": not a folder");
  fs::create_directories(dst_dir, ec);
  MEDR1_CHECK(!ec, dst_dir, ": cannot create folder (", ec.message(), ")");
  for (const auto& name : hf_side_files()) {
    fs::path src = fs::path(src_dir) / name;
    if (!fs::is_regular_file(src, ec)) continue;
    std::ifstream in(src, std::ios::binary);
    MEDR1_CHECK(in, src.string(), ": cannot open (", std::strerror(errno), ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    MEDR1_CHECK(!in.bad(), src.string(), ": read error");
    write_file_atomic((fs::path(dst_dir) / name).string(), ss.str());
  }
}

namespace {

void fsync_tree(const fs::path& root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_symlink(ec)) continue;
    if (it->is_directory(ec)) {
      detail::fsync_dir(it->path().string());
    } else if (it->is_regular_file(ec)) {
      int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail(it->path().string(), ": cannot open for fsync (", std::strerror(errno), ")");
      int rc = ::fsync(fd);
      int err = errno;
      ::close(fd);
      if (rc != 0) fail(it->path().string(), ": fsync failed (", std::strerror(err), ")");
    }
  }
  MEDR1_CHECK(!ec, root.string(), ": cannot walk folder (", ec.message(), ")");
  detail::fsync_dir(root.string());
}

fs::path normalized(const std::string& p) {
  fs::path x = fs::path(p).lexically_normal();
  if (x.has_filename()) return x;
  return x.parent_path();  // "dir/" -> "dir"
}

}  // namespace

void recover_dir_atomic(const std::string& final_dir) {
  fs::path fin = normalized(final_dir);
  fs::path old = fin;
  old += ".old";
  std::error_code ec;
  if (!fs::exists(old, ec)) return;
  if (!fs::exists(fin, ec)) {
    if (::rename(old.c_str(), fin.c_str()) != 0)
      fail(fin.string(), ": cannot restore from ", old.string(), " (", std::strerror(errno), ")");
  } else {
    fs::remove_all(old, ec);
    MEDR1_CHECK(!ec, old.string(), ": cannot remove stale folder (", ec.message(), ")");
  }
  detail::fsync_dir(detail::parent_dir(fin.string()));
}

void commit_dir_atomic(const std::string& tmp_dir, const std::string& final_dir) {
  fs::path tmp = normalized(tmp_dir);
  fs::path fin = normalized(final_dir);
  std::error_code ec;
  MEDR1_CHECK(fs::is_directory(tmp, ec), tmp.string(), ": not a folder (nothing to commit)");
  MEDR1_CHECK(fs::weakly_canonical(tmp, ec) != fs::weakly_canonical(fin, ec), tmp.string(),
              ": commit_dir_atomic needs two different folders");
  recover_dir_atomic(fin.string());
  fsync_tree(tmp);
  const std::string tmp_parent = detail::parent_dir(tmp.string());
  const std::string fin_parent = detail::parent_dir(fin.string());

  auto sync_parents = [&] {
    detail::fsync_dir(fin_parent);
    if (fs::weakly_canonical(tmp_parent, ec) != fs::weakly_canonical(fin_parent, ec))
      detail::fsync_dir(tmp_parent);
  };

  if (!fs::exists(fin, ec)) {
    if (::rename(tmp.c_str(), fin.c_str()) != 0)
      fail(fin.string(), ": cannot rename ", tmp.string(), " into place (", std::strerror(errno),
           ")");
    sync_parents();
    return;
  }
  MEDR1_CHECK(fs::is_directory(fin, ec), fin.string(), ": exists and is not a folder");

  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, fin.c_str(), RENAME_EXCHANGE) == 0) {
    // tmp now holds the old content.
    sync_parents();
    fs::remove_all(tmp, ec);
    MEDR1_CHECK(!ec, tmp.string(), ": cannot remove the replaced folder (", ec.message(), ")");
    return;
  }
  const int err = errno;
  MEDR1_CHECK(err == EINVAL || err == ENOSYS || err == ENOTSUP, fin.string(),
              ": cannot swap in ", tmp.string(), " (", std::strerror(err), ")");

  // Fallback: two renames; recover_dir_atomic repairs a crash between them.
  fs::path old = fin;
  old += ".old";
  if (::rename(fin.c_str(), old.c_str()) != 0)
    fail(fin.string(), ": cannot move aside to ", old.string(), " (", std::strerror(errno), ")");
  if (::rename(tmp.c_str(), fin.c_str()) != 0) {
    int e = errno;
    ::rename(old.c_str(), fin.c_str());  // put the old one back
    fail(fin.string(), ": cannot rename ", tmp.string(), " into place (", std::strerror(e), ")");
  }
  sync_parents();
  fs::remove_all(old, ec);
  MEDR1_CHECK(!ec, old.string(), ": cannot remove the replaced folder (", ec.message(), ")");
  detail::fsync_dir(fin_parent);
}

}  // namespace medr1::io

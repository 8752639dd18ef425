// checkpoint.h: atomic files, side-file copying and the atomic folder commit/recovery.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>

#include "io_test_util.h"
#include "medr1/io/checkpoint.h"

using namespace medr1::io;
using namespace medr1::io::test;

TEST(Checkpoint, WriteFileAtomic) {
  TempDir d;
  const std::string p = d.file("a.txt");
  write_file_atomic(p, "first");
  EXPECT_EQ(read_bytes(p), "first");
  write_file_atomic(p, std::string("sec\0nd", 6));
  EXPECT_EQ(read_bytes(p), std::string("sec\0nd", 6));
  write_json_atomic(d.file("c.json"), nlohmann::json{{"b", 1}, {"a", {1, 2}}});
  EXPECT_EQ(read_bytes(d.file("c.json")), "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}\n");
  // Failure (target is a non-empty folder): nothing replaced, no temp file left.
  fs::create_directories(d.path / "busy" / "x");
  EXPECT_THROW(write_file_atomic(d.file("busy"), "x"), medr1::Error);
  EXPECT_TRUE(fs::is_directory(d.path / "busy" / "x"));
  EXPECT_THROW(write_file_atomic(d.file("missing/a.txt"), "x"), medr1::Error);
  EXPECT_EQ(count_temp_files(d.path), 0);
}

TEST(Checkpoint, CopyHfSideFiles) {
  TempDir d;
  fs::create_directories(d.path / "src");
  write_bytes(d.file("src/tokenizer.json"), "{\"tok\": 1}");
  write_bytes(d.file("src/merges.txt"), "a b\n");
  write_bytes(d.file("src/chat_template.json"), "{}");
  write_bytes(d.file("src/model.safetensors"), "weights are not side files");
  write_bytes(d.file("src/config.json"), "{}");  // config is written by the model code
  copy_hf_side_files(d.file("src"), d.file("dst/sub"));
  std::vector<std::string> got;
  for (const auto& e : fs::directory_iterator(d.path / "dst" / "sub"))
    got.push_back(e.path().filename().string());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"chat_template.json", "merges.txt", "tokenizer.json"}));
  EXPECT_EQ(read_bytes(d.file("dst/sub/tokenizer.json")), "{\"tok\": 1}");
  EXPECT_EQ(hf_side_files().size(), 9u);
  EXPECT_THROW(copy_hf_side_files(d.file("nope"), d.file("dst")), medr1::Error);
}

TEST(Checkpoint, CommitDirAtomic) {
  TempDir d;
  const std::string fin = d.file("checkpoint-10");
  // First commit: plain rename.
  fs::create_directories(d.path / "tmp1");
  write_bytes(d.file("tmp1/state.json"), "v1");
  commit_dir_atomic(d.file("tmp1"), fin);
  EXPECT_FALSE(fs::exists(d.path / "tmp1"));
  EXPECT_EQ(read_bytes(fin + "/state.json"), "v1");

  // Replacing an existing folder: new content in, old content (and extra files) gone.
  write_bytes(fin + "/stale.bin", "old only");
  fs::create_directories(d.path / "tmp2" / "nested");
  write_bytes(d.file("tmp2/state.json"), "v2");
  write_bytes(d.file("tmp2/nested/x"), "n");
  commit_dir_atomic(d.file("tmp2") + "/", fin);
  EXPECT_FALSE(fs::exists(d.path / "tmp2"));
  EXPECT_EQ(read_bytes(fin + "/state.json"), "v2");
  EXPECT_EQ(read_bytes(fin + "/nested/x"), "n");
  EXPECT_FALSE(fs::exists(fin + "/stale.bin"));
  EXPECT_FALSE(fs::exists(fin + ".old"));

  // Errors: missing tmp folder, same folder, final path is a file.
  EXPECT_THROW(commit_dir_atomic(d.file("absent"), fin), medr1::Error);
  EXPECT_THROW(commit_dir_atomic(fin, fin), medr1::Error);
  write_bytes(d.file("afile"), "x");
  fs::create_directories(d.path / "tmp3");
  EXPECT_THROW(commit_dir_atomic(d.file("tmp3"), d.file("afile")), medr1::Error);
  EXPECT_EQ(read_bytes(fin + "/state.json"), "v2");
}

// A crash between the two renames of the fallback path leaves only final.old: recovery puts it
// back; a leftover .old next to a complete final folder is removed.
TEST(Checkpoint, RecoverDirAtomic) {
  TempDir d;
  const std::string fin = d.file("ckpt");
  fs::create_directories(fin + ".old");
  write_bytes(fin + ".old/state.json", "old");
  recover_dir_atomic(fin);
  EXPECT_EQ(read_bytes(fin + "/state.json"), "old");
  EXPECT_FALSE(fs::exists(fin + ".old"));

  fs::create_directories(fin + ".old");
  recover_dir_atomic(fin);
  EXPECT_FALSE(fs::exists(fin + ".old"));
  EXPECT_EQ(read_bytes(fin + "/state.json"), "old");

  // commit_dir_atomic recovers first, then replaces.
  fs::rename(fin, fin + ".old");
  fs::create_directories(d.path / "new");
  write_bytes(d.file("new/state.json"), "new");
  commit_dir_atomic(d.file("new"), fin);
  EXPECT_EQ(read_bytes(fin + "/state.json"), "new");
  EXPECT_FALSE(fs::exists(fin + ".old"));
  recover_dir_atomic(d.file("never-existed"));  // no-op
}

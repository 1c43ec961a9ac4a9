#include "common/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace ftune {
namespace {

std::string TestDir() {
  char tmpl[] = "/tmp/ftune_files_test.XXXXXX";
  return mkdtemp(tmpl);
}

TEST(Files, Sha256KnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Files, AtomicWriteReplacesWholeFileAndLeavesNoTemp) {
  std::string dir = TestDir();
  std::string path = dir + "/a.txt";
  ASSERT_TRUE(WriteFileAtomic(path, "first version").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  auto got = ReadFileToString(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "second");
  EXPECT_FALSE(PathExists(TempPathFor(path)));
  auto sha = Sha256File(path);
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(*sha, Sha256Hex("second"));
}

TEST(Files, WriteIntoMissingDirectoryFailsCleanly) {
  auto st = WriteFileAtomic("/nonexistent-dir-ftune/x.txt", "x");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_NE(st.message().find("/nonexistent-dir-ftune/x.txt"), std::string::npos);
}

TEST(Files, MakeDirsIsIdempotentAndRejectsFiles) {
  std::string dir = TestDir() + "/a/b/c";
  EXPECT_TRUE(MakeDirs(dir).ok());
  EXPECT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/f", "x").ok());
  EXPECT_EQ(MakeDirs(dir + "/f").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Files, ReadingADirectoryIsAnErrorNotAnEmptyFile) {
  auto got = ReadFileToString(TestDir());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("not a regular file"), std::string::npos);
}

TEST(Files, ReadMissingFileNamesThePath) {
  auto got = ReadFileToString("/nonexistent-ftune-file");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("/nonexistent-ftune-file"), std::string::npos);
}

}  // namespace
}  // namespace ftune

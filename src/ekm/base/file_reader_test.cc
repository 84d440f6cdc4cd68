#include "ekm/base/file_reader.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(FileReaderTest, ReadsAWholeFileUpToItsLimit) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/f";
  Write(path, "12345");
  auto exact = ReadSmallFile(path, "test file", 5);
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  EXPECT_EQ(*exact, "12345");
  auto secret = ReadSecretFile(path, "test file", 5);
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(secret->size(), 5u);
  // One byte over is refused, naming the file and the limit.
  auto over = ReadSmallFile(path, "test file", 4);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(over.status().message(), "test file " + path + " is larger than 4 bytes");
  EXPECT_FALSE(ReadSecretFile(path, "test file", 4).ok());
  Write(path, "");
  auto empty = ReadSmallFile(path, "test file", 4);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(FileReaderTest, SaysWhatIsWrongWithAPath) {
  testing::TempDir dir;
  auto missing = ReadSmallFile(dir.path() + "/nope", "token file", 64);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "token file " + dir.path() + "/nope does not exist");
  EXPECT_EQ(ReadSmallFile(dir.path() + "/nope/deeper", "f", 64).status().code(),
            StatusCode::kNotFound);
  auto directory = ReadSmallFile(dir.path(), "token file", 64);
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(directory.status().message().find("cannot read token file"), std::string::npos)
      << directory.status().ToString();
}

}  // namespace
}  // namespace ekm

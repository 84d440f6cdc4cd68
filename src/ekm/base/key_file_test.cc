#include "ekm/base/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

class KeyFileTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }
  Bytes Contents() { return Bytes{'k', 'e', 'y', '\n'}; }
  testing::TempDir dir_;
};

TEST_F(KeyFileTest, WritesOnceWithMode0600AndReadsBack) {
  ASSERT_TRUE(WriteNewKeyFile(Path("k"), "test key file", Contents()).ok());
  struct stat st {};
  ASSERT_EQ(::stat(Path("k").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto read = ReadKeyFile(Path("k"), "test key file", 100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(*read == SecretBytes(Contents()));
  EXPECT_EQ(WriteNewKeyFile(Path("k"), "test key file", Contents()).code(),
            StatusCode::kAlreadyExists);
  auto missing = ReadKeyFile(Path("none"), "test key file", 100);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("test key file " + Path("none")), std::string::npos);
  auto large = ReadKeyFile(Path("k"), "test key file", 3);
  EXPECT_EQ(large.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(KeyFileTest, RefusesASymbolicLinkAndNeverWritesThroughOne) {
  ASSERT_TRUE(WriteNewKeyFile(Path("real"), "test key file", Contents()).ok());
  ASSERT_EQ(::symlink(Path("real").c_str(), Path("link").c_str()), 0);
  auto read = ReadKeyFile(Path("link"), "test key file", 100);
  EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(read.status().message().find("is a symbolic link"), std::string::npos)
      << read.status().ToString();
  ASSERT_EQ(::symlink(Path("elsewhere").c_str(), Path("dangling").c_str()), 0);
  EXPECT_EQ(WriteNewKeyFile(Path("dangling"), "test key file", Contents()).code(),
            StatusCode::kAlreadyExists);
  struct stat st {};
  EXPECT_NE(::stat(Path("elsewhere").c_str(), &st), 0);
}

TEST_F(KeyFileTest, RefusesWhatIsNotARegularFile) {
  ASSERT_EQ(::mkdir(Path("dir").c_str(), 0700), 0);
  ASSERT_EQ(::mkfifo(Path("fifo").c_str(), 0600), 0);
  for (const char* name : {"dir", "fifo"}) {  // a FIFO must not block the read
    auto read = ReadKeyFile(Path(name), "test key file", 100);
    EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition) << name;
    EXPECT_NE(read.status().message().find("is not a regular file"), std::string::npos)
        << read.status().ToString();
  }
}

TEST_F(KeyFileTest, RefusesAFileOfAnotherUserOrReadableByOthers) {
  ASSERT_TRUE(WriteNewKeyFile(Path("k"), "test key file", Contents()).ok());
  ASSERT_EQ(::chmod(Path("k").c_str(), 0640), 0);
  auto open = ReadKeyFile(Path("k"), "test key file", 100);
  EXPECT_EQ(open.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(open.status().message().find("(mode 0640)"), std::string::npos);
  EXPECT_NE(open.status().hint().find("chmod 600"), std::string::npos);
  // Another user's file: as root, one given away; otherwise one of root's.
  std::string theirs = "/etc/passwd";
  if (::geteuid() == 0) {
    ASSERT_EQ(::chmod(Path("k").c_str(), 0600), 0);
    ASSERT_EQ(::chown(Path("k").c_str(), 4242, 4242), 0);
    theirs = Path("k");
  }
  auto other = ReadKeyFile(theirs, "test key file", 4096);
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find(" is owned by uid "), std::string::npos)
      << other.status().ToString();
  EXPECT_NE(other.status().message().find("not by the user ekm runs as"), std::string::npos);
}

}  // namespace
}  // namespace ekm

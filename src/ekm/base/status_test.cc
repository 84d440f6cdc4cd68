#include "ekm/base/status.h"

#include <gtest/gtest.h>

namespace ekm {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("odd", "pass an even number");
  return x / 2;
}

Status UseHalf(int x, int* out) {
  EKM_ASSIGN_OR_RETURN(*out, Half(x));
  return Status::Ok();
}

TEST(StatusTest, OkAndError) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFoundError("workspace \"a\" not found", "create it first");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "workspace \"a\" not found (create it first)");
  EXPECT_EQ(s.WithContext("decrypt").message(), "decrypt: workspace \"a\" not found");
  EXPECT_EQ(StatusCodeName(StatusCode::kDataLoss), "data_loss");
}

TEST(StatusTest, MacrosPropagate) {
  int v = 0;
  EXPECT_TRUE(UseHalf(4, &v).ok());
  EXPECT_EQ(v, 2);
  Status s = UseHalf(3, &v);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.hint(), "pass an even number");
}

}  // namespace
}  // namespace ekm

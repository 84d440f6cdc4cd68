// The route table is the one description of the API's routes: every row matches itself, and
// nothing else answers.
#include "ekm/server/routes.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace ekm {
namespace {

// The template with sample names in its placeholders.
std::string Instantiate(std::string_view templ) {
  std::string out(templ);
  for (auto [from, to] : {std::pair<std::string, std::string>{"{workspace}", "acme"},
                          {"{environment}", "prod"},
                          {"{id}", "abc123"}}) {
    for (size_t p; (p = out.find(from)) != std::string::npos;) out.replace(p, from.size(), to);
  }
  return out;
}

TEST(RouteTableTest, EveryRowMatchesItselfWithItsPlaceholders) {
  Router router(nullptr);
  for (const RouteInfo& route : RouteTable()) {
    RouteRequest r;
    r.method = std::string(route.method);
    r.target = Instantiate(route.path);
    r.content_type = "application/json";
    RouteMatch m = router.MatchRoute(r);
    ASSERT_TRUE(m.status.ok()) << route.path << ": " << m.status.ToString();
    EXPECT_EQ(m.id, route.id) << route.path;
    if (route.path.find("{workspace}") != std::string_view::npos) {
      EXPECT_EQ(m.workspace, "acme");
    }
    if (route.path.find("{environment}") != std::string_view::npos) {
      EXPECT_EQ(m.environment, "prod");
    }
    EXPECT_EQ(&RouteInfoFor(route.id), &route);
  }
}

TEST(RouteTableTest, NamesAndMethodPathPairsAreUnique) {
  std::set<std::string> names, keys;
  for (const RouteInfo& route : RouteTable()) {
    EXPECT_TRUE(names.insert(std::string(route.name)).second) << route.name;
    EXPECT_TRUE(keys.insert(std::string(route.method) + " " + std::string(route.path)).second)
        << route.path;
  }
}

TEST(RouteTableTest, WrongMethodListsTheAllowedOnesAndUnknownPathsAreNotFound) {
  Router router(nullptr);
  auto request = [](std::string method, std::string target) {
    RouteRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    return r;
  };
  RouteMatch m = router.MatchRoute(request("DELETE", "/v1/workspaces"));
  EXPECT_TRUE(m.method_not_allowed);
  EXPECT_EQ(m.allow, "GET, POST");
  m = router.MatchRoute(request("GET", "/v1/nothing-here"));
  EXPECT_EQ(m.status.code(), StatusCode::kNotFound);
  m = router.MatchRoute(request("GET", "/v1/workspaces/a%zz"));
  EXPECT_EQ(m.status.code(), StatusCode::kInvalidArgument);
}

// --- issue5-A ---
TEST(RouteTableTest, AMatchWithoutATokenCheckIsNeverServed) {
  Router router(nullptr);
  RouteRequest r;
  r.method = "GET";
  r.target = "/v1/workspaces";
  RouteMatch m = router.MatchRoute(r);
  ASSERT_TRUE(m.status.ok());
  EXPECT_FALSE(m.authenticated);
  EXPECT_EQ(router.Handle(m, "").status, 401);
  EXPECT_EQ(router.OpenStream(m).status().code(), StatusCode::kUnauthenticated);
  // Match checks tokens; without a service to check them it refuses rather than serves.
  EXPECT_FALSE(router.Match(r).status.ok());
  r.target = "/healthz";
  EXPECT_TRUE(router.Match(r).authenticated);  // the one open route
}

}  // namespace
}  // namespace ekm

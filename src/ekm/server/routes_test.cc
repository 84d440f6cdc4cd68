// The route table is the one description of the API's routes: every row matches itself, and
// nothing else answers.
#include "ekm/server/routes.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "ekm/server/route_handlers.h"

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

TEST(RouteTableTest, EveryRowHasAHandler) {
  for (const RouteInfo& r : RouteTable()) {
    EXPECT_NE(HandlerFor(r.id), nullptr) << r.name << " has no handler in route_handlers.cc";
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
  // A bad escape in the query is refused too, not read as an empty scope.
  m = router.MatchRoute(request("POST", "/v1/workspaces/a/environments/b/encrypt?scope=%zz"));
  EXPECT_EQ(m.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status.message().find("query string"), std::string::npos);
  RouteRequest good = request("POST", "/v1/workspaces/a/environments/b/encrypt?scope=o%72ders");
  good.content_type = "application/json";
  m = router.MatchRoute(good);
  EXPECT_TRUE(m.status.ok()) << m.status.ToString();
  EXPECT_EQ(m.scope, "orders");
}

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

// "METHOD /path" of every operation in docs/openapi.yaml. A line scanner, not a YAML parser:
// under `paths:`, a path is a key at indent 2 starting with '/', an operation a method key at
// indent 4.
std::set<std::string> OpenApiOperations(const std::string& file) {
  std::ifstream in(file);
  std::set<std::string> ops;
  std::string line, path;
  bool in_paths = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] != ' ') {
      in_paths = line.rfind("paths:", 0) == 0;
      continue;
    }
    if (!in_paths) continue;
    if (line.rfind("  /", 0) == 0) {
      path = line.substr(2, line.find(':', 2) - 2);
      if (path.size() >= 2 && (path.front() == '\'' || path.front() == '"')) {
        path = path.substr(1, path.size() - 2);
      }
      continue;
    }
    if (line.size() > 4 && line.rfind("    ", 0) == 0 && line[4] != ' ') {
      std::string key = line.substr(4, line.find(':') - 4);
      for (const char* m : {"get", "put", "post", "patch", "delete", "head", "options"}) {
        if (key != m) continue;
        for (char& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        ops.insert(key + " " + path);
      }
    }
  }
  return ops;
}

TEST(RouteTableTest, OpenApiSpecDescribesExactlyTheRouteTable) {
  std::set<std::string> spec =
      OpenApiOperations(std::string(EKM_SOURCE_DIR) + "/docs/openapi.yaml");
  ASSERT_FALSE(spec.empty()) << "docs/openapi.yaml has no operations (or is missing)";
  std::set<std::string> table;
  for (const RouteInfo& route : RouteTable()) {
    table.insert(std::string(route.method) + " " + std::string(route.path));
  }
  for (const std::string& op : table) {
    EXPECT_TRUE(spec.count(op)) << op << " is a route but not in docs/openapi.yaml";
  }
  for (const std::string& op : spec) {
    EXPECT_TRUE(table.count(op)) << op << " is in docs/openapi.yaml but not a route";
  }
}

TEST(RouteTableTest, BatchAndDataKeyRoutesMatch) {
  Router router(nullptr);
  RouteRequest r;
  r.method = "POST";
  r.content_type = "application/json";
  for (auto [target, id] :
       {std::pair<std::string, RouteId>{"/v1/workspaces/a/environments/p/encrypt/batch",
                                        RouteId::kEncryptBatch},
        {"/v1/workspaces/a/environments/p/decrypt/batch", RouteId::kDecryptBatch},
        {"/v1/workspaces/a/environments/p/generate-data-key", RouteId::kGenerateDataKey},
        {"/v1/workspaces/a/environments/p/key/validate", RouteId::kValidateKey}}) {
    r.target = target;
    RouteMatch m = router.MatchRoute(r);
    ASSERT_TRUE(m.status.ok()) << target;
    EXPECT_EQ(m.id, id) << target;
    EXPECT_FALSE(m.streaming) << target;
  }
  // The batch forms take JSON only: a stream is refused, not taken for a single message.
  r.target = "/v1/workspaces/a/environments/p/encrypt/batch";
  r.content_type = "application/octet-stream";
  EXPECT_TRUE(router.MatchRoute(r).unsupported_media_type);
}

// A number beyond the range of a double (which nlohmann::json throws as out_of_range, not as a
// parse error) is the caller's mistake: a 400 naming where it is, never an exception. The body is
// read before the service is asked, so no service is needed here.
TEST(RouteHandlerTest, NumbersOutOfRangeAre400NamingLineAndColumn) {
  Router router(nullptr);
  struct Case {
    RouteId id;
    std::string body, where;
  };
  for (const Case& c : std::vector<Case>{
           {RouteId::kCreateWorkspace, "{\"name\": 1e309}", "line 1, column 10"},
           {RouteId::kCreateWorkspace, "{\"name\":\n  -1e400}", "line 2, column 3"},
           {RouteId::kCreateWorkspace, "[1" + std::string(400, '0') + "]", "line 1, column 2"},
           // The data plane's fast path leaves anything but strings to the full parser.
           {RouteId::kEncrypt, "{\"plaintext\": 1e309}", "line 1, column 15"},
           {RouteId::kDecrypt, "{\"ciphertext\": \"ekm1:x\", \"n\": 9e999}", "line 1, column 31"},
       }) {
    RouteMatch m;
    m.id = c.id;
    m.found = true;
    m.authenticated = true;
    RouteResponse res = router.Handle(m, c.body);
    EXPECT_EQ(res.status, 400) << c.body << ": " << res.body;
    EXPECT_NE(res.body.find(c.where), std::string::npos) << res.body;
    EXPECT_NE(res.body.find("out of range"), std::string::npos) << res.body;
    EXPECT_NE(res.body.find("invalid_argument"), std::string::npos) << res.body;
  }
  // Syntax errors keep naming where they are.
  RouteMatch m;
  m.id = RouteId::kCreateWorkspace;
  m.found = true;
  m.authenticated = true;
  RouteResponse res = router.Handle(m, "{\"name\": \n  tru}");
  EXPECT_EQ(res.status, 400);
  EXPECT_NE(res.body.find("line 2, column 6: syntax error"), std::string::npos) << res.body;
}

}  // namespace
}  // namespace ekm

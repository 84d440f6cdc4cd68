// The route table is the one description of the API's routes: every row matches itself, and
// nothing else answers.
#include "ekm/server/routes.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ekm/api/operation_handlers.h"

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

// What docs/openapi.yaml says of one operation.
struct SpecOperation {
  bool request_body = false;  // it has a requestBody
  int success = 0;            // its first 2xx response
};

// Every operation in docs/openapi.yaml by "METHOD /path". A line scanner, not a YAML parser:
// under `paths:`, a path is a key at indent 2 starting with '/', an operation a method key at
// indent 4, its requestBody and responses keys at 6, a response status at 8.
std::map<std::string, SpecOperation> OpenApiOperations(const std::string& file) {
  std::ifstream in(file);
  std::map<std::string, SpecOperation> ops;
  std::string line, path;
  SpecOperation* op = nullptr;
  bool in_paths = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] != ' ') {
      in_paths = line.rfind("paths:", 0) == 0;
      op = nullptr;
      continue;
    }
    if (!in_paths) continue;
    if (line.rfind("  /", 0) == 0) {
      path = line.substr(2, line.find(':', 2) - 2);
      if (path.size() >= 2 && (path.front() == '\'' || path.front() == '"')) {
        path = path.substr(1, path.size() - 2);
      }
      op = nullptr;
      continue;
    }
    if (line.size() > 4 && line.rfind("    ", 0) == 0 && line[4] != ' ') {
      std::string key = line.substr(4, line.find(':') - 4);
      op = nullptr;
      for (const char* m : {"get", "put", "post", "patch", "delete", "head", "options"}) {
        if (key != m) continue;
        for (char& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        op = &ops[key + " " + path];
      }
      continue;
    }
    if (op == nullptr) continue;
    if (line.rfind("      requestBody:", 0) == 0) op->request_body = true;
    if (op->success == 0 && line.rfind("        '2", 0) == 0 && line.size() > 12) {
      op->success = std::atoi(line.c_str() + 9);
    }
  }
  return ops;
}

// The spec and the table name the same operations, and agree on each one's body and success
// status.
TEST(RouteTableTest, OpenApiSpecDescribesExactlyTheRouteTable) {
  std::map<std::string, SpecOperation> spec =
      OpenApiOperations(std::string(EKM_SOURCE_DIR) + "/docs/openapi.yaml");
  ASSERT_FALSE(spec.empty()) << "docs/openapi.yaml has no operations (or is missing)";
  std::set<std::string> table;
  for (const RouteInfo& route : RouteTable()) {
    const std::string op = std::string(route.method) + " " + std::string(route.path);
    table.insert(op);
    auto it = spec.find(op);
    if (it == spec.end()) {
      ADD_FAILURE() << op << " is a route but not in docs/openapi.yaml";
      continue;
    }
    EXPECT_EQ(it->second.success, route.success_status) << op;
    // A route that takes a body documents it (those taking only {} may leave it out).
    if (it->second.request_body) {
      EXPECT_NE(route.body, RouteBody::kNone) << op;
    }
  }
  for (const auto& [op, unused] : spec) {
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

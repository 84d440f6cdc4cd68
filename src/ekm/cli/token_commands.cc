// ekm token create / list / revoke / show: API tokens, ekmd's bearer credentials.
#include <openssl/crypto.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ekm/api/lifecycle_json.h"
#include "ekm/base/clock.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/print.h"

namespace ekm::cli {
namespace {

struct TokenCreateFlags {
  ApiTokenRequest request;
  std::string expires;
};

struct TokenListFlags {
  std::string workspace;
  bool workspace_given = false;
};

Status CreateToken(const Cli& cli, Connection& b, const ApiTokenRequest& request) {
  EKM_ASSIGN_OR_RETURN(NewApiToken t, b.api().CreateApiToken(b.ctx(), request));
  auto text = t.token.RevealForCrypto();
  std::string_view token_text(reinterpret_cast<const char*>(text.data()), text.size());
  if (cli.g.json) {
    nlohmann::json j = ApiTokenInfoJson(t.info, ToUnixSeconds(cli.clock.Now()));
    j["token"] = token_text;
    std::cout << j.dump(2) << "\n";
    std::string& held = j["token"].get_ref<std::string&>();
    OPENSSL_cleanse(held.data(), held.size());
    return Status::Ok();
  }
  std::printf("%.*s\n", static_cast<int>(token_text.size()), token_text.data());
  std::fprintf(
      stderr, "created token %s (role %s%s%s, expires %s): shown only now\n", t.info.id.c_str(),
      t.info.role.c_str(), t.info.workspace.empty() ? "" : ", workspace ", t.info.workspace.c_str(),
      t.info.expires_at == 0 ? "never" : FormatRfc3339(FromUnixSeconds(t.info.expires_at)).c_str());
  return Status::Ok();
}

void AddCreate(CLI::App& token, Cli& cli) {
  TokenCreateFlags& f = cli.Keep<TokenCreateFlags>();
  auto* create = token.add_subcommand(
      "create", "Create an API token: prints it alone on stdout (shown only now)");
  create->add_option("--workspace,-w", f.request.workspace,
                     "The workspace it acts on (not for admin)");
  create->add_option("--role,-r", f.request.role, "admin, owner, key-manager, app or auditor")
      ->required();
  create->add_option("--environment,-e", f.request.environments,
                     "Restrict it to this environment (repeat for several)");
  create->add_option("--expires-in", f.expires,
                     "Lifetime, e.g. 30d, 12h: 1m to 366d [default: 90d]");
  create->add_option("--description", f.request.description, "What it is for (public)");
  create->callback([c = &cli, f = &f] {
    if (!f->expires.empty()) {
      auto d = ParseDurationSeconds(f->expires);  // the one duration syntax of the CLI
      if (!d.ok()) {
        c->rc = Fail(d.status());
        return;
      }
      f->request.expires_in = std::chrono::seconds(*d);
    }
    c->WithConnection([c, f](Connection& b) { return CreateToken(*c, b, f->request); });
  });
}

void PrintTokens(const std::vector<ApiTokenInfo>& list, const Clock& clock) {
  std::printf("%-16s  %-11s  %-16s  %-16s  %-8s  %-20s  %s\n", "ID", "ROLE", "WORKSPACE",
              "ENVIRONMENTS", "STATE", "EXPIRES", "DESCRIPTION");
  for (const auto& t : list) {
    nlohmann::json j = ApiTokenInfoJson(t, ToUnixSeconds(clock.Now()));
    std::string envs;
    for (const auto& e : t.environments) envs += (envs.empty() ? "" : ",") + e;
    std::string expires = j["expires_at"].is_null() ? "never" : j["expires_at"].get<std::string>();
    std::printf("%-16s  %-11s  %-16s  %-16s  %-8s  %-20s  %s\n", t.id.c_str(), t.role.c_str(),
                t.workspace.empty() ? "-" : t.workspace.c_str(),
                envs.empty() ? "all" : envs.c_str(), j["state"].get<std::string>().c_str(),
                expires.c_str(), t.description.c_str());
  }
}

Status ListTokens(const Cli& cli, Connection& b, const TokenListFlags& f) {
  std::optional<std::string> filter;
  if (f.workspace_given) filter = f.workspace;
  EKM_ASSIGN_OR_RETURN(std::vector<ApiTokenInfo> list, b.api().ListApiTokens(b.ctx(), filter));
  if (cli.g.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& t : list) arr.push_back(ApiTokenInfoJson(t, ToUnixSeconds(cli.clock.Now())));
    std::cout << nlohmann::json{{"tokens", arr}}.dump(2) << "\n";
    return Status::Ok();
  }
  if (list.empty()) {
    std::fprintf(stderr, "no tokens\n");
    return Status::Ok();
  }
  PrintTokens(list, cli.clock);
  return Status::Ok();
}

void AddList(CLI::App& token, Cli& cli) {
  TokenListFlags& f = cli.Keep<TokenListFlags>();
  auto* list = token.add_subcommand("list", "List API tokens (never their secrets)");
  list->add_option("--workspace,-w", f.workspace, "Only this workspace's tokens")
      ->each([f = &f](const std::string&) { f->workspace_given = true; });
  list->callback([c = &cli, f = &f] {
    c->WithConnection([c, f](Connection& b) { return ListTokens(*c, b, *f); });
  });
}

void AddRevoke(CLI::App& token, Cli& cli) {
  std::string& id = cli.Keep<std::string>();
  auto* revoke = token.add_subcommand("revoke",
                                      "Revoke an API token (at once on this ekmd; "
                                      "within 5 s on the others)");
  revoke->add_option("ID", id, "The token's id (16 hex, from `ekm token list`)")->required();
  revoke->callback([c = &cli, id = &id] {
    c->WithConnection([c, id](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(ApiTokenInfo t, b.api().RevokeApiToken(b.ctx(), *id));
      if (c->g.json) {
        std::cout << ApiTokenInfoJson(t, ToUnixSeconds(c->clock.Now())).dump(2) << "\n";
      } else {
        std::printf("revoked token %s\n", t.id.c_str());
      }
      return Status::Ok();
    });
  });
}

Status ShowToken(const Cli& cli, Connection& b, const std::string& id) {
  std::optional<ApiTokenInfo> t;
  if (!id.empty()) {
    EKM_ASSIGN_OR_RETURN(t, b.api().GetApiToken(b.ctx(), id));
  } else {
    EKM_ASSIGN_OR_RETURN(t, b.api().WhoAmI(b.ctx()));
  }
  if (!t) {
    if (cli.g.json) {
      std::cout << nlohmann::json{{"local_operator", true}}.dump(2) << "\n";
    } else {
      std::printf("local mode: the platform operator (no token; every action allowed)\n");
    }
    return Status::Ok();
  }
  nlohmann::json j = ApiTokenInfoJson(*t, ToUnixSeconds(cli.clock.Now()));
  if (cli.g.json) {
    std::cout << j.dump(2) << "\n";
    return Status::Ok();
  }
  std::string envs;
  for (const auto& e : t->environments) envs += (envs.empty() ? "" : ",") + e;
  std::printf(
      "token:        %s\nrole:         %s\nworkspace:    %s\nenvironments: %s\n"
      "expires:      %s\nstate:        %s\n",
      t->id.c_str(), t->role.c_str(), t->workspace.empty() ? "(platform)" : t->workspace.c_str(),
      envs.empty() ? "all" : envs.c_str(),
      j["expires_at"].is_null() ? "never" : j["expires_at"].get<std::string>().c_str(),
      j["state"].get<std::string>().c_str());
  return Status::Ok();
}

void AddShow(CLI::App& token, Cli& cli) {
  auto* show = token.add_subcommand(
      "show", "Show a token by its id (never its secret), or without ID the calling token");
  std::string& id = cli.Keep<std::string>();
  show->add_option("ID", id, "The token's id (16 hex, from `ekm token list`)");
  show->callback([c = &cli, id = &id] {
    c->WithConnection([c, id](Connection& b) { return ShowToken(*c, b, *id); });
  });
}

}  // namespace

void AddTokenCommands(CLI::App& app, Cli& cli) {
  auto* token = app.add_subcommand("token", "Manage API tokens (ekmd's bearer credentials)");
  token->require_subcommand(1);
  AddCreate(*token, cli);
  AddList(*token, cli);
  AddRevoke(*token, cli);
  AddShow(*token, cli);
}

}  // namespace ekm::cli

// ekm init: the data directory, its root key, store and bootstrap admin token.
#include <openssl/crypto.h>

#include <cstdio>
#include <optional>
#include <string>

#include "ekm/base/bytes.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/io.h"
#include "ekm/service/ekm_service.h"

namespace ekm::cli {
namespace {

struct InitFlags {
  std::string bootstrap_file;
};

// The bootstrap token read from `path`, without its line end; nullopt when no file was given.
StatusOr<std::optional<std::string>> ReadBootstrapToken(const std::string& path) {
  if (path.empty()) return std::optional<std::string>();
  auto text = ReadSecretInput(path, "bootstrap token file");
  if (!text.ok()) return text.status();
  std::optional<std::string> given = std::string(AsChars(*text));
  OPENSSL_cleanse(text->data(), text->size());
  while (!given->empty() && (given->back() == '\n' || given->back() == '\r')) given->pop_back();
  return given;
}

void PrintInitialized(const EkmOptions& o, const BootstrapAdminToken& boot, const InitFlags& f) {
  std::string key = o.root_key_file.empty() ? o.data_dir + "/root.key" : o.root_key_file;
  if (o.store.rfind("postgres", 0) == 0) {
    std::printf(
        "initialized ekm store %s\n  root key: %s (back it up, and give every ekmd replica "
        "the same file: without it nothing stored can be decrypted)\n",
        o.store.c_str(), key.c_str());
  } else {
    std::string db = o.store.empty() ? o.data_dir + "/ekm.db" : o.store.substr(7);
    std::printf(
        "initialized ekm data directory %s\n  store:    %s\n  root key: %s "
        "(back it up: without it nothing stored can be decrypted)\n",
        o.data_dir.c_str(), db.c_str(), key.c_str());
  }
  if (boot.created && !boot.token.empty()) {
    // Its own line, easy to capture: ekm init | sed -n 's/^admin token: //p'
    auto t = boot.token.RevealForCrypto();
    std::printf("admin token: %.*s\n", static_cast<int>(t.size()),
                reinterpret_cast<const char*>(t.data()));
    std::fprintf(stderr,
                 "the admin token above is shown only now: keep it secret (it may "
                 "do anything on ekmd except use the keys)\n");
  } else if (boot.created) {
    std::printf("admin token: stored from %s (id %s)\n", f.bootstrap_file.c_str(), boot.id.c_str());
  }
}

Status RunInit(const Cli& cli, const InitFlags& f) {
  if (!cli.g.server.empty()) {
    return InvalidArgumentError("init works on a local data directory, not on --server",
                                "ekmd initializes its own data directory on first start");
  }
  EkmOptions o;
  o.data_dir = cli.g.data_dir.empty() ? kDefaultDataDir : cli.g.data_dir;
  o.root_key_file = cli.g.root_key_file;
  o.store = cli.g.store;
  EKM_RETURN_IF_ERROR(EkmService::Initialize(o));
  // The bootstrap admin token (docs/api.md "Authentication and roles"), printed once.
  o.aws.enabled = false;
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EkmService> svc, EkmService::Open(o));
  EKM_ASSIGN_OR_RETURN(std::optional<std::string> given, ReadBootstrapToken(f.bootstrap_file));
  auto boot = svc->EnsureBootstrapAdminToken(LocalOperator(), given);
  if (given) OPENSSL_cleanse(given->data(), given->size());
  if (!boot.ok()) return boot.status();
  PrintInitialized(o, *boot, f);
  return Status::Ok();
}

}  // namespace

void AddInitCommand(CLI::App& app, Cli& cli) {
  InitFlags& f = cli.Keep<InitFlags>();
  auto* init = app.add_subcommand(
      "init", "Create the data directory: the platform root key (mode 0600) and the store");
  init->add_option("--bootstrap-token-file", f.bootstrap_file,
                   "Store the admin token held in this file (one line ekm_…) instead of "
                   "printing a new one; only when the data directory has no admin token yet")
      ->check(CLI::ExistingFile);
  init->callback([c = &cli, f = &f] {
    Status s = RunInit(*c, *f);
    if (!s.ok()) c->rc = Fail(s);
  });
}

}  // namespace ekm::cli

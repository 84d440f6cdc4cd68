// ekm: the command-line interface. Local mode (--data-dir / EKM_DATA_DIR) runs the key hierarchy
// in this process on a data directory; server mode (--server / EKM_SERVER) talks to ekmd.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "ekm/api/key_json.h"
#include "ekm/api/key_material_json.h"
#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/api/repack_json.h"
#include "ekm/audit/audit_log.h"
#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/base/file_reader.h"
#include "ekm/cli/cli_context.h"
#include "ekm/cli/connection.h"
#include "ekm/cli/io.h"
#include "ekm/cli/print.h"
#include "ekm/cli/repack.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/policy/key_policy_statement.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service.h"

namespace ekm::cli {
namespace {

int Run(int argc, char** argv) {
  CLI::App app{
      "ekm: Enterprise Key Management for multi-tenant platforms (bring your own key).\n"
      "Runs against a local data directory (--data-dir, default " +
          std::string(kDefaultDataDir) + ") or a running ekmd (--server URL).",
      "ekm"};
  app.set_version_flag("--version", "ekm 0.1.0");
  app.require_subcommand(1);
  // The one clock of this process: relative times (--since 24h) and token states.
  const Clock& clock = Clock::Real();
  Cli cli(argc, argv, clock);
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    std::string msg = e.what();
    std::string name = a->get_name();
    for (const CLI::App* p = a->get_parent(); p != nullptr; p = p->get_parent()) {
      name = p->get_name() + " " + name;
    }
    return "ekm: error: " + msg + " (see `" + name + " --help`)\n";
  });

  GlobalFlags& g = cli.g;
  app.add_option("--data-dir", g.data_dir,
                 "Local data directory (store and root key) [env: EKM_DATA_DIR] [default: " +
                     std::string(kDefaultDataDir) + "]")
      ->envname("EKM_DATA_DIR");
  app.add_option("--server", g.server,
                 "URL of a running ekmd, e.g. http://127.0.0.1:8080 "
                 "[env: EKM_SERVER]")
      ->envname("EKM_SERVER");
  app.add_option("--root-key-file", g.root_key_file,
                 "Platform root key file (local mode) [default: <data-dir>/root.key]");
  app.add_option("--token", g.token, "API token for --server [env: EKM_TOKEN]")
      ->envname("EKM_TOKEN");
  app.add_flag("--json", g.json, "Print results as JSON");
  app.add_option("--ca-file", g.tls.ca_file,
                 "Server mode over https://: PEM CA bundle to trust for ekmd's certificate "
                 "instead of the system store [env: EKM_CA_FILE]")
      ->envname("EKM_CA_FILE")
      ->check(CLI::ExistingFile);
  app.add_option("--client-cert", g.tls.client_cert_file,
                 "Server mode: client certificate (PEM) for an ekmd that asks for one "
                 "[env: EKM_CLIENT_CERT]")
      ->envname("EKM_CLIENT_CERT")
      ->check(CLI::ExistingFile);
  app.add_option("--client-key", g.tls.client_key_file,
                 "Server mode: the client certificate's private key (PEM) [env: EKM_CLIENT_KEY]")
      ->envname("EKM_CLIENT_KEY")
      ->check(CLI::ExistingFile);
  app.add_option("--aws-principal-arn", g.aws_principal_arn,
                 "Local mode: the platform's IAM role ARN that calls AWS KMS [env: "
                 "EKM_AWS_PRINCIPAL_ARN] [default: asked of AWS STS]")
      ->envname("EKM_AWS_PRINCIPAL_ARN");
  app.add_option("--aws-ca-file", g.aws_ca_file,
                 "Local mode: PEM CA bundle for AWS KMS and STS [env: EKM_AWS_CA_FILE]")
      ->envname("EKM_AWS_CA_FILE");

  int& rc = cli.rc;
  auto with_backend = [&](const std::function<Status(Connection&)>& fn) { cli.WithConnection(fn); };

  // ekm init
  auto* init = app.add_subcommand(
      "init", "Create the data directory: the platform root key (mode 0600) and the store");
  std::string init_bootstrap_file;
  init->add_option("--bootstrap-token-file", init_bootstrap_file,
                   "Store the admin token held in this file (one line ekm_…) instead of "
                   "printing a new one; only when the data directory has no admin token yet")
      ->check(CLI::ExistingFile);
  init->callback([&] {
    if (!g.server.empty()) {
      rc = Fail(InvalidArgumentError("init works on a local data directory, not on --server",
                                     "ekmd initializes its own data directory on first start"));
      return;
    }
    EkmOptions o;
    o.data_dir = g.data_dir.empty() ? kDefaultDataDir : g.data_dir;
    o.root_key_file = g.root_key_file;
    Status s = EkmService::Initialize(o);
    if (!s.ok()) {
      rc = Fail(s);
      return;
    }
    std::string key = o.root_key_file.empty() ? o.data_dir + "/root.key" : o.root_key_file;
    // The bootstrap admin token (docs/api.md "Authentication and roles"), printed once.
    o.aws.enabled = false;
    auto svc = EkmService::Open(o);
    if (!svc.ok()) {
      rc = Fail(svc.status());
      return;
    }
    std::optional<std::string> given;
    if (!init_bootstrap_file.empty()) {
      auto text = ReadSecretInput(init_bootstrap_file, "bootstrap token file");
      if (!text.ok()) {
        rc = Fail(text.status());
        return;
      }
      given = std::string(AsChars(*text));
      OPENSSL_cleanse(text->data(), text->size());
      while (!given->empty() && (given->back() == '\n' || given->back() == '\r')) given->pop_back();
    }
    auto boot = (*svc)->EnsureBootstrapAdminToken(LocalOperator(), given);
    if (given) OPENSSL_cleanse(given->data(), given->size());
    if (!boot.ok()) {
      rc = Fail(boot.status());
      return;
    }
    std::printf(
        "initialized ekm data directory %s\n  store:    %s/ekm.db\n  root key: %s "
        "(back it up: without it nothing stored can be decrypted)\n",
        o.data_dir.c_str(), o.data_dir.c_str(), key.c_str());
    if (boot->created && !boot->token.empty()) {
      // Its own line, easy to capture: ekm init | sed -n 's/^admin token: //p'
      auto t = boot->token.RevealForCrypto();
      std::printf("admin token: %.*s\n", static_cast<int>(t.size()),
                  reinterpret_cast<const char*>(t.data()));
      std::fprintf(stderr,
                   "the admin token above is shown only now: keep it secret (it may "
                   "do anything on ekmd except use the keys)\n");
    } else if (boot->created) {
      std::printf("admin token: stored from %s (id %s)\n", init_bootstrap_file.c_str(),
                  boot->id.c_str());
    }
  });

  // ekm workspace ...
  auto* ws = app.add_subcommand("workspace", "Manage workspaces (one per customer)");
  ws->require_subcommand(1);
  std::string ws_name;
  auto* ws_create = ws->add_subcommand("create", "Create a workspace");
  ws_create->add_option("NAME", ws_name, "Workspace name: 1-64 of a-z 0-9 - _ .")->required();
  ws_create->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(WorkspaceInfo w, b.api().CreateWorkspace(b.ctx(), ws_name));
      std::printf("created workspace %s\n", w.name.c_str());
      return Status::Ok();
    });
  });
  auto* ws_list = ws->add_subcommand("list", "List workspaces");
  ws_list->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<WorkspaceInfo> list, b.api().ListWorkspaces(b.ctx()));
      PrintWorkspaces(list, g.json);
      return Status::Ok();
    });
  });

  // ekm environment ...
  auto* env = app.add_subcommand("environment", "Manage environments inside a workspace");
  env->alias("env");
  env->require_subcommand(1);
  std::string env_ws, env_name;
  auto* env_create = env->add_subcommand(
      "create", "Create an environment (its environment key is wrapped by the platform CMK)");
  env_create->add_option("WORKSPACE", env_ws, "Workspace name")->required();
  env_create->add_option("NAME", env_name, "Environment name: 1-64 of a-z 0-9 - _ .")->required();
  env_create->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentInfo e, b.api().CreateEnvironment(b.ctx(), env_ws, env_name));
      std::printf("created environment %s/%s (CMK %s:%s, environment key v%u)\n",
                  e.workspace.c_str(), e.name.c_str(), e.cmk_provider.c_str(), e.cmk_key_id.c_str(),
                  e.ek_version);
      return Status::Ok();
    });
  });
  auto* env_list = env->add_subcommand("list", "List the environments of a workspace");
  env_list->add_option("WORKSPACE", env_ws, "Workspace name")->required();
  env_list->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<EnvironmentInfo> list,
                           b.api().ListEnvironments(b.ctx(), env_ws));
      PrintEnvironments(env_ws, list, g.json);
      return Status::Ok();
    });
  });

  // ekm encrypt / decrypt
  std::string d_ws, d_env, d_scope = std::string(kDefaultScope);
  bool text = false;
  auto* enc = app.add_subcommand("encrypt",
                                 "Encrypt standard input to standard output (any size, streamed)");
  enc->add_option("--workspace,-w", d_ws, "Workspace name")->required();
  enc->add_option("--environment,-e", d_env, "Environment name")->required();
  enc->add_option("--scope,-s", d_scope,
                  "Scope: names the data key (a table, a connection…) [default: default]");
  enc->add_flag("--text,-t", text, "Write the text form (ekm1:<base64url>) instead of binary");
  enc->callback([&] {
    if (!text && ::isatty(STDOUT_FILENO)) {
      rc = Fail(
          FailedPreconditionError("refusing to write binary ciphertext to a terminal",
                                  "redirect standard output to a file or pipe, or use --text"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      StdinInput input;
      return b.api().EncryptStream(b.ctx(), d_ws, d_env, d_scope, text, input.source(),
                                   StdoutSink());
    });
  });
  auto* dec = app.add_subcommand(
      "decrypt",
      "Decrypt standard input (binary or text form) to standard output. On failure the output "
      "is incomplete: discard it");
  dec->add_option("--workspace,-w", d_ws, "Workspace the ciphertext belongs to")->required();
  dec->add_option("--environment,-e", d_env, "Environment the ciphertext belongs to")->required();
  dec->callback([&] {
    with_backend([&](Connection& b) -> Status {
      StdinInput input;
      return b.api().DecryptStream(b.ctx(), d_ws, d_env, input.source(), StdoutSink());
    });
  });

  // ekm key ...: the environment's customer main key (CMK).
  auto* key = app.add_subcommand("key", "Manage an environment's customer main key (CMK)");
  key->require_subcommand(1);
  std::string k_ws, k_env, k_arn;
  bool k_platform = false, k_example = false;
  KeyChangeOptions k_change;  // --emergency --reason
  auto add_env_options = [&](CLI::App* cmd) {
    cmd->add_option("--workspace,-w", k_ws, "Workspace name")->required();
    cmd->add_option("--environment,-e", k_env, "Environment name")->required();
  };
  auto* key_set = key->add_subcommand(
      "set",
      "Update key: validate a customer main key and make it the environment's CMK. Checks the "
      "ARN, an Encrypt/Decrypt round trip with the environment's encryption context, and the "
      "key's state where the key policy permits DescribeKey; on any failure nothing changes");
  add_env_options(key_set);
  auto* arn_opt = key_set->add_option(
      "--aws-kms-arn", k_arn,
      "Key ARN or alias ARN of a symmetric AWS KMS key, e.g. "
      "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
  auto* platform_flag =
      key_set->add_flag("--platform", k_platform, "Go back to the platform-managed key");
  arn_opt->excludes(platform_flag);
  key_set->callback([&] {
    if (k_arn.empty() && !k_platform) {
      rc = Fail(InvalidArgumentError("no key given",
                                     "pass --aws-kms-arn ARN (or --platform); `ekm key policy` "
                                     "prints the key policy statement to add first"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      std::string provider(k_platform ? kPlatformProviderName : kAwsKmsProviderName);
      std::string id = k_platform ? std::string(kPlatformRootKeyId) : k_arn;
      EKM_ASSIGN_OR_RETURN(KeyValidation v,
                           b.api().SetCustomerKey(b.ctx(), k_ws, k_env, provider, id, k_change));
      if (g.json) {
        std::cout << JsonText(KeyValidationToJson(v), 2) << "\n";
        return AfterKeyChange(b, k_ws, k_env);
      }
      PrintChecks(v);
      std::printf("environment %s/%s now uses %s %s\n", k_ws.c_str(), k_env.c_str(),
                  provider.c_str(), id.c_str());
      std::fflush(stdout);
      return AfterKeyChange(b, k_ws, k_env);  // the repack
    });
  });
  // ekm key history: validations and CMK changes.
  int64_t kh_after = 0;
  size_t kh_limit = 100;
  auto* key_history = key->add_subcommand(
      "history",
      "Show the environment's key history, oldest first: every validation (passed, failed, "
      "--dry-run), every change of customer main key (the first, replacements, emergency and "
      "refused ones) and uploaded key material imported or deleted, with who and when");
  add_env_options(key_history);
  key_history->add_option("--after", kh_after, "Only events after this id (paging)");
  key_history->add_option("--limit", kh_limit, "At most this many events (1-1000)")
      ->check(CLI::Range(1, 1000));
  key_history->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventInfo> list,
                           b.api().KeyHistory(b.ctx(), k_ws, k_env, kh_after, kh_limit));
      PrintEvents(list, g.json, "no key validation or change recorded yet");
      return Status::Ok();
    });
  });
  auto* key_show = key->add_subcommand(
      "show",
      "Show the environment's CMK: provider, ARN, region, state, rotation status, and "
      "the last validation and its result");
  add_env_options(key_show);
  key_show->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(CustomerKeyInfo info, b.api().ShowCustomerKey(b.ctx(), k_ws, k_env));
      if (g.json) {
        std::cout << JsonText(CustomerKeyInfoToJson(info), 2) << "\n";
        return Status::Ok();
      }
      PrintKeyInfo(info);
      return Status::Ok();
    });
  });
  auto* key_policy = key->add_subcommand(
      "policy",
      "Permission to access key: print the key policy statement to paste into the Statement "
      "array of the customer's AWS KMS key policy (pinned to this workspace)");
  add_env_options(key_policy);
  key_policy->add_flag("--example", k_example, "Print a complete key policy for a new key instead");
  key_policy->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(KeyPolicyAdvice a, b.api().KeyPolicy(b.ctx(), k_ws, k_env));
      if (g.json) {
        std::cout << JsonText(KeyPolicyAdviceToJson(a), 2) << "\n";
        return Status::Ok();
      }
      if (k_example) {
        std::fprintf(stderr,
                     "# A whole key policy for a new key. Replace %s with the AWS account id "
                     "that owns the key. Platform principal: %s\n",
                     std::string(kExampleKeyAccountId).c_str(), a.principal_arn.c_str());
        std::cout << a.example_policy << "\n";
        return Status::Ok();
      }
      std::fprintf(stderr,
                   "# Paste into the \"Statement\" array of the key policy (add a comma after "
                   "the statement before it). Platform principal: %s\n",
                   a.principal_arn.c_str());
      std::cout << a.statement << "\n";
      return Status::Ok();
    });
  });

  // ekm policy check FILE: the policy doctor.
  auto* policy = app.add_subcommand("policy", "Check AWS KMS key policies");
  policy->require_subcommand(1);
  std::string p_file, p_ws;
  auto* policy_check = policy->add_subcommand(
      "check",
      "Policy doctor: read a whole key policy as pasted (FILE, or - for standard input), point "
      "at JSON mistakes by line and column, tell whether it grants the platform kms:Encrypt and "
      "kms:Decrypt for the workspace, and print the corrected policy. Exit code 1 unless both "
      "are granted");
  policy_check->add_option("FILE", p_file, "Key policy file, or - for standard input")->required();
  policy_check
      ->add_option("--workspace,-w", p_ws,
                   "Workspace the key is for (the statement's encryption-context "
                   "condition names it)")
      ->required();
  policy_check->callback([&] {
    auto text = ReadWholeFile(p_file, "key policy file");
    if (!text.ok()) {
      rc = Fail(text.status());
      return;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::string report, b.api().CheckKeyPolicy(b.ctx(), p_ws, *text));
      nlohmann::json j = nlohmann::json::parse(report, nullptr, false);
      if (g.json || !j.is_object()) {
        std::cout << (j.is_discarded() ? report : JsonText(j, 2)) << "\n";
      } else {
        std::cout << j.value("text", "") << (j.value("text", "").ends_with("\n") ? "" : "\n");
      }
      if (j.is_object() && !j.value("granted", false)) rc = kExitFailure;
      return Status::Ok();
    });
  });

  // ekm environment status: the CMK's health as every node last saw it.
  std::string st_ws, st_env;
  auto* env_status = env->add_subcommand(
      "status",
      "Show whether the environment's customer main key answers: healthy; degraded (its KMS "
      "cannot be reached: cached keys serve within the TTL, retried with backoff); or "
      "unavailable (the KMS refused: access removed, key disabled, pending deletion or "
      "deleted; every operation fails until the customer restores it). Also since when, the "
      "last successful use of the key, the last error and what to do, and the key cache TTL "
      "and grace period in force");
  env_status->add_option("--workspace,-w", st_ws, "Workspace name")->required();
  env_status->add_option("--environment,-e", st_env, "Environment name")->required();
  env_status->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentKeyStatus s, b.api().KeyStatus(b.ctx(), st_ws, st_env));
      if (g.json) {
        std::cout << JsonText(EnvironmentKeyStatusToJson(s), 2) << "\n";
      } else {
        PrintKeyStatus(s);
      }
      return Status::Ok();
    });
  });
  // ekm environment scopes: each scope's current DK version and messages reserved.
  std::string sc_ws, sc_env;
  auto* env_scopes = env->add_subcommand(
      "scopes",
      "List the environment's scopes: each one's current data key version, the environment key "
      "that wraps it, since when, and the messages reserved under it (an upper bound on those "
      "sealed) against the budget after which the data key rotates by itself");
  env_scopes->add_option("--workspace,-w", sc_ws, "Workspace name")->required();
  env_scopes->add_option("--environment,-e", sc_env, "Environment name")->required();
  env_scopes->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(ScopeList list, b.api().ListScopes(b.ctx(), sc_ws, sc_env));
      if (!g.json) {
        PrintScopes(list);
        return Status::Ok();
      }
      nlohmann::json scopes = nlohmann::json::array();
      for (const ScopeInfo& s : list.scopes) scopes.push_back(ScopeInfoToJson(s));
      std::cout << JsonText(nlohmann::json{{"workspace", list.workspace},
                                           {"environment", list.environment},
                                           {"max_messages_per_dk", list.max_messages_per_dk},
                                           {"scopes", scopes}},
                            2)
                << "\n";
      return Status::Ok();
    });
  });
  // ekm cache stats: the key cache counters.
  auto* cache = app.add_subcommand("cache", "Inspect the key cache");
  cache->require_subcommand(1);
  auto* cache_stats = cache->add_subcommand(
      "stats",
      "Show the key cache: cached keys, hits and misses, provider calls by outcome (ok, "
      "refused, unavailable, error) and the TTL. In server mode these are ekmd's counters; in "
      "local mode each command starts with an empty cache, so they describe this command only");
  cache_stats->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(KeyCacheStats s, b.api().KeyCacheStatistics(b.ctx()));
      if (g.json) {
        std::cout << JsonText(KeyCacheStatsToJson(s), 2) << "\n";
      } else {
        PrintKeyCacheStats(s);
      }
      return Status::Ok();
    });
  });

  key_set->add_flag("--emergency", k_change.emergency,
                    "Emergency replacement inside the replacement period (suspected compromise "
                    "of the current key); needs --reason and is recorded as such (owners only, "
                    "once roles exist)");
  key_set->add_option("--reason", k_change.reason,
                      "Why the key is replaced in an emergency (recorded with the change)");
  auto* repack = app.add_subcommand(
      "repack",
      "The repack after a CMK change: every data key of the environment is re-wrapped under "
      "the new environment key (data is never re-encrypted); then the old CMK is no longer "
      "needed");
  repack->require_subcommand(1);
  std::string r_ws, r_env;
  bool r_watch = false;
  auto* repack_status = repack->add_subcommand(
      "status",
      "Show the repack's progress (done/total, rate, ETA, state, last error) and the key "
      "inventory: how many data keys sit under each environment key version and CMK");
  repack_status->add_option("--workspace,-w", r_ws, "Workspace name")->required();
  repack_status->add_option("--environment,-e", r_env, "Environment name")->required();
  repack_status->add_flag("--watch", r_watch,
                          "Follow the progress until the repack finishes (a progress bar on a "
                          "terminal, a line every few seconds otherwise)");
  repack_status->callback([&] {
    with_backend([&](Connection& b) -> Status {
      const bool tty = ::isatty(STDOUT_FILENO) != 0;
      for (;;) {
        EKM_ASSIGN_OR_RETURN(RepackStatus st, b.api().GetRepackStatus(b.ctx(), r_ws, r_env));
        const bool over = st.state == "none" || st.state == "finished";
        if (g.json) {
          std::cout << (r_watch ? RepackStatusToJson(st).dump()
                                : JsonText(RepackStatusToJson(st), 2))
                    << std::endl;
        } else if (!r_watch || over) {
          if (r_watch && tty) std::printf("\n");
          PrintRepackStatus(st, tty);
        } else {
          std::printf(tty ? "\r%s" : "%s\n", RepackProgressLine(st, tty).c_str());
          std::fflush(stdout);
        }
        if (!r_watch || over) return Status::Ok();
        std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 500 : 2000));
      }
    });
  });
  auto* repack_run = repack->add_subcommand(
      "run",
      "Run the environment's repack now. Local mode runs (or resumes, after an interruption) it "
      "in the foreground until it completes; against ekmd, which repacks in the background, it "
      "wakes the repack (one waiting to retry after an error is tried at once)");
  repack_run->add_option("--workspace,-w", r_ws, "Workspace name")->required();
  repack_run->add_option("--environment,-e", r_env, "Environment name")->required();
  repack_run->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_RETURN_IF_ERROR(RunRepackInForeground(b, r_ws, r_env));
      if (g.json) {
        EKM_ASSIGN_OR_RETURN(RepackStatus st, b.api().GetRepackStatus(b.ctx(), r_ws, r_env));
        std::cout << JsonText(RepackStatusToJson(st), 2) << "\n";
      }
      return Status::Ok();
    });
  });

  // ekm key import-params / import / delete-material: uploaded key material (BYOK without a
  // KMS), the seeds' "uploading a key material file".
  std::string im_ws, im_env, im_out, im_expires = "24h", im_material, im_token_file, im_key_id,
                                     im_confirm;
  KeyChangeOptions im_change;  // --emergency --reason, as for `ekm key set`
  bool im_force = false;
  auto* key_import_params = key->add_subcommand(
      "import-params",
      "Uploaded key material, step 1: issue an RSA-4096 wrapping public key and a one-time "
      "import token for the environment (replacing earlier ones). Writes DIR/wrapping-key.pem "
      "(0644) and DIR/import-token (0600, a secret) and prints the openssl commands that wrap "
      "32 random bytes of key material (RSAES-OAEP-SHA256) for `ekm key import`");
  key_import_params->add_option("--workspace,-w", im_ws, "Workspace name")->required();
  key_import_params->add_option("--environment,-e", im_env, "Environment name")->required();
  key_import_params
      ->add_option("--out,-o", im_out,
                   "Directory to write wrapping-key.pem and import-token to "
                   "(created if missing)")
      ->required();
  key_import_params->add_option("--expires-in", im_expires,
                                "How long the token is valid: 1m to 7d [default: 24h]");
  key_import_params->add_flag("--force", im_force, "Replace the files if they exist");
  key_import_params->callback([&] {
    auto expires = ParseDurationSeconds(im_expires);  // the one duration syntax of the CLI
    if (!expires.ok()) {
      rc = Fail(expires.status());
      return;
    }
    std::string pem_path = im_out + "/wrapping-key.pem", token_path = im_out + "/import-token";
    // Refuse before generating anything (key generation takes a second or two).
    for (const std::string& path : {pem_path, token_path}) {
      if (!im_force && ::access(path.c_str(), F_OK) == 0) {
        rc = Fail(AlreadyExistsError(path + " exists already",
                                     "pass --force to replace it, or choose another --out "
                                     "directory"));
        return;
      }
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(KeyImportParameters p,
                           b.api().CreateKeyImportParameters(b.ctx(), im_ws, im_env,
                                                             std::chrono::seconds(*expires)));
      if (::mkdir(im_out.c_str(), 0755) != 0 && errno != EEXIST) {
        return FailedPreconditionError(
            "cannot create directory " + im_out + ": " + std::strerror(errno),
            "choose an --out directory you can write to");
      }
      EKM_RETURN_IF_ERROR(WriteFileWithMode(pem_path, p.wrapping_key_pem, 0644, im_force));
      std::string token = p.import_token + "\n";
      Status written = WriteFileWithMode(token_path, token, 0600, im_force);
      OPENSSL_cleanse(token.data(), token.size());
      OPENSSL_cleanse(p.import_token.data(), p.import_token.size());
      EKM_RETURN_IF_ERROR(written);
      const std::string expires_at = FormatRfc3339(FromUnixSeconds(p.expires_at));
      if (g.json) {
        nlohmann::json j = {{"workspace", p.workspace},        {"environment", p.environment},
                            {"wrapping_key_file", pem_path},   {"import_token_file", token_path},
                            {"expires_at", expires_at},        {"algorithm", p.algorithm},
                            {"material_size", p.material_size}};
        std::cout << JsonText(j, 2) << "\n";
        return Status::Ok();
      }
      std::printf(
          "wrote %s (RSA-4096 wrapping public key) and %s (import token, valid until %s)\n\n"
          "Next, with OpenSSL 3:\n"
          "  openssl rand -out material.bin 32\n"
          "  openssl pkeyutl -encrypt -pubin -inkey %s -in material.bin -out material.wrapped "
          "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt "
          "rsa_mgf1_md:sha256\n"
          "  ekm key import --workspace %s --environment %s --material material.wrapped "
          "--token-file %s\n\n"
          "Keep material.bin safe and offline: it is the only way to restore access after the "
          "material is deleted.\n",
          pem_path.c_str(), token_path.c_str(), expires_at.c_str(), pem_path.c_str(),
          p.workspace.c_str(), p.environment.c_str(), token_path.c_str());
      return Status::Ok();
    });
  });

  auto* key_import = key->add_subcommand(
      "import",
      "Uploaded key material, step 2: upload the wrapped key material with the import token. "
      "ekm checks the token, unwraps the material, stores it sealed under the platform root "
      "key and validates it as the environment's CMK (Update key); on any failure nothing "
      "changes. Importing the same material again after a deletion restores access");
  key_import->add_option("--workspace,-w", im_ws, "Workspace name")->required();
  key_import->add_option("--environment,-e", im_env, "Environment name")->required();
  key_import
      ->add_option("--material,-m", im_material,
                   "The wrapped material (material.wrapped, the binary output of openssl "
                   "pkeyutl -encrypt)")
      ->required();
  key_import
      ->add_option("--token-file", im_token_file,
                   "The import-token file written by `ekm key import-params`")
      ->required();
  key_import->add_flag("--emergency", im_change.emergency,
                       "Emergency replacement inside the replacement period (suspected "
                       "compromise of the current key); needs --reason and is recorded as such");
  key_import->add_option("--reason", im_change.reason,
                         "Why the key is replaced in an emergency (recorded with the change)");
  key_import->callback([&] {
    auto material = ReadSecretInput(im_material, "wrapped key material file (material.wrapped)");
    if (!material.ok()) {
      rc = Fail(material.status());
      return;
    }
    auto token = ReadSecretInput(im_token_file, "import-token file");
    if (!token.ok()) {
      rc = Fail(token.status());
      return;
    }
    with_backend([&](Connection& b) -> Status {
      auto v =
          b.api().ImportKeyMaterial(b.ctx(), im_ws, im_env, *material, AsChars(*token), im_change);
      OPENSSL_cleanse(token->data(), token->size());
      if (!v.ok()) return v.status();
      if (g.json) {
        std::cout << JsonText(KeyValidationToJson(*v), 2) << "\n";
        return AfterKeyChange(b, im_ws, im_env);  // the repack
      }
      PrintChecks(*v);
      std::printf("environment %s/%s now uses imported key material %s\n", im_ws.c_str(),
                  im_env.c_str(), v->key_id.c_str());
      EKM_RETURN_IF_ERROR(AfterKeyChange(b, im_ws, im_env));  // the repack
      return Status::Ok();
    });
  });

  auto* key_delete_material = key->add_subcommand(
      "delete-material",
      "Delete the environment's imported key material (a revocation): ekm destroys its sealed "
      "copy; once cached keys expire (the key cache TTL) the environment's data is unavailable "
      "until the same material is imported again with `ekm key import`");
  key_delete_material->add_option("--workspace,-w", im_ws, "Workspace name")->required();
  key_delete_material->add_option("--environment,-e", im_env, "Environment name")->required();
  key_delete_material
      ->add_option("--confirm", im_confirm, "The environment's name again, to confirm")
      ->required();
  key_delete_material->add_option("--key-id", im_key_id,
                                  "Imported material to delete, imported:… [default: the "
                                  "environment's current CMK]");
  key_delete_material->callback([&] {
    if (im_confirm != im_env) {
      rc = Fail(InvalidArgumentError(
          "--confirm \"" + im_confirm + "\" does not match the environment \"" + im_env + "\"",
          "pass --confirm " + im_env + " to delete its key material"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(KeyMaterialDeletion d,
                           b.api().DeleteKeyMaterial(b.ctx(), im_ws, im_env, im_key_id));
      if (g.json) {
        std::cout << JsonText(KeyMaterialDeletionToJson(d), 2) << "\n";
        return Status::Ok();
      }
      std::printf("deleted imported key material %s of %s/%s at %s\n", d.key_id.c_str(),
                  d.workspace.c_str(), d.environment.c_str(),
                  FormatRfc3339(FromUnixSeconds(d.deleted_at)).c_str());
      if (d.in_use) {
        std::printf(
            "it is the environment's CMK: its data becomes unavailable once cached keys "
            "expire; import the same material again to restore access\n");
      }
      return Status::Ok();
    });
  });

  // ekm key rotate: EK or DK rotation on demand, or what the schedule says is due.
  std::string rot_ws, rot_env;
  std::vector<std::string> r_scopes;
  bool r_all = false, r_due = false;
  auto* key_rotate = key->add_subcommand(
      "rotate",
      "Rotate the environment key (EK): a new EK version under the environment's current CMK. "
      "With --scope (repeatable) or --all-scopes, rotate data keys (DK) instead. New "
      "encryptions use the newest version; every older version still decrypts. --due runs what "
      "the environments' rotation periods say is due now (ekmd also runs it by itself every "
      "--rotation-check-interval; against a server it needs the admin token). The "
      "CMK's own rotation in the KMS needs no command: `ekm key show` shows its status");
  key_rotate->add_option("--workspace,-w", rot_ws, "Workspace name");
  key_rotate->add_option("--environment,-e", rot_env, "Environment name");
  key_rotate->add_option("--scope,-s", r_scopes, "Rotate this scope's data key (repeatable)");
  key_rotate->add_flag("--all-scopes", r_all, "Rotate the data key of every scope");
  key_rotate->add_flag("--due", r_due,
                       "Run the rotation schedule: every EK/DK older than its environment's "
                       "ek/dk rotation period");
  key_rotate->callback([&] {
    if (r_due != (rot_ws.empty() && rot_env.empty())) {
      rc = Fail(InvalidArgumentError(
          r_due ? "--due rotates what is due everywhere: it takes no --workspace/--environment"
                : "--workspace and --environment are required",
          "ekm key rotate --workspace W --environment E [--scope S | --all-scopes], or ekm key "
          "rotate --due"));
      return;
    }
    if (!r_due && (rot_ws.empty() || rot_env.empty())) {
      rc = Fail(InvalidArgumentError("--workspace and --environment are both required"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      if (r_due) {
        EKM_ASSIGN_OR_RETURN(ScheduledRotationReport rep, b.api().RunScheduledRotations(b.ctx()));
        PrintRotations(rep.rotated, g.json);
        for (const auto& f : rep.failures) std::fprintf(stderr, "ekm: failed: %s\n", f.c_str());
        if (!rep.failures.empty()) rc = kExitFailure;
        return Status::Ok();
      }
      if (r_all || !r_scopes.empty()) {
        EKM_ASSIGN_OR_RETURN(std::vector<RotationResult> list,
                             b.api().RotateDataKeys(b.ctx(), rot_ws, rot_env, r_scopes, r_all));
        PrintRotations(list, g.json);
        return Status::Ok();
      }
      EKM_ASSIGN_OR_RETURN(RotationResult r,
                           b.api().RotateEnvironmentKey(b.ctx(), rot_ws, rot_env));
      PrintRotations({r}, g.json);
      return Status::Ok();
    });
  });

  // ekm rewrap: re-encrypt under the newest DK of the ciphertext's scope.
  std::string rw_ws, rw_env, rw_in, rw_out;
  auto* rewrap = app.add_subcommand(
      "rewrap",
      "Re-encrypt a ciphertext (either form) under the newest data key of its own scope, "
      "without exposing the plaintext: the plaintext never leaves ekm. The output keeps the "
      "input's form (binary or text). Whole messages: the input is read into memory (against a "
      "server, the JSON body limit applies)");
  rewrap->add_option("--workspace,-w", rw_ws, "Workspace the ciphertext belongs to")->required();
  rewrap->add_option("--environment,-e", rw_env, "Environment the ciphertext belongs to")
      ->required();
  rewrap->add_option("--in,-i", rw_in, "Ciphertext file [default: standard input]");
  rewrap->add_option("--out,-o", rw_out,
                     "Where to write the new ciphertext (written whole, then "
                     "renamed into place) [default: standard output]");
  rewrap->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(Bytes in, ReadAllBytes(rw_in));
      Bytes out;
      EKM_ASSIGN_OR_RETURN(RewrapResult r, b.api().Rewrap(b.ctx(), rw_ws, rw_env, in, &out));
      if ((rw_out.empty() || rw_out == "-") && ::isatty(STDOUT_FILENO) &&
          !(out.size() > 5 && out[0] == 'e' && out[1] == 'k' && out[2] == 'm')) {
        return FailedPreconditionError("refusing to write binary ciphertext to a terminal",
                                       "use --out FILE or redirect standard output");
      }
      EKM_RETURN_IF_ERROR(WriteAllBytes(rw_out, out));
      std::fprintf(stderr, "rewrapped: scope \"%s\", data key v%u -> v%u\n", r.scope.c_str(),
                   r.from_dk_version, r.dk_version);
      return Status::Ok();
    });
  });

  // ekm environment shred: crypto-shredding, confirmed twice.
  std::string sh_ws, sh_env, sh_confirm;
  bool sh_yes = false;
  auto* env_shred = env->add_subcommand(
      "shred",
      "Crypto-shred an environment: destroy every wrapped environment key and data key, so its "
      "data can never be read again, by anyone. Cannot be undone. Asks twice on a terminal "
      "(the environment's name, then \"shred\"); otherwise needs --confirm NAME and "
      "--yes-destroy-all-data");
  env_shred->add_option("--workspace,-w", sh_ws, "Workspace name")->required();
  env_shred->add_option("--environment,-e", sh_env, "Environment to destroy")->required();
  env_shred->add_option("--confirm", sh_confirm, "The environment's name again (non-interactive)");
  env_shred->add_flag("--yes-destroy-all-data", sh_yes,
                      "Confirm that every ciphertext of the environment becomes unreadable");
  env_shred->callback([&] {
    const bool interactive = ::isatty(STDIN_FILENO) && sh_confirm.empty() && !sh_yes;
    if (!interactive && (sh_confirm.empty() || !sh_yes)) {
      rc = Fail(InvalidArgumentError(
          "crypto-shredding needs two confirmations",
          "pass --confirm " + sh_env + " --yes-destroy-all-data (or run it on a terminal)"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(ShredConfirmation c, b.api().RequestShred(b.ctx(), sh_ws, sh_env));
      std::string name = sh_confirm;
      if (interactive) {
        std::fprintf(stderr,
                     "This destroys every key of environment %s/%s. Its data can never be read "
                     "again, by anyone. This cannot be undone.\n",
                     sh_ws.c_str(), sh_env.c_str());
        name = AskLine("Type the environment's name to continue: ");
        if (name != sh_env) {
          return FailedPreconditionError("the name typed does not match; nothing was destroyed");
        }
        if (AskLine("Type \"shred\" to destroy it now: ") != "shred") {
          return FailedPreconditionError("not confirmed; nothing was destroyed");
        }
      }
      EKM_ASSIGN_OR_RETURN(ShredResult r,
                           b.api().ShredEnvironment(b.ctx(), sh_ws, sh_env, c.token, name));
      if (g.json) {
        std::cout << JsonText(ShredResultToJson(r), 2) << "\n";
        return Status::Ok();
      }
      std::printf(
          "crypto-shredded environment %s/%s at %s: %u environment key and %u data key "
          "versions destroyed; its data can never be read\n",
          r.workspace.c_str(), r.environment.c_str(),
          FormatRfc3339(FromUnixSeconds(r.shredded_at)).c_str(), r.ek_versions_destroyed,
          r.dk_versions_destroyed);
      return Status::Ok();
    });
  });

  // ekm environment set / show: per-environment settings.
  std::string set_ws, set_env, set_ttl, set_grace, set_ek, set_dk, set_repl;
  std::vector<std::string> st_reset;
  auto* env_set = env->add_subcommand(
      "set",
      "Change an environment's settings. Durations: 300s, 5m, 24h, 90d. --reset NAME "
      "(repeatable) goes back to the deployment default; NAME is key-cache-ttl, grace-period, "
      "ek-rotation-period, dk-rotation-period or replacement-period");
  env_set->add_option("--workspace,-w", set_ws, "Workspace name")->required();
  env_set->add_option("--environment,-e", set_env, "Environment name")->required();
  env_set->add_option("--key-cache-ttl", set_ttl,
                      "How long unwrapped keys are used before asking the CMK again (bounds how "
                      "long data stays readable after a revocation)");
  env_set->add_option("--grace-period", set_grace,
                      "How long cached keys keep serving during a KMS outage (0: off)");
  env_set->add_option("--ek-rotation-period", set_ek,
                      "Rotate the environment key on this schedule (at least 1h)");
  env_set->add_option("--dk-rotation-period", set_dk,
                      "Rotate each scope's data key on this schedule (at least 1h)");
  env_set->add_option("--replacement-period", set_repl,
                      "One CMK replacement per this period (default 24h)");
  env_set->add_option("--reset", st_reset, "Back to the default: the setting's name (repeatable)");
  env_set->callback([&] {
    EnvironmentSettings set;
    std::vector<std::string> reset;
    struct Arg {
      const char* flag;
      std::string_view name;
      const std::string& text;
      std::optional<int64_t>* field;
    };
    const Arg args[] = {
        {"key-cache-ttl", kSettingKeyCacheTtl, set_ttl, &set.key_cache_ttl_seconds},
        {"grace-period", kSettingGracePeriod, set_grace, &set.grace_period_seconds},
        {"ek-rotation-period", kSettingEkRotationPeriod, set_ek, &set.ek_rotation_period_seconds},
        {"dk-rotation-period", kSettingDkRotationPeriod, set_dk, &set.dk_rotation_period_seconds},
        {"replacement-period", kSettingReplacementPeriod, set_repl,
         &set.replacement_period_seconds},
    };
    for (const Arg& a : args) {
      if (a.text.empty()) continue;
      auto d = ParseDurationSeconds(a.text);
      if (!d.ok()) {
        rc = Fail(d.status().WithContext(std::string("--") + a.flag));
        return;
      }
      *a.field = *d;
    }
    for (const std::string& r : st_reset) {
      const Arg* found = nullptr;
      for (const Arg& a : args) {
        if (r == a.flag || r == a.name) found = &a;
      }
      if (found == nullptr) {
        rc = Fail(InvalidArgumentError("--reset " + r + ": no such setting",
                                       "key-cache-ttl, grace-period, ek-rotation-period, "
                                       "dk-rotation-period, replacement-period"));
        return;
      }
      reset.push_back(std::string(found->name));
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentSettings s,
                           b.api().UpdateEnvironmentSettings(b.ctx(), set_ws, set_env, set, reset));
      PrintSettings(set_ws, set_env, s, g.json);
      return Status::Ok();
    });
  });
  auto* env_show = env->add_subcommand(
      "show", "Show an environment's settings (the deployment defaults marked with *)");
  env_show->add_option("--workspace,-w", set_ws, "Workspace name")->required();
  env_show->add_option("--environment,-e", set_env, "Environment name")->required();
  env_show->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentSettings s,
                           b.api().GetEnvironmentSettings(b.ctx(), set_ws, set_env));
      PrintSettings(set_ws, set_env, s, g.json);
      return Status::Ok();
    });
  });

  // ekm workspace set-default-key / show: the workspace default CMK.
  std::string dk_ws, dk_arn;
  bool dk_reset = false;
  auto* ws_default = ws->add_subcommand(
      "set-default-key",
      "Set the workspace default CMK: the key new environments' environment keys are wrapped "
      "under (existing environments keep theirs). Validated first with an Encrypt/Decrypt round "
      "trip under the workspace's encryption context. --reset goes back to the platform key");
  ws_default->add_option("--workspace,-w", dk_ws, "Workspace name")->required();
  auto* dk_arn_opt = ws_default->add_option("--aws-kms-arn", dk_arn,
                                            "Key ARN or alias ARN of a symmetric AWS KMS key");
  auto* dk_reset_flag =
      ws_default->add_flag("--reset", dk_reset, "Go back to the platform-managed key");
  dk_arn_opt->excludes(dk_reset_flag);
  std::string dk_provider(kAwsKmsProviderName), dk_key_id;
  ws_default->add_option("--provider", dk_provider, "Provider of --key-id")
      ->check(CLI::IsMember(std::vector<std::string>{std::string(kAwsKmsProviderName),
                                                     std::string(kPlatformProviderName)}))
      ->capture_default_str();
  ws_default->add_option("--key-id", dk_key_id,
                         "The key in that provider (for aws-kms, the same as --aws-kms-arn)");
  ws_default->callback([&] {
    if (dk_arn.empty()) dk_arn = dk_key_id;
    if (dk_arn.empty() && !dk_reset) {
      rc = Fail(InvalidArgumentError("no key given", "pass --aws-kms-arn ARN, or --reset"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(
          WorkspaceDefaultKey k,
          dk_reset ? b.api().ResetWorkspaceDefaultKey(b.ctx(), dk_ws)
                   : b.api().SetWorkspaceDefaultKey(b.ctx(), dk_ws, dk_provider, dk_arn));
      if (g.json) {
        std::cout << JsonText(WorkspaceDefaultKeyToJson(k), 2) << "\n";
        return Status::Ok();
      }
      std::printf(
          "workspace %s: new environments now start on %s %s (existing environments "
          "are unchanged)\n",
          k.workspace.c_str(), k.provider.c_str(), k.key_id.c_str());
      return Status::Ok();
    });
  });
  auto* ws_show = ws->add_subcommand("show", "Show a workspace's default CMK");
  ws_show->add_option("--workspace,-w", dk_ws, "Workspace name")->required();
  ws_show->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(WorkspaceDefaultKey k, b.api().GetWorkspaceDefaultKey(b.ctx(), dk_ws));
      if (g.json) {
        std::cout << JsonText(WorkspaceDefaultKeyToJson(k), 2) << "\n";
        return Status::Ok();
      }
      std::printf("workspace:    %s\n", k.workspace.c_str());
      std::printf("default key:  %s %s%s\n", k.provider.c_str(), k.key_id.c_str(),
                  k.set ? "" : " (the platform-managed key)");
      if (k.set) {
        std::printf("set:          %s by %s\n", FormatRfc3339(FromUnixSeconds(k.set_at)).c_str(),
                    k.actor.c_str());
      }
      std::printf("applies to:   environments created from now on\n");
      return Status::Ok();
    });
  });

  // ekm events: the lifecycle events.
  std::string ev_ws, ev_env, ev_type, ev_since, ev_until;
  size_t ev_limit = 100;
  int64_t ev_after = 0;
  auto* events = app.add_subcommand(
      "events",
      "List lifecycle events (key validations and changes, rotations, shreds, settings…), "
      "oldest first, with time, actor and environment. --json prints one JSON object a line");
  events->add_option("--workspace,-w", ev_ws, "Workspace name")->required();
  events->add_option("--environment,-e", ev_env, "Only this environment");
  events->add_option("--type,-t", ev_type, "Only this event type, e.g. ek.rotated");
  events->add_option("--since", ev_since,
                     "From this time: RFC 3339 (2026-11-25T10:00:00Z), unix seconds, or a "
                     "duration ago (24h)");
  events->add_option("--until", ev_until, "Before this time (same forms as --since)");
  events->add_option("--after", ev_after, "Only events with a larger id (paging)");
  events->add_option("--limit,-n", ev_limit, "At most this many events (1-1000)")
      ->capture_default_str();
  events->callback([&] {
    EventQuery q;
    q.workspace = ev_ws;
    if (!ev_env.empty()) q.environment = ev_env;
    q.type = ev_type;
    q.after_id = ev_after;
    q.limit = ev_limit;
    const int64_t now_ms = ToUnixSeconds(clock.Now()) * 1000;
    for (auto [text, field] : {std::pair{&ev_since, &q.since_ms}, {&ev_until, &q.until_ms}}) {
      if (text->empty()) continue;
      auto t = ParseTimeMs(*text, now_ms);
      if (!t.ok()) {
        rc = Fail(t.status());
        return;
      }
      *field = *t;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventInfo> list, b.api().ListEvents(b.ctx(), q));
      PrintEvents(list, g.json, "no events match");
      return Status::Ok();
    });
  });

  // ekm token ...
  auto* token = app.add_subcommand("token", "Manage API tokens (ekmd's bearer credentials)");
  token->require_subcommand(1);
  ApiTokenRequest tk_req;
  std::string tk_expires, tk_ws, tk_id;
  bool tk_ws_given = false;
  auto* tk_create = token->add_subcommand(
      "create", "Create an API token: prints it alone on stdout (shown only now)");
  tk_create->add_option("--workspace,-w", tk_req.workspace,
                        "The workspace it acts on (not for admin)");
  tk_create->add_option("--role,-r", tk_req.role, "admin, owner, key-manager, app or auditor")
      ->required();
  tk_create->add_option("--environment,-e", tk_req.environments,
                        "Restrict it to this environment (repeat for several)");
  tk_create->add_option("--expires-in", tk_expires,
                        "Lifetime, e.g. 30d, 12h: 1m to 366d [default: 90d]");
  tk_create->add_option("--description", tk_req.description, "What it is for (public)");
  tk_create->callback([&] {
    if (!tk_expires.empty()) {
      auto d = ParseDurationSeconds(tk_expires);  // the one duration syntax of the CLI
      if (!d.ok()) {
        rc = Fail(d.status());
        return;
      }
      tk_req.expires_in = std::chrono::seconds(*d);
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(NewApiToken t, b.api().CreateApiToken(b.ctx(), tk_req));
      auto text = t.token.RevealForCrypto();
      std::string_view token_text(reinterpret_cast<const char*>(text.data()), text.size());
      if (g.json) {
        nlohmann::json j = ApiTokenInfoJson(t.info, ToUnixSeconds(clock.Now()));
        j["token"] = token_text;
        std::cout << j.dump(2) << "\n";
        std::string& held = j["token"].get_ref<std::string&>();
        OPENSSL_cleanse(held.data(), held.size());
        return Status::Ok();
      }
      std::printf("%.*s\n", static_cast<int>(token_text.size()), token_text.data());
      std::fprintf(stderr, "created token %s (role %s%s%s, expires %s): shown only now\n",
                   t.info.id.c_str(), t.info.role.c_str(),
                   t.info.workspace.empty() ? "" : ", workspace ", t.info.workspace.c_str(),
                   t.info.expires_at == 0
                       ? "never"
                       : FormatRfc3339(FromUnixSeconds(t.info.expires_at)).c_str());
      return Status::Ok();
    });
  });
  auto* tk_list = token->add_subcommand("list", "List API tokens (never their secrets)");
  tk_list->add_option("--workspace,-w", tk_ws, "Only this workspace's tokens")
      ->each([&](const std::string&) { tk_ws_given = true; });
  tk_list->callback([&] {
    with_backend([&](Connection& b) -> Status {
      std::optional<std::string> filter;
      if (tk_ws_given) filter = tk_ws;
      EKM_ASSIGN_OR_RETURN(std::vector<ApiTokenInfo> list, b.api().ListApiTokens(b.ctx(), filter));
      if (g.json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& t : list) arr.push_back(ApiTokenInfoJson(t, ToUnixSeconds(clock.Now())));
        std::cout << nlohmann::json{{"tokens", arr}}.dump(2) << "\n";
        return Status::Ok();
      }
      if (list.empty()) {
        std::fprintf(stderr, "no tokens\n");
        return Status::Ok();
      }
      std::printf("%-16s  %-11s  %-16s  %-16s  %-8s  %-20s  %s\n", "ID", "ROLE", "WORKSPACE",
                  "ENVIRONMENTS", "STATE", "EXPIRES", "DESCRIPTION");
      for (const auto& t : list) {
        nlohmann::json j = ApiTokenInfoJson(t, ToUnixSeconds(clock.Now()));
        std::string envs;
        for (const auto& e : t.environments) envs += (envs.empty() ? "" : ",") + e;
        std::string expires =
            j["expires_at"].is_null() ? "never" : j["expires_at"].get<std::string>();
        std::printf("%-16s  %-11s  %-16s  %-16s  %-8s  %-20s  %s\n", t.id.c_str(), t.role.c_str(),
                    t.workspace.empty() ? "-" : t.workspace.c_str(),
                    envs.empty() ? "all" : envs.c_str(), j["state"].get<std::string>().c_str(),
                    expires.c_str(), t.description.c_str());
      }
      return Status::Ok();
    });
  });
  auto* tk_revoke = token->add_subcommand("revoke",
                                          "Revoke an API token (at once on this ekmd; "
                                          "within 5 s on the others)");
  tk_revoke->add_option("ID", tk_id, "The token's id (16 hex, from `ekm token list`)")->required();
  tk_revoke->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(ApiTokenInfo t, b.api().RevokeApiToken(b.ctx(), tk_id));
      if (g.json) {
        std::cout << ApiTokenInfoJson(t, ToUnixSeconds(clock.Now())).dump(2) << "\n";
      } else {
        std::printf("revoked token %s\n", t.id.c_str());
      }
      return Status::Ok();
    });
  });
  auto* tk_show = token->add_subcommand(
      "show", "Show a token by its id (never its secret), or without ID the calling token");
  std::string tk_show_id;
  tk_show->add_option("ID", tk_show_id, "The token's id (16 hex, from `ekm token list`)");
  tk_show->callback([&] {
    with_backend([&](Connection& b) -> Status {
      std::optional<ApiTokenInfo> t;
      if (!tk_show_id.empty()) {
        EKM_ASSIGN_OR_RETURN(t, b.api().GetApiToken(b.ctx(), tk_show_id));
      } else {
        EKM_ASSIGN_OR_RETURN(t, b.api().WhoAmI(b.ctx()));
      }
      if (!t) {
        if (g.json) {
          std::cout << nlohmann::json{{"local_operator", true}}.dump(2) << "\n";
        } else {
          std::printf("local mode: the platform operator (no token; every action allowed)\n");
        }
        return Status::Ok();
      }
      nlohmann::json j = ApiTokenInfoJson(*t, ToUnixSeconds(clock.Now()));
      if (g.json) {
        std::cout << j.dump(2) << "\n";
        return Status::Ok();
      }
      std::string envs;
      for (const auto& e : t->environments) envs += (envs.empty() ? "" : ",") + e;
      std::printf(
          "token:        %s\nrole:         %s\nworkspace:    %s\nenvironments: %s\n"
          "expires:      %s\nstate:        %s\n",
          t->id.c_str(), t->role.c_str(),
          t->workspace.empty() ? "(platform)" : t->workspace.c_str(),
          envs.empty() ? "all" : envs.c_str(),
          j["expires_at"].is_null() ? "never" : j["expires_at"].get<std::string>().c_str(),
          j["state"].get<std::string>().c_str());
      return Status::Ok();
    });
  });

  // ekm key validate: "Update key"'s checks for a key, nothing changed.
  std::string kv_arn;
  bool kv_platform = false;
  auto* key_validate = key->add_subcommand(
      "validate",
      "Check a key before switching to it: the checks of `ekm key set` (ARN, Encrypt/Decrypt "
      "round trip with the environment's encryption context, DescribeKey, rotation), without "
      "changing anything. Exit status 0 when every check passed");
  add_env_options(key_validate);
  auto* kv_arn_opt = key_validate->add_option("--aws-kms-arn", kv_arn,
                                              "Key ARN or alias ARN of the AWS KMS key to check");
  kv_arn_opt->excludes(key_validate->add_flag("--platform", kv_platform, "Check the platform key"));
  key_validate->callback([&] {
    if (kv_arn.empty() && !kv_platform) {
      rc = Fail(InvalidArgumentError("no key given", "pass --aws-kms-arn ARN (or --platform)"));
      return;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(
          KeyValidation v,
          b.api().ValidateCustomerKey(b.ctx(), k_ws, k_env,
                                      kv_platform ? kPlatformProviderName : kAwsKmsProviderName,
                                      kv_platform ? std::string(kPlatformRootKeyId) : kv_arn));
      if (g.json) {
        std::cout << JsonText(KeyValidationToJson(v), 2) << "\n";
      } else {
        PrintChecks(v);
      }
      if (!v.ok) return FailedPreconditionError(v.message, v.hint);
      if (!g.json) std::printf("the key passed every check; nothing was changed\n");
      return Status::Ok();
    });
  });

  // ekm data-key generate: a data key for client-side encryption (AWS KMS GenerateDataKey).
  std::string gk_ws, gk_env, gk_scope;
  size_t gk_bytes = kDefaultDataKeyBytes;
  bool gk_plaintext = false;
  auto* data_key = app.add_subcommand("data-key", "Data keys for client-side encryption");
  data_key->require_subcommand(1);
  auto* gk_generate = data_key->add_subcommand(
      "generate",
      "Generate a data key and print it wrapped (ekm1:…, `ekm decrypt` returns the key bytes). "
      "With --with-plaintext also the key itself, base64, on a second line: use it, then forget "
      "it, and keep only the wrapped key");
  gk_generate->add_option("--workspace,-w", gk_ws, "Workspace name")->required();
  gk_generate->add_option("--environment,-e", gk_env, "Environment name")->required();
  gk_generate->add_option("--scope,-s", gk_scope, "Scope [default: default]");
  gk_generate->add_option("--bytes", gk_bytes, "Key size in bytes, 16 to 64 [default: 32]");
  gk_generate->add_flag("--with-plaintext", gk_plaintext,
                        "Also print the plaintext key (base64), on a second line");
  gk_generate->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(GeneratedDataKey k,
                           b.api().GenerateDataKey(b.ctx(), gk_ws, gk_env,
                                                   gk_scope.empty() ? kDefaultScope : gk_scope,
                                                   gk_bytes, gk_plaintext));
      std::string wrapped = EnvelopeToText(k.ciphertext);
      while (!wrapped.empty() && wrapped.back() == '\n') wrapped.pop_back();
      std::string plain = gk_plaintext ? Base64Encode(k.plaintext.RevealForCrypto()) : "";
      if (g.json) {
        nlohmann::json j = {{"ciphertext", wrapped}, {"scope", k.scope}, {"bytes", gk_bytes}};
        if (gk_plaintext) j["plaintext"] = plain;
        std::string text = JsonText(j, 2);
        std::cout << text << "\n";
        OPENSSL_cleanse(text.data(), text.size());
      } else {
        std::cout << wrapped << "\n";
        if (gk_plaintext) std::cout << plain << "\n";
      }
      std::cout.flush();
      OPENSSL_cleanse(plain.data(), plain.size());
      return Status::Ok();
    });
  });

  // ekm audit: the tamper-evident audit log (docs/audit.md).
  auto* audit = app.add_subcommand(
      "audit", "The tamper-evident audit log: list, export, verify, checkpoint, public-key");
  audit->require_subcommand(1);
  struct AuditFlags {
    std::string workspace;
    bool platform = false;
    std::string environment, type, since, until;
    int64_t after = 0;
    size_t limit = 100;
    std::string output;
    std::vector<std::string> checkpoint_files;
    std::string public_key_file;
    std::string input;
  };
  auto af = std::make_shared<AuditFlags>();
  auto add_chain = [af](CLI::App* c) {
    auto* w = c->add_option("--workspace,-w", af->workspace, "The workspace's chain");
    auto* p = c->add_flag("--platform", af->platform, "The platform chain (admin actions)");
    w->excludes(p);
  };
  // The chain named by --workspace or --platform ("" = the platform's).
  auto chain = [af]() -> StatusOr<std::string> {
    if (af->platform) return std::string();
    if (af->workspace.empty()) {
      return InvalidArgumentError("no chain given", "pass --workspace W, or --platform");
    }
    return af->workspace;
  };

  auto* a_list = audit->add_subcommand("list",
                                       "Audit records of one chain, oldest first, "
                                       "filtered; --json prints one object a line");
  add_chain(a_list);
  a_list->add_option("--environment,-e", af->environment, "Only this environment");
  a_list->add_option("--type,-t", af->type, "Only this record type, e.g. key.replaced");
  a_list->add_option("--since", af->since, "From this time (RFC 3339, unix seconds, or 24h ago)");
  a_list->add_option("--until", af->until, "Before this time (same forms as --since)");
  a_list->add_option("--after", af->after, "Only records with a larger id (paging)");
  a_list->add_option("--limit,-n", af->limit, "At most this many records (1-1000)")
      ->capture_default_str();
  a_list->callback([&, af] {
    auto c = chain();
    if (!c.ok()) {
      rc = Fail(c.status());
      return;
    }
    EventQuery q;
    q.workspace = *c;
    if (!af->environment.empty()) q.environment = af->environment;
    q.type = af->type;
    q.after_id = af->after;
    q.limit = af->limit;
    const int64_t now_ms = ToUnixSeconds(clock.Now()) * 1000;
    for (auto [text, field] : {std::pair{&af->since, &q.since_ms}, {&af->until, &q.until_ms}}) {
      if (text->empty()) continue;
      auto t = ParseTimeMs(*text, now_ms);
      if (!t.ok()) {
        rc = Fail(t.status());
        return;
      }
      *field = *t;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> list, b.api().QueryAudit(b.ctx(), q));
      if (g.json) {
        for (const auto& r : list) std::cout << JsonText(AuditRecordJson(r)) << "\n";
        return Status::Ok();
      }
      if (list.empty()) {
        std::fprintf(stderr, "no records match\n");
        return Status::Ok();
      }
      std::printf("%-6s %-24s %-14s %-30s %-22s %s\n", "SEQ", "TIME", "ENVIRONMENT", "TYPE",
                  "ACTOR", "DETAIL");
      for (const auto& r : list) {
        std::string at = AuditRecordJson(r)["at"];
        std::printf("%-6lld %-24s %-14s %-30s %-22s %s\n", static_cast<long long>(r.seq),
                    at.c_str(), r.environment.empty() ? "-" : r.environment.c_str(), r.type.c_str(),
                    r.actor.c_str(), r.detail.c_str());
      }
      return Status::Ok();
    });
  });

  auto* a_export = audit->add_subcommand(
      "export",
      "Every record of one chain as JSON lines (every field, hashes hex), for "
      "`ekm audit verify --input`");
  add_chain(a_export);
  a_export->callback([&, af] {
    auto c = chain();
    if (!c.ok()) {
      rc = Fail(c.status());
      return;
    }
    with_backend([&](Connection& b) -> Status {
      return b.api().ExportAudit(b.ctx(), *c, [](const LifecycleEventRecord& r) {
        std::cout << JsonText(AuditRecordExportJson(r)) << "\n";
        return std::cout ? Status::Ok() : FailedPreconditionError("cannot write the export");
      });
    });
  });

  auto* a_checkpoint =
      audit->add_subcommand("checkpoint",
                            "Sign a checkpoint of the chain's head now; --output FILE saves it for "
                            "keeping outside ekm");
  add_chain(a_checkpoint);
  a_checkpoint->add_option("--output,-o", af->output,
                           "Write the checkpoint to this new file (kept by the auditor)");
  a_checkpoint->callback([&, af] {
    auto c = chain();
    if (!c.ok()) {
      rc = Fail(c.status());
      return;
    }
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(AuditCheckpoint cp, b.api().CreateAuditCheckpoint(b.ctx(), *c));
      std::string text = JsonText(AuditCheckpointJson(cp), 2) + "\n";
      if (!af->output.empty()) {
        EKM_RETURN_IF_ERROR(WriteFileWithMode(af->output, text, 0644, false));
        std::fprintf(stderr, "checkpoint of seq %lld written to %s\n",
                     static_cast<long long>(cp.seq), af->output.c_str());
        return Status::Ok();
      }
      std::cout << text;
      return Status::Ok();
    });
  });

  auto* a_pub =
      audit->add_subcommand("public-key",
                            "Print the audit signing key's public half (PEM); keep it with your "
                            "checkpoints");
  a_pub->callback([&] {
    with_backend([&](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(AuditPublicKeyInfo key, b.api().GetAuditPublicKey(b.ctx()));
      const std::string& pem = key.public_key_pem;
      std::cout << pem;
      return Status::Ok();
    });
  });

  auto* a_verify = audit->add_subcommand(
      "verify",
      "Verify a chain: every hash, seq and link, every checkpoint's signature, and kept "
      "checkpoints against the records. Exit 1 naming the first bad record");
  add_chain(a_verify);
  a_verify->add_option("--input,-i", af->input,
                       "Verify this export (JSON lines) offline instead of asking ekm");
  a_verify->add_option("--checkpoint,-c", af->checkpoint_files,
                       "A checkpoint file you kept (repeatable)");
  a_verify->add_option("--public-key,-k", af->public_key_file,
                       "The audit public key you kept (PEM); default: the one ekm publishes");
  a_verify->callback([&, af] {
    auto run = [&](Connection* b) -> Status {
      std::vector<LifecycleEventRecord> records;
      std::vector<AuditCheckpoint> checkpoints;
      std::string chain_name;
      if (!af->input.empty()) {
        EKM_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(af->input, "audit export file"));
        size_t line_no = 0;
        for (size_t i = 0; i < text.size();) {
          size_t nl = text.find('\n', i);
          if (nl == std::string::npos) nl = text.size();
          std::string line = text.substr(i, nl - i);
          i = nl + 1;
          ++line_no;
          if (line.empty()) continue;
          auto r = ParseAuditRecordExportJson(nlohmann::json::parse(line, nullptr, false));
          if (!r.ok()) {
            return InvalidArgumentError(
                af->input + " line " + std::to_string(line_no) + ": " + r.status().message(),
                "pass a file written by `ekm audit export`");
          }
          records.push_back(std::move(*r));
        }
      } else {
        EKM_ASSIGN_OR_RETURN(chain_name, chain());
        EKM_RETURN_IF_ERROR(
            b->api().ExportAudit(b->ctx(), chain_name, [&](const LifecycleEventRecord& r) {
              records.push_back(r);
              return Status::Ok();
            }));
        // The checkpoints ekm stored; kept files below are the ones that cannot be rewritten.
        EKM_ASSIGN_OR_RETURN(checkpoints, b->api().ListAuditCheckpoints(b->ctx(), chain_name));
      }
      for (const std::string& f : af->checkpoint_files) {
        EKM_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(f, "checkpoint file"));
        auto cp = ParseAuditCheckpointJson(nlohmann::json::parse(text, nullptr, false));
        if (!cp.ok()) return InvalidArgumentError(f + ": " + cp.status().message());
        checkpoints.push_back(std::move(*cp));
      }
      std::optional<AuditPublicKey> key;
      if (!af->public_key_file.empty()) {
        EKM_ASSIGN_OR_RETURN(std::string pem,
                             ReadWholeFile(af->public_key_file, "public key file"));
        EKM_ASSIGN_OR_RETURN(key, AuditPublicKey::FromPem(pem));
      } else if (b) {
        EKM_ASSIGN_OR_RETURN(AuditPublicKeyInfo served, b->api().GetAuditPublicKey(b->ctx()));
        EKM_ASSIGN_OR_RETURN(key, AuditPublicKey::FromPem(served.public_key_pem));
      } else if (!checkpoints.empty()) {
        return InvalidArgumentError("checkpoints given without the public key to check them",
                                    "pass --public-key FILE (from `ekm audit public-key`)");
      }
      AuditVerifyReport report = VerifyAuditLog(records, checkpoints, key ? &*key : nullptr);
      if (!report.ok()) {
        for (const auto& p : report.problems) std::printf("problem: %s\n", p.c_str());
        return DataLossError("the audit log does not verify: " + report.problems[0]);
      }
      std::printf("ok: %zu record(s) in %zu chain(s), %zu checkpoint(s) verified\n", report.records,
                  report.chains, report.checkpoints);
      return Status::Ok();
    };
    if (!af->input.empty()) {
      if (af->public_key_file.empty() && !af->checkpoint_files.empty()) {
        rc = Fail(InvalidArgumentError("checkpoints given without the public key to check them",
                                       "pass --public-key FILE (from `ekm audit public-key`)"));
        return;
      }
      Status s = run(nullptr);
      if (!s.ok()) rc = Fail(s);
      return;
    }
    with_backend([&](Connection& b) -> Status { return run(&b); });
  });

  // --json after the subcommand as well as before it (`ekm events -w acme --json`, as
  // `ekm --json events -w acme`): every subcommand takes it too.
  std::function<void(CLI::App*)> accept_json = [&](CLI::App* parent) {
    for (CLI::App* sub : parent->get_subcommands(std::function<bool(CLI::App*)>())) {
      if (sub->get_option_no_throw("--json") == nullptr) {
        sub->add_flag("--json", g.json, "Print results as JSON");
      }
      accept_json(sub);
    }
  };
  accept_json(&app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return rc;
}

}  // namespace
}  // namespace ekm::cli

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe is an error value, not a silent death
  return ekm::cli::Run(argc, argv);
}

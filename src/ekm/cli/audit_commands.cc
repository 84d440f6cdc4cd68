// ekm audit list / export / checkpoint / public-key / verify: the tamper-evident audit log
// (docs/audit.md).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ekm/audit/audit_log.h"
#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/io.h"
#include "ekm/events/lifecycle_event.h"

namespace ekm::cli {
namespace {

// The options of every audit command (one runs per process).
struct AuditFlags : EventFilterFlags {
  std::string workspace;
  bool platform = false;
  std::string output;
  std::vector<std::string> checkpoint_files;
  std::string public_key_file;
  std::string input;
};

void AddChainOptions(CLI::App& c, AuditFlags& f) {
  auto* w = c.add_option("--workspace,-w", f.workspace, "The workspace's chain");
  auto* p = c.add_flag("--platform", f.platform, "The platform chain (admin actions)");
  w->excludes(p);
}

// The chain named by --workspace or --platform ("" = the platform's).
StatusOr<std::string> Chain(const AuditFlags& f) {
  if (f.platform) return std::string();
  if (f.workspace.empty()) {
    return InvalidArgumentError("no chain given", "pass --workspace W, or --platform");
  }
  return f.workspace;
}

// Runs fn(connection, chain) on the chain the flags name; says a missing chain without
// connecting.
void WithChain(Cli& cli, const AuditFlags& f,
               const std::function<Status(Connection&, const std::string&)>& fn) {
  auto c = Chain(f);
  if (!c.ok()) {
    cli.rc = Fail(c.status());
    return;
  }
  cli.WithConnection([&](Connection& b) { return fn(b, *c); });
}

Status ListRecords(const Cli& cli, Connection& b, const EventQuery& q) {
  EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> list, b.api().QueryAudit(b.ctx(), q));
  if (cli.g.json) {
    for (const auto& r : list) std::cout << JsonText(AuditRecordJson(r)) << "\n";
    return Status::Ok();
  }
  if (list.empty()) {
    std::fprintf(stderr, "no records match\n");
    return Status::Ok();
  }
  std::printf("%-6s %-24s %-14s %-30s %-22s %s\n", "SEQ", "TIME", "ENVIRONMENT", "TYPE", "ACTOR",
              "DETAIL");
  for (const auto& r : list) {
    std::string at = AuditRecordJson(r)["at"];
    std::printf("%-6lld %-24s %-14s %-30s %-22s %s\n", static_cast<long long>(r.seq), at.c_str(),
                r.environment.empty() ? "-" : r.environment.c_str(), r.type.c_str(),
                r.actor.c_str(), r.detail.c_str());
  }
  return Status::Ok();
}

void RunList(Cli& cli, const AuditFlags& f) {
  auto c = Chain(f);
  if (!c.ok()) {
    cli.rc = Fail(c.status());
    return;
  }
  auto query = EventQueryFrom(f, *c, ToUnixSeconds(cli.clock.Now()) * 1000);
  if (!query.ok()) {
    cli.rc = Fail(query.status());
    return;
  }
  const EventQuery& q = *query;
  cli.WithConnection([&cli, &q](Connection& b) { return ListRecords(cli, b, q); });
}

void AddList(CLI::App& audit, Cli& cli, AuditFlags& f) {
  auto* list = audit.add_subcommand("list",
                                    "Audit records of one chain, oldest first, "
                                    "filtered; --json prints one object a line");
  AddChainOptions(*list, f);
  list->add_option("--environment,-e", f.environment, "Only this environment");
  list->add_option("--type,-t", f.type, "Only this record type, e.g. key.replaced");
  list->add_option("--since", f.since, "From this time (RFC 3339, unix seconds, or 24h ago)");
  list->add_option("--until", f.until, "Before this time (same forms as --since)");
  list->add_option("--after", f.after, "Only records with a larger id (paging)");
  list->add_option("--limit,-n", f.limit, "At most this many records (1-1000)")
      ->capture_default_str();
  list->callback([c = &cli, f = &f] { RunList(*c, *f); });
}

void AddExport(CLI::App& audit, Cli& cli, AuditFlags& f) {
  auto* exp =
      audit.add_subcommand("export",
                           "Every record of one chain as JSON lines (every field, hashes hex), for "
                           "`ekm audit verify --input`");
  AddChainOptions(*exp, f);
  exp->callback([c = &cli, f = &f] {
    WithChain(*c, *f, [](Connection& b, const std::string& chain) {
      return b.api().ExportAudit(b.ctx(), chain, [](const LifecycleEventRecord& r) {
        std::cout << JsonText(AuditRecordExportJson(r)) << "\n";
        return std::cout ? Status::Ok() : FailedPreconditionError("cannot write the export");
      });
    });
  });
}

Status Checkpoint(Connection& b, const std::string& chain, const std::string& output) {
  EKM_ASSIGN_OR_RETURN(AuditCheckpoint cp, b.api().CreateAuditCheckpoint(b.ctx(), chain));
  std::string text = JsonText(AuditCheckpointJson(cp), 2) + "\n";
  if (!output.empty()) {
    EKM_RETURN_IF_ERROR(WriteFileWithMode(output, text, 0644, false));
    std::fprintf(stderr, "checkpoint of seq %lld written to %s\n", static_cast<long long>(cp.seq),
                 output.c_str());
    return Status::Ok();
  }
  std::cout << text;
  return Status::Ok();
}

void AddCheckpoint(CLI::App& audit, Cli& cli, AuditFlags& f) {
  auto* checkpoint =
      audit.add_subcommand("checkpoint",
                           "Sign a checkpoint of the chain's head now; --output FILE saves it for "
                           "keeping outside ekm");
  AddChainOptions(*checkpoint, f);
  checkpoint->add_option("--output,-o", f.output,
                         "Write the checkpoint to this new file (kept by the auditor)");
  checkpoint->callback([c = &cli, f = &f] {
    WithChain(*c, *f, [f](Connection& b, const std::string& chain) {
      return Checkpoint(b, chain, f->output);
    });
  });
}

void AddPublicKey(CLI::App& audit, Cli& cli) {
  auto* pub =
      audit.add_subcommand("public-key",
                           "Print the audit signing key's public half (PEM); keep it with your "
                           "checkpoints");
  pub->callback([c = &cli] {
    c->WithConnection([](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(AuditPublicKeyInfo key, b.api().GetAuditPublicKey(b.ctx()));
      const std::string& pem = key.public_key_pem;
      std::cout << pem;
      return Status::Ok();
    });
  });
}

// Feeds the records of an export (`ekm audit export`: one JSON object a line; "-": standard
// input) to `verifier` line by line: any length, in the memory of one line.
Status ReadExport(const std::string& path, AuditLogVerifier& verifier) {
  const bool standard_input = path == "-";
  std::FILE* file = standard_input ? stdin : std::fopen(path.c_str(), "re");
  if (file == nullptr) {
    return InvalidArgumentError(
        "cannot open the audit export file " + path + ": " + std::strerror(errno),
        "pass a file written by `ekm audit export`");
  }
  struct Reader {  // the file (not standard input) closed and getline's buffer freed on return
    std::FILE* file;
    bool close;
    char* line = nullptr;
    size_t capacity = 0;
    ~Reader() {
      std::free(line);
      if (close) std::fclose(file);
    }
  } reader{file, !standard_input};
  size_t line_no = 0;
  for (ssize_t n; (n = ::getline(&reader.line, &reader.capacity, file)) >= 0;) {
    ++line_no;
    std::string_view line(reader.line, static_cast<size_t>(n));
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.empty()) continue;
    auto r = ParseAuditRecordExportJson(nlohmann::json::parse(line, nullptr, false));
    if (!r.ok()) {
      return InvalidArgumentError(
          path + " line " + std::to_string(line_no) + ": " + r.status().message(),
          "pass a file written by `ekm audit export`");
    }
    verifier.Add(*r);
  }
  if (std::ferror(file)) {
    return InvalidArgumentError("cannot read the audit export file " + path + ": " +
                                std::strerror(errno));
  }
  return Status::Ok();
}

// The checkpoints ekm stored (kept files are the ones that cannot be rewritten), asked of ekm
// before the records: every checkpoint then names a seq the records reach.
Status FetchCheckpoints(Connection& b, const AuditFlags& f,
                        std::vector<AuditCheckpoint>& checkpoints) {
  EKM_ASSIGN_OR_RETURN(std::string chain_name, Chain(f));
  EKM_ASSIGN_OR_RETURN(checkpoints, b.api().ListAuditCheckpoints(b.ctx(), chain_name));
  return Status::Ok();
}

// The chain's records, asked of ekm, as they arrive.
Status FetchChain(Connection& b, const AuditFlags& f, AuditLogVerifier& verifier) {
  EKM_ASSIGN_OR_RETURN(std::string chain_name, Chain(f));
  return b.api().ExportAudit(b.ctx(), chain_name, [&](const LifecycleEventRecord& r) {
    verifier.Add(r);
    return Status::Ok();
  });
}

Status ReadCheckpointFiles(const AuditFlags& f, std::vector<AuditCheckpoint>& checkpoints) {
  for (const std::string& file : f.checkpoint_files) {
    EKM_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(file, "checkpoint file"));
    auto cp = ParseAuditCheckpointJson(nlohmann::json::parse(text, nullptr, false));
    if (!cp.ok()) return InvalidArgumentError(file + ": " + cp.status().message());
    checkpoints.push_back(std::move(*cp));
  }
  return Status::Ok();
}

// The key that checks the checkpoints: --public-key, else the one ekm publishes (b: nullptr
// offline), else none when there is nothing to check.
StatusOr<std::optional<AuditPublicKey>> PublicKey(const AuditFlags& f, Connection* b,
                                                  bool have_checkpoints) {
  std::optional<AuditPublicKey> key;
  if (!f.public_key_file.empty()) {
    EKM_ASSIGN_OR_RETURN(std::string pem, ReadWholeFile(f.public_key_file, "public key file"));
    EKM_ASSIGN_OR_RETURN(key, AuditPublicKey::FromPem(pem));
  } else if (b) {
    EKM_ASSIGN_OR_RETURN(AuditPublicKeyInfo served, b->api().GetAuditPublicKey(b->ctx()));
    EKM_ASSIGN_OR_RETURN(key, AuditPublicKey::FromPem(served.public_key_pem));
  } else if (have_checkpoints) {
    return InvalidArgumentError("checkpoints given without the public key to check them",
                                "pass --public-key FILE (from `ekm audit public-key`)");
  }
  return key;
}

// Verifies the export --input (b: nullptr) or the chain ekm holds.
Status Verify(const AuditFlags& f, Connection* b) {
  std::vector<AuditCheckpoint> checkpoints;
  if (f.input.empty()) EKM_RETURN_IF_ERROR(FetchCheckpoints(*b, f, checkpoints));
  EKM_RETURN_IF_ERROR(ReadCheckpointFiles(f, checkpoints));
  EKM_ASSIGN_OR_RETURN(std::optional<AuditPublicKey> key, PublicKey(f, b, !checkpoints.empty()));
  AuditLogVerifier verifier(std::move(checkpoints), key ? &*key : nullptr);
  if (!f.input.empty()) {
    EKM_RETURN_IF_ERROR(ReadExport(f.input, verifier));
  } else {
    EKM_RETURN_IF_ERROR(FetchChain(*b, f, verifier));
  }
  AuditVerifyReport report = verifier.Finish();
  if (!report.ok()) {
    for (const auto& p : report.problems) std::printf("problem: %s\n", p.c_str());
    return DataLossError("the audit log does not verify: " + report.problems[0]);
  }
  std::printf("ok: %zu record(s) in %zu chain(s), %zu checkpoint(s) verified\n", report.records,
              report.chains, report.checkpoints);
  return Status::Ok();
}

void RunVerify(Cli& cli, const AuditFlags& f) {
  if (f.input.empty()) {
    cli.WithConnection([&f](Connection& b) { return Verify(f, &b); });
    return;
  }
  if (f.public_key_file.empty() && !f.checkpoint_files.empty()) {
    cli.rc = Fail(InvalidArgumentError("checkpoints given without the public key to check them",
                                       "pass --public-key FILE (from `ekm audit public-key`)"));
    return;
  }
  Status s = Verify(f, nullptr);
  if (!s.ok()) cli.rc = Fail(s);
}

void AddVerify(CLI::App& audit, Cli& cli, AuditFlags& f) {
  auto* verify = audit.add_subcommand(
      "verify",
      "Verify a chain: every hash, seq and link, every checkpoint's signature, and kept "
      "checkpoints against the records. Exit 1 naming the first bad record");
  AddChainOptions(*verify, f);
  verify->add_option("--input,-i", f.input,
                     "Verify this export (JSON lines) offline instead of asking ekm");
  verify->add_option("--checkpoint,-c", f.checkpoint_files,
                     "A checkpoint file you kept (repeatable)");
  verify->add_option("--public-key,-k", f.public_key_file,
                     "The audit public key you kept (PEM); default: the one ekm publishes");
  verify->callback([c = &cli, f = &f] { RunVerify(*c, *f); });
}

}  // namespace

void AddAuditCommands(CLI::App& app, Cli& cli) {
  auto* audit = app.add_subcommand(
      "audit", "The tamper-evident audit log: list, export, verify, checkpoint, public-key");
  audit->require_subcommand(1);
  AuditFlags& f = cli.Keep<AuditFlags>();
  AddList(*audit, cli, f);
  AddExport(*audit, cli, f);
  AddCheckpoint(*audit, cli, f);
  AddPublicKey(*audit, cli);
  AddVerify(*audit, cli, f);
}

}  // namespace ekm::cli

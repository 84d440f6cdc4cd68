// ekm key import-params / import / delete-material: uploaded key material (BYOK without a KMS),
// the seeds' "uploading a key material file".
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "ekm/api/key_json.h"
#include "ekm/api/key_material_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/io.h"
#include "ekm/cli/print.h"
#include "ekm/cli/repack.h"

namespace ekm::cli {
namespace {

struct ImportParamsFlags {
  EnvTarget target;
  std::string out, expires = "24h";
  bool force = false;
  // Filled by the callback: the files written.
  std::string pem_path, token_path;
};

struct ImportFlags {
  EnvTarget target;
  std::string material, token_file;
  KeyChangeOptions change;  // --emergency --reason, as for `ekm key set`
};

struct DeleteMaterialFlags {
  EnvTarget target;
  std::string confirm, key_id;
};

void PrintImportParams(const Cli& cli, const ImportParamsFlags& f, const KeyImportParameters& p) {
  const std::string expires_at = FormatRfc3339(FromUnixSeconds(p.expires_at));
  if (cli.g.json) {
    nlohmann::json j = {{"workspace", p.workspace},        {"environment", p.environment},
                        {"wrapping_key_file", f.pem_path}, {"import_token_file", f.token_path},
                        {"expires_at", expires_at},        {"algorithm", p.algorithm},
                        {"material_size", p.material_size}};
    std::cout << JsonText(j, 2) << "\n";
    return;
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
      f.pem_path.c_str(), f.token_path.c_str(), expires_at.c_str(), f.pem_path.c_str(),
      p.workspace.c_str(), p.environment.c_str(), f.token_path.c_str());
}

Status CreateImportParams(const Cli& cli, Connection& b, const ImportParamsFlags& f,
                          int64_t expires) {
  EKM_ASSIGN_OR_RETURN(KeyImportParameters p, b.api().CreateKeyImportParameters(
                                                  b.ctx(), f.target.workspace, f.target.environment,
                                                  std::chrono::seconds(expires)));
  if (::mkdir(f.out.c_str(), 0755) != 0 && errno != EEXIST) {
    return FailedPreconditionError("cannot create directory " + f.out + ": " + std::strerror(errno),
                                   "choose an --out directory you can write to");
  }
  EKM_RETURN_IF_ERROR(WriteFileWithMode(f.pem_path, p.wrapping_key_pem, 0644, f.force));
  std::string token = p.import_token + "\n";
  Status written = WriteFileWithMode(f.token_path, token, 0600, f.force);
  OPENSSL_cleanse(token.data(), token.size());
  OPENSSL_cleanse(p.import_token.data(), p.import_token.size());
  EKM_RETURN_IF_ERROR(written);
  PrintImportParams(cli, f, p);
  return Status::Ok();
}

void RunImportParams(Cli& cli, ImportParamsFlags& f) {
  auto expires = ParseDurationSeconds(f.expires);  // the one duration syntax of the CLI
  if (!expires.ok()) {
    cli.rc = Fail(expires.status());
    return;
  }
  f.pem_path = f.out + "/wrapping-key.pem";
  f.token_path = f.out + "/import-token";
  // Refuse before generating anything (key generation takes a second or two).
  for (const std::string& path : {f.pem_path, f.token_path}) {
    if (!f.force && ::access(path.c_str(), F_OK) == 0) {
      cli.rc = Fail(AlreadyExistsError(path + " exists already",
                                       "pass --force to replace it, or choose another --out "
                                       "directory"));
      return;
    }
  }
  const int64_t seconds = *expires;
  cli.WithConnection(
      [&cli, &f, seconds](Connection& b) { return CreateImportParams(cli, b, f, seconds); });
}

Status Import(const Cli& cli, Connection& b, const ImportFlags& f, const Bytes& material,
              Bytes& token) {
  const std::string& ws = f.target.workspace;
  const std::string& env = f.target.environment;
  auto v = b.api().ImportKeyMaterial(b.ctx(), ws, env, material, AsChars(token), f.change);
  OPENSSL_cleanse(token.data(), token.size());
  if (!v.ok()) return v.status();
  if (cli.g.json) {
    std::cout << JsonText(KeyValidationToJson(*v), 2) << "\n";
    return AfterKeyChange(b, ws, env);  // the repack
  }
  PrintChecks(*v);
  std::printf("environment %s/%s now uses imported key material %s\n", ws.c_str(), env.c_str(),
              v->key_id.c_str());
  EKM_RETURN_IF_ERROR(AfterKeyChange(b, ws, env));  // the repack
  return Status::Ok();
}

void RunImport(Cli& cli, const ImportFlags& f) {
  auto material = ReadSecretInput(f.material, "wrapped key material file (material.wrapped)");
  if (!material.ok()) {
    cli.rc = Fail(material.status());
    return;
  }
  auto token = ReadSecretInput(f.token_file, "import-token file");
  if (!token.ok()) {
    cli.rc = Fail(token.status());
    return;
  }
  cli.WithConnection([&](Connection& b) { return Import(cli, b, f, *material, *token); });
}

Status DeleteMaterial(const Cli& cli, Connection& b, const DeleteMaterialFlags& f) {
  EKM_ASSIGN_OR_RETURN(
      KeyMaterialDeletion d,
      b.api().DeleteKeyMaterial(b.ctx(), f.target.workspace, f.target.environment, f.key_id));
  if (cli.g.json) {
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
}

}  // namespace

void AddKeyImportParamsCommand(CLI::App& key, Cli& cli) {
  ImportParamsFlags& f = cli.Keep<ImportParamsFlags>();
  auto* cmd = key.add_subcommand(
      "import-params",
      "Uploaded key material, step 1: issue an RSA-4096 wrapping public key and a one-time "
      "import token for the environment (replacing earlier ones). Writes DIR/wrapping-key.pem "
      "(0644) and DIR/import-token (0600, a secret) and prints the openssl commands that wrap "
      "32 random bytes of key material (RSAES-OAEP-SHA256) for `ekm key import`");
  AddEnvTargetOptions(*cmd, f.target);
  cmd->add_option("--out,-o", f.out,
                  "Directory to write wrapping-key.pem and import-token to "
                  "(created if missing)")
      ->required();
  cmd->add_option("--expires-in", f.expires,
                  "How long the token is valid: 1m to 7d [default: 24h]");
  cmd->add_flag("--force", f.force, "Replace the files if they exist");
  cmd->callback([c = &cli, f = &f] { RunImportParams(*c, *f); });
}

void AddKeyImportCommand(CLI::App& key, Cli& cli) {
  ImportFlags& f = cli.Keep<ImportFlags>();
  auto* cmd = key.add_subcommand(
      "import",
      "Uploaded key material, step 2: upload the wrapped key material with the import token. "
      "ekm checks the token, unwraps the material, stores it sealed under the platform root "
      "key and validates it as the environment's CMK (Update key); on any failure nothing "
      "changes. Importing the same material again after a deletion restores access");
  AddEnvTargetOptions(*cmd, f.target);
  cmd->add_option("--material,-m", f.material,
                  "The wrapped material (material.wrapped, the binary output of openssl "
                  "pkeyutl -encrypt)")
      ->required();
  cmd->add_option("--token-file", f.token_file,
                  "The import-token file written by `ekm key import-params`")
      ->required();
  cmd->add_flag("--emergency", f.change.emergency,
                "Emergency replacement inside the replacement period (suspected "
                "compromise of the current key); needs --reason and is recorded as such");
  cmd->add_option("--reason", f.change.reason,
                  "Why the key is replaced in an emergency (recorded with the change)");
  cmd->callback([c = &cli, f = &f] { RunImport(*c, *f); });
}

void AddKeyDeleteMaterialCommand(CLI::App& key, Cli& cli) {
  DeleteMaterialFlags& f = cli.Keep<DeleteMaterialFlags>();
  auto* cmd = key.add_subcommand(
      "delete-material",
      "Delete the environment's imported key material (a revocation): ekm destroys its sealed "
      "copy; once cached keys expire (the key cache TTL) the environment's data is unavailable "
      "until the same material is imported again with `ekm key import`");
  AddEnvTargetOptions(*cmd, f.target);
  cmd->add_option("--confirm", f.confirm, "The environment's name again, to confirm")->required();
  cmd->add_option("--key-id", f.key_id,
                  "Imported material to delete, imported:… [default: the "
                  "environment's current CMK]");
  cmd->callback([c = &cli, f = &f] {
    const std::string& env = f->target.environment;
    if (f->confirm != env) {
      c->rc = Fail(InvalidArgumentError(
          "--confirm \"" + f->confirm + "\" does not match the environment \"" + env + "\"",
          "pass --confirm " + env + " to delete its key material"));
      return;
    }
    c->WithConnection([c, f](Connection& b) { return DeleteMaterial(*c, b, *f); });
  });
}

}  // namespace ekm::cli

// ekm encrypt / decrypt (streamed), rewrap (whole messages) and data-key generate (client-side
// encryption).
#include <openssl/crypto.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "ekm/base/encoding.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/io.h"
#include "ekm/envelope/envelope.h"

namespace ekm::cli {
namespace {

struct EncryptFlags {
  std::string workspace, environment, scope = std::string(kDefaultScope);
  bool text = false;
};

struct RewrapFlags {
  std::string workspace, environment, in, out;
};

struct DataKeyFlags {
  EnvTarget target;
  std::string scope;
  size_t bytes = kDefaultDataKeyBytes;
  bool plaintext = false;
};

void AddEncrypt(CLI::App& app, Cli& cli) {
  EncryptFlags& f = cli.Keep<EncryptFlags>();
  auto* enc = app.add_subcommand("encrypt",
                                 "Encrypt standard input to standard output (any size, streamed)");
  enc->add_option("--workspace,-w", f.workspace, "Workspace name")->required();
  enc->add_option("--environment,-e", f.environment, "Environment name")->required();
  enc->add_option("--scope,-s", f.scope,
                  "Scope: names the data key (a table, a connection…) [default: default]");
  enc->add_flag("--text,-t", f.text, "Write the text form (ekm1:<base64url>) instead of binary");
  enc->callback([c = &cli, f = &f] {
    if (!f->text && ::isatty(STDOUT_FILENO)) {
      c->rc = Fail(
          FailedPreconditionError("refusing to write binary ciphertext to a terminal",
                                  "redirect standard output to a file or pipe, or use --text"));
      return;
    }
    c->WithConnection([f](Connection& b) -> Status {
      StdinInput input;
      return b.api().EncryptStream(b.ctx(), f->workspace, f->environment, f->scope, f->text,
                                   input.source(), StdoutSink());
    });
  });
}

void AddDecrypt(CLI::App& app, Cli& cli) {
  EnvTarget& t = cli.Keep<EnvTarget>();
  auto* dec = app.add_subcommand(
      "decrypt",
      "Decrypt standard input (binary or text form) to standard output. On failure the output "
      "is incomplete: discard it");
  dec->add_option("--workspace,-w", t.workspace, "Workspace the ciphertext belongs to")->required();
  dec->add_option("--environment,-e", t.environment, "Environment the ciphertext belongs to")
      ->required();
  dec->callback([c = &cli, t = &t] {
    c->WithConnection([t](Connection& b) -> Status {
      StdinInput input;
      return b.api().DecryptStream(b.ctx(), t->workspace, t->environment, input.source(),
                                   StdoutSink());
    });
  });
}

Status Rewrap(Connection& b, const RewrapFlags& f) {
  EKM_ASSIGN_OR_RETURN(Bytes in, ReadAllBytes(f.in));
  Bytes out;
  EKM_ASSIGN_OR_RETURN(RewrapResult r,
                       b.api().Rewrap(b.ctx(), f.workspace, f.environment, in, &out));
  if ((f.out.empty() || f.out == "-") && ::isatty(STDOUT_FILENO) &&
      !(out.size() > 5 && out[0] == 'e' && out[1] == 'k' && out[2] == 'm')) {
    return FailedPreconditionError("refusing to write binary ciphertext to a terminal",
                                   "use --out FILE or redirect standard output");
  }
  EKM_RETURN_IF_ERROR(WriteAllBytes(f.out, out));
  std::fprintf(stderr, "rewrapped: scope \"%s\", data key v%u -> v%u\n", r.scope.c_str(),
               r.from_dk_version, r.dk_version);
  return Status::Ok();
}

Status GenerateDataKey(const Cli& cli, Connection& b, const DataKeyFlags& f) {
  EKM_ASSIGN_OR_RETURN(
      GeneratedDataKey k,
      b.api().GenerateDataKey(b.ctx(), f.target.workspace, f.target.environment,
                              f.scope.empty() ? kDefaultScope : f.scope, f.bytes, f.plaintext));
  std::string wrapped = EnvelopeToText(k.ciphertext);
  while (!wrapped.empty() && wrapped.back() == '\n') wrapped.pop_back();
  std::string plain = f.plaintext ? Base64Encode(k.plaintext.RevealForCrypto()) : "";
  if (cli.g.json) {
    nlohmann::json j = {{"ciphertext", wrapped}, {"scope", k.scope}, {"bytes", f.bytes}};
    if (f.plaintext) j["plaintext"] = plain;
    std::string text = JsonText(j, 2);
    std::cout << text << "\n";
    OPENSSL_cleanse(text.data(), text.size());
  } else {
    std::cout << wrapped << "\n";
    if (f.plaintext) std::cout << plain << "\n";
  }
  std::cout.flush();
  OPENSSL_cleanse(plain.data(), plain.size());
  return Status::Ok();
}

}  // namespace

void AddEncryptDecryptCommands(CLI::App& app, Cli& cli) {
  AddEncrypt(app, cli);
  AddDecrypt(app, cli);
}

// ekm rewrap: re-encrypt under the newest DK of the ciphertext's scope.
void AddRewrapCommand(CLI::App& app, Cli& cli) {
  RewrapFlags& f = cli.Keep<RewrapFlags>();
  auto* rewrap = app.add_subcommand(
      "rewrap",
      "Re-encrypt a ciphertext (either form) under the newest data key of its own scope, "
      "without exposing the plaintext: the plaintext never leaves ekm. The output keeps the "
      "input's form (binary or text). Whole messages: the input is read into memory (against a "
      "server, the JSON body limit applies)");
  rewrap->add_option("--workspace,-w", f.workspace, "Workspace the ciphertext belongs to")
      ->required();
  rewrap->add_option("--environment,-e", f.environment, "Environment the ciphertext belongs to")
      ->required();
  rewrap->add_option("--in,-i", f.in, "Ciphertext file [default: standard input]");
  rewrap->add_option("--out,-o", f.out,
                     "Where to write the new ciphertext (written whole, then "
                     "renamed into place) [default: standard output]");
  rewrap->callback(
      [c = &cli, f = &f] { c->WithConnection([f](Connection& b) { return Rewrap(b, *f); }); });
}

// ekm data-key generate: a data key for client-side encryption (AWS KMS GenerateDataKey).
void AddDataKeyCommands(CLI::App& app, Cli& cli) {
  DataKeyFlags& f = cli.Keep<DataKeyFlags>();
  auto* data_key = app.add_subcommand("data-key", "Data keys for client-side encryption");
  data_key->require_subcommand(1);
  auto* generate = data_key->add_subcommand(
      "generate",
      "Generate a data key and print it wrapped (ekm1:…, `ekm decrypt` returns the key bytes). "
      "With --with-plaintext also the key itself, base64, on a second line: use it, then forget "
      "it, and keep only the wrapped key");
  AddEnvTargetOptions(*generate, f.target);
  generate->add_option("--scope,-s", f.scope, "Scope [default: default]");
  generate->add_option("--bytes", f.bytes, "Key size in bytes, 16 to 64 [default: 32]");
  generate->add_flag("--with-plaintext", f.plaintext,
                     "Also print the plaintext key (base64), on a second line");
  generate->callback([c = &cli, f = &f] {
    c->WithConnection([c, f](Connection& b) { return GenerateDataKey(*c, b, *f); });
  });
}

}  // namespace ekm::cli

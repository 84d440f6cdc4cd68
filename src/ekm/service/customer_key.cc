#include <spdlog/spdlog.h>

#include "ekm/api/repack_json.h"
#include "ekm/base/json_text.h"
#include "ekm/policy/key_policy_statement.h"
#include "ekm/policy/policy_doctor.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

StatusOr<KeyValidation> EkmServiceImpl::SetCustomerKey(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    std::string_view provider_name, std::string_view key_id, const KeyChangeOptions& options) {
  KeyUpdate u(ctx, workspace, environment, provider_name, key_id, options, /*validate=*/false);
  Status s = UpdateKey(u);
  if (!s.ok()) return s;
  return std::move(u.v);
}

StatusOr<KeyValidation> EkmServiceImpl::ValidateCustomerKey(const CallContext& ctx,
                                                            std::string_view workspace,
                                                            std::string_view environment,
                                                            std::string_view provider_name,
                                                            std::string_view key_id) {
  const KeyChangeOptions none;
  KeyUpdate u(ctx, workspace, environment, provider_name, key_id, none, /*validate=*/true);
  Status s = UpdateKey(u);
  // A failed check is the answer, not an error of the request (which has no checks yet).
  if (!s.ok() && u.v.checks.empty()) return s;
  return std::move(u.v);
}

Status EkmServiceImpl::UpdateKey(KeyUpdate& u) {
  EKM_RETURN_IF_ERROR(CheckKeyChangeOptions(u.options));
  EKM_RETURN_IF_ERROR(ValidateName("workspace", u.workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", u.environment));
  // From the store: a cached record may be older than another node's change.
  EKM_ASSIGN_OR_RETURN(u.env, StoredEnvironment(u.workspace, u.environment));
  EKM_ASSIGN_OR_RETURN(u.provider, providers_->Get(u.provider_name));
  EKM_ASSIGN_OR_RETURN(u.current, store_->GetEnvironmentKey(u.env.id, u.env.current_ek_version));
  u.unchanged = u.current.cmk_provider == u.provider_name && u.current.cmk_key_id == u.key_id;
  u.v.provider = std::string(u.provider_name);
  u.v.key_id = std::string(u.key_id);
  u.v.checked_at = ToUnixSeconds(options_.clock->Now());
  // In order (docs/api.md "PUT …/key").
  static constexpr KeyCheck kChecks[] = {
      {"key id", &EkmServiceImpl::CheckKeyId},
      {"replacement period", &EkmServiceImpl::CheckPeriod},
      {"encrypt", &EkmServiceImpl::CheckRoundTrip},
      {"describe", &EkmServiceImpl::CheckDescription},
      {"store", &EkmServiceImpl::StoreKey},
  };
  for (const KeyCheck& check : kChecks) {
    Status s = (this->*check.run)(u);
    if (s.ok()) continue;
    // Every exit records what happened, then answers.
    const std::string_view name = u.failed_as.empty() ? check.name : u.failed_as;
    u.v.ok = false;
    u.v.checks.push_back({std::string(name), "failed", s.message()});
    Status mapped = CustomerKeyError(u.workspace, u.environment, name, s);
    u.v.error_code = std::string(StatusCodeName(mapped.code()));
    u.v.provider_code = s.provider_code();
    u.v.message = mapped.message();
    u.v.hint = mapped.hint();
    if (!u.outcome_recorded_by_caller) RecordOutcome(u);
    return mapped;
  }
  u.v.ok = true;
  if (u.unchanged || !u.validate_only) keys_.OnCmkVerified(u.env);
  if (!u.outcome_recorded_by_caller) RecordOutcome(u);
  return Status::Ok();
}

void EkmServiceImpl::RecordOutcome(const KeyUpdate& u) {
  if (u.refused_replacement) {
    RecordEvent(u.ctx, u.env.workspace, u.env.name, event::kKeyReplacementRefused,
                *u.refused_replacement);
  }
  RecordValidation(u.ctx, u.workspace, u.environment, u.v, u.validate_only);
}

Status EkmServiceImpl::CheckKeyId(KeyUpdate& u) {
  EKM_RETURN_IF_ERROR(u.provider->ValidateKeyId(u.key_id));
  u.v.checks.push_back({"key id", "passed", std::string(u.key_id)});
  return Status::Ok();
}

Status EkmServiceImpl::CheckPeriod(KeyUpdate& u) {
  if (u.unchanged) return Status::Ok();
  Status period = CheckReplacementPeriod(u.env, u.current, u.provider_name, u.key_id, u.options,
                                         &u.refused_replacement);
  if (!period.ok() && u.validate_only) {
    u.v.checks.push_back({"replacement period", "warning", period.message()});
    return Status::Ok();
  }
  return period;
}

Status EkmServiceImpl::CheckRoundTrip(KeyUpdate& u) {
  CmkRef cmk{std::string(u.provider_name), std::string(u.key_id)};
  std::string step;
  auto ek = keys_.NewVerifiedEnvironmentKey(u.env.workspace, u.env.name, cmk,
                                            u.env.current_ek_version + 1, &step);
  if (!ek.ok()) {
    const bool wrap = step == KeyHierarchy::kWrapStep;
    if (!wrap) {
      u.v.checks.push_back({"encrypt", "passed", "with the encryption context"});
      u.failed_as = "decrypt";
    }
    return ek.status();
  }
  u.ek = std::move(ek).value();
  u.v.checks.push_back({"encrypt", "passed",
                        "with encryption context ekm:workspace=" + u.env.workspace +
                            ", ekm:environment=" + u.env.name});
  u.v.checks.push_back({"decrypt", "passed", "the round trip returned the same key"});
  return Status::Ok();
}

Status EkmServiceImpl::CheckDescription(KeyUpdate& u) {
  EKM_ASSIGN_OR_RETURN(Bulkhead::Ticket place, keys_.ProviderCallPlace(*u.provider));
  EKM_ASSIGN_OR_RETURN(CmkDescription d, u.provider->Describe(u.key_id));
  if (d.describe_permitted) {
    EKM_RETURN_IF_ERROR(d.usable);
    u.v.checks.push_back({"describe", "passed",
                          "state " + d.provider_state +
                              (d.key_spec.empty() ? "" : ", spec " + d.key_spec) +
                              (d.key_usage.empty() ? "" : ", usage " + d.key_usage)});
  } else {
    u.v.checks.push_back({"describe", "skipped", Join(d.notes, "; ")});
  }
  switch (d.rotation) {
    case CmkRotation::kEnabled:
      u.v.checks.push_back({"rotation", "passed", "automatic rotation is enabled"});
      break;
    case CmkRotation::kDisabled:
      if (d.rotation_advice.empty()) {
        u.v.checks.push_back({"rotation", "passed", "not applicable"});
      } else {
        u.v.checks.push_back(
            {"rotation", "warning", "automatic rotation is off: " + d.rotation_advice});
      }
      break;
    case CmkRotation::kUnknown:
      u.v.checks.push_back({"rotation", "skipped", "the rotation status is not readable"});
      break;
  }
  return Status::Ok();
}

Status EkmServiceImpl::StoreKey(KeyUpdate& u) {
  if (u.validate_only) {
    u.v.checks.push_back({"store", "skipped", "validate only: nothing was changed"});
    return Status::Ok();
  }
  if (u.unchanged) {
    u.v.checks.push_back({"store", "skipped", "this key is already the environment's CMK"});
    return Status::Ok();
  }
  EnvironmentKeyRecord rec = std::move(*u.ek);
  rec.environment_id = u.env.id;
  EKM_RETURN_IF_ERROR(StoreCmkChange(u.ctx, u.env, u.current, rec, u.options));
  keys_.ForgetEnvironment(u.env.workspace, u.env.name);
  PostNotice(kNoticeEnvironmentChanged, &u.env);
  u.v.checks.push_back({"store", "passed",
                        "environment key v" + std::to_string(rec.version) +
                            " is wrapped under this key and is now current" +
                            RepackStartedNote(u.env)});
  return Status::Ok();
}

StatusOr<CustomerKeyInfo> EkmServiceImpl::ShowCustomerKey(const CallContext& /*ctx*/,
                                                          std::string_view workspace,
                                                          std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                       store_->GetEnvironmentKey(env.id, env.current_ek_version));
  CustomerKeyInfo info;
  info.workspace = env.workspace;
  info.environment = env.name;
  info.provider = ek.cmk_provider;
  info.key_id = ek.cmk_key_id;
  info.ek_version = env.current_ek_version;
  auto provider = providers_->Get(ek.cmk_provider);
  StatusOr<Bulkhead::Ticket> place =
      provider.ok() ? keys_.ProviderCallPlace(**provider) : provider.status();
  auto described =
      place.ok() ? (*provider)->Describe(ek.cmk_key_id) : StatusOr<CmkDescription>(place.status());
  if (described.ok()) {
    info.description = std::move(described).value();
  } else {
    info.description_error = described.status().ToString();
  }
  EKM_ASSIGN_OR_RETURN(std::optional<KeyValidationRecord> last,
                       store_->GetLatestKeyValidation(env.id));
  if (last) info.last_validation = FromRecord(*last);
  return info;
}

StatusOr<KeyValidation> EkmServiceImpl::SetCustomerKey(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       std::string_view provider_name,
                                                       std::string_view key_id) {
  return SetCustomerKey(ctx, workspace, environment, provider_name, key_id, KeyChangeOptions{});
}

void EkmServiceImpl::RecordValidation(const CallContext& ctx, std::string_view workspace,
                                      std::string_view environment, const KeyValidation& v,
                                      bool dry_run) {
  auto env = store_->GetEnvironment(workspace, environment);
  if (!env.ok()) return;
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : v.checks) {
    checks.push_back({{"name", c.name}, {"outcome", c.outcome}, {"detail", c.detail}});
  }
  if (!dry_run) {
    KeyValidationRecord r{env->id,      v.provider,      v.key_id,  v.checked_at, v.ok,
                          v.error_code, v.provider_code, v.message, v.hint,       JsonText(checks)};
    Status s = store_->RecordKeyValidation(r);
    if (!s.ok()) spdlog::warn("could not record a key validation: {}", s.ToString());
  }
  nlohmann::json detail = {{"provider", v.provider}, {"key_id", v.key_id}, {"checks", checks}};
  if (dry_run) detail["dry_run"] = true;
  if (!v.ok) {
    detail["error"] = {
        {"code", v.error_code}, {"provider_code", v.provider_code}, {"message", v.message}};
  }
  RecordEvent(ctx, env->workspace, env->name,
              v.ok ? event::kKeyValidated : event::kKeyValidationFailed, detail);
}

KeyValidation EkmServiceImpl::FromRecord(const KeyValidationRecord& r) {
  KeyValidation v;
  v.provider = r.cmk_provider;
  v.key_id = r.cmk_key_id;
  v.checked_at = r.checked_at;
  v.ok = r.ok;
  v.error_code = r.error_code;
  v.provider_code = r.provider_code;
  v.message = r.message;
  v.hint = r.hint;
  nlohmann::json checks = nlohmann::json::parse(r.detail, nullptr, false);
  if (checks.is_array()) {
    for (const auto& c : checks) {
      if (!c.is_object()) continue;
      v.checks.push_back({c.value("name", ""), c.value("outcome", ""), c.value("detail", "")});
    }
  }
  return v;
}

StatusOr<std::string> EkmServiceImpl::PlatformPrincipalArn() {
  if (!options_.aws.principal_arn.empty()) return options_.aws.principal_arn;
  if (auto aws = providers_->Get(kAwsKmsProviderName); aws.ok()) {
    return (*aws)->PlatformIdentity();
  }
  return FailedPreconditionError(
      "the platform principal (the IAM role ekm uses to call AWS KMS) is not configured",
      "start ekmd with --aws-principal-arn arn:aws:iam::ACCOUNT:role/NAME, or give it AWS "
      "credentials so it can ask STS who it is");
}

Status EkmServiceImpl::CheckKeyChangeOptions(const KeyChangeOptions& o) {
  if (o.emergency && o.reason.find_first_not_of(" \t\r\n") == std::string::npos) {
    return InvalidArgumentError(
        "an emergency replacement needs a reason",
        "say why the current key must be replaced now, e.g. --reason \"key material may "
        "have leaked (incident 4711)\"; it is recorded with the change");
  }
  if (o.reason.size() > 1000) {
    return InvalidArgumentError("the reason is longer than 1000 characters",
                                "give a short reason and refer to the incident");
  }
  return Status::Ok();
}

std::chrono::seconds EkmServiceImpl::ReplacementPeriod(const EnvironmentRecord& env) {
  auto settings = store_->GetEnvironmentSettings(env.id);
  if (settings.ok()) {
    auto it = settings->find(std::string(kSettingReplacementPeriod));
    if (it != settings->end()) {
      return std::max(std::chrono::seconds(it->second), kMinReplacementPeriod);
    }
  }
  return options_.replacement_period;
}

StatusOr<int64_t> EkmServiceImpl::StoredReplacementRunningUntil(const EnvironmentRecord& env) {
  EKM_ASSIGN_OR_RETURN(auto stored, store_->GetEnvironmentSettings(env.id));
  auto it = stored.find(std::string(kReplacementRunningUntil));
  return it == stored.end() ? int64_t{0} : it->second;
}

Status EkmServiceImpl::KeepRunningReplacementPeriod(const EnvironmentRecord& env,
                                                    Store::SettingChanges* changes) {
  EKM_ASSIGN_OR_RETURN(std::optional<Store::CmkChangeRecord> last,
                       store_->GetLatestCmkChange(env.id));
  if (!last) return Status::Ok();
  EKM_ASSIGN_OR_RETURN(int64_t kept, StoredReplacementRunningUntil(env));
  const int64_t end = last->at + ReplacementPeriod(env).count();
  if (end > kept) changes->emplace_back(std::string(kReplacementRunningUntil), end);
  return Status::Ok();
}

StatusOr<int64_t> EkmServiceImpl::NextReplacementAllowedAt(const EnvironmentRecord& env,
                                                           Store::CmkChangeRecord* last_change) {
  EKM_ASSIGN_OR_RETURN(std::optional<Store::CmkChangeRecord> last,
                       store_->GetLatestCmkChange(env.id));
  if (!last) return int64_t{0};
  EKM_ASSIGN_OR_RETURN(int64_t kept, StoredReplacementRunningUntil(env));
  if (last_change != nullptr) *last_change = *last;
  return std::max(last->at + ReplacementPeriod(env).count(), kept);
}

Status EkmServiceImpl::CheckReplacementPeriod(const EnvironmentRecord& env,
                                              const EnvironmentKeyRecord& current,
                                              std::string_view provider, std::string_view key_id,
                                              const KeyChangeOptions& options,
                                              std::optional<nlohmann::json>* refused_detail) {
  if (options.emergency) return Status::Ok();
  Store::CmkChangeRecord last;
  EKM_ASSIGN_OR_RETURN(int64_t next, NextReplacementAllowedAt(env, &last));
  // 0: the first customer key, or changes from before migration 6.
  if (next == 0) return Status::Ok();
  const int64_t period = ReplacementPeriod(env).count();
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  if (now >= next) return Status::Ok();
  auto at = [](int64_t t) { return FormatRfc3339(FromUnixSeconds(t)); };
  if (refused_detail != nullptr) {
    *refused_detail = nlohmann::json{
        {"from", {{"provider", current.cmk_provider}, {"key_id", current.cmk_key_id}}},
        {"to", {{"provider", provider}, {"key_id", key_id}}},
        {"last_change_at", at(last.at)},
        {"next_allowed_at", at(next)}};
  }
  const std::string rule = next > last.at + period
                               ? "the replacement period of " + HumanDuration(next - last.at) +
                                     " that began then still runs (the shorter period of " +
                                     HumanDuration(period) + " set since applies only after it)"
                               : "it may be replaced once per " + HumanDuration(period);
  return FailedPreconditionError(
      "the customer main key of " + env.workspace + "/" + env.name + " was last changed at " +
          at(last.at) + "; " + rule + ": the next replacement is allowed at " + at(next) + " (in " +
          HumanDuration(next - now) + ")",
      "wait until then; if the current key is suspected to be compromised, an owner can make "
      "an emergency replacement now: `ekm key set … --emergency --reason TEXT` (API: "
      "\"emergency\": true, \"reason\": \"…\")");
}

Status EkmServiceImpl::StoreCmkChange(const CallContext& ctx, const EnvironmentRecord& env,
                                      const EnvironmentKeyRecord& current,
                                      const EnvironmentKeyRecord& rec,
                                      const KeyChangeOptions& options) {
  EKM_RETURN_IF_ERROR(store_->InTransaction([&]() -> Status {
    // Checked before the provider was asked, and again here with the change: a change made
    // meanwhile (another request, another replica) counts.
    EKM_RETURN_IF_ERROR(
        CheckReplacementPeriod(env, current, rec.cmk_provider, rec.cmk_key_id, options, nullptr));
    EKM_ASSIGN_OR_RETURN(std::optional<Store::CmkChangeRecord> last,
                         store_->GetLatestCmkChange(env.id));
    Store::CmkChangeRecord c;
    c.environment_id = env.id;
    c.at = ToUnixSeconds(options_.clock->Now());
    c.from_provider = current.cmk_provider;
    c.from_key_id = current.cmk_key_id;
    c.to_provider = rec.cmk_provider;
    c.to_key_id = rec.cmk_key_id;
    c.ek_version = rec.version;
    const bool first = current.cmk_provider == kPlatformProviderName && !last;
    c.kind = first ? "set" : "replacement";
    c.emergency = options.emergency;
    c.reason = options.reason;
    c.actor = ctx.actor;
    EKM_RETURN_IF_ERROR(store_->AddEnvironmentKeyForCmkChange(rec, c));
    // The new period's end under the period in force now, so that a later shortening (also of
    // ekmd's default, by a restart) does not shorten it.
    EKM_RETURN_IF_ERROR(store_->SetEnvironmentSetting(env.id, kReplacementRunningUntil,
                                                      c.at + ReplacementPeriod(env).count()));
    nlohmann::json detail = {
        {"from", {{"provider", current.cmk_provider}, {"key_id", current.cmk_key_id}}},
        {"to", {{"provider", rec.cmk_provider}, {"key_id", rec.cmk_key_id}}},
        {"ek_version", rec.version}};
    if (options.emergency) {
      detail["emergency"] = true;
      detail["reason"] = options.reason;
    }
    return RecordEventInTransaction(ctx, env.workspace, env.name,
                                    first               ? event::kKeySet
                                    : options.emergency ? event::kKeyEmergencyReplaced
                                                        : event::kKeyReplaced,
                                    detail);
  }));
  std::lock_guard<std::mutex> lock(repack_mu_);
  if (repack_runner_) repack_runner_->Nudge();
  return Status::Ok();
}

std::string EkmServiceImpl::RepackStartedNote(const EnvironmentRecord& env) {
  uint64_t moving = 0;
  auto inv = store_->EnvironmentKeyInventory(env.id);
  if (inv.ok()) {
    for (const auto& r : *inv) {
      if (!r.destroyed_at && r.version <= env.current_ek_version) moving += r.data_keys;
    }
  }
  return "; the repack of " + std::to_string(moving) +
         " data keys under the new environment key has begun (`ekm repack status` shows its "
         "progress); the previous CMK must stay usable until it completes";
}

StatusOr<KeyPolicyAdvice> EkmServiceImpl::KeyPolicy(const CallContext& /*ctx*/,
                                                    std::string_view workspace,
                                                    std::string_view environment) {
  EKM_RETURN_IF_ERROR(StoredEnvironment(workspace, environment).status());
  EKM_ASSIGN_OR_RETURN(std::string principal, PlatformPrincipalArn());
  KeyPolicyStatementOptions o;
  o.platform_principal = principal;
  o.workspace = std::string(workspace);
  KeyPolicyAdvice a;
  EKM_ASSIGN_OR_RETURN(a.statement, KeyPolicyStatementsText(o));
  EKM_ASSIGN_OR_RETURN(PlatformPrincipal p, ParsePlatformPrincipal(principal));
  a.principal_arn = p.arn;
  // The example names a placeholder account as the key's owner (the one the policy doctor's
  // example names too): the admin replaces it with their own account id.
  EKM_ASSIGN_OR_RETURN(a.example_policy, ExampleKeyPolicyText(kExampleKeyAccountId, o));
  return a;
}

StatusOr<std::string> EkmServiceImpl::CheckKeyPolicy(const CallContext& /*ctx*/,
                                                     std::string_view workspace,
                                                     std::string_view policy_text) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
  auto principal = PlatformPrincipalArn();
  PolicyCheckRequest req;
  req.policy_text = policy_text;
  // JSON mistakes do not depend on the principal: report them even when it is unknown.
  req.platform_principal =
      principal.ok() ? *principal : "arn:aws:iam::000000000000:role/principal-not-configured";
  req.workspace = std::string(workspace);
  EKM_ASSIGN_OR_RETURN(PolicyReport report, ::ekm::CheckKeyPolicy(req));
  if (!principal.ok() && !report.syntax_error) return principal.status();
  nlohmann::ordered_json j = report.ToJson();
  j["granted"] = report.ok();
  j["text"] = report.ToText();
  return JsonText(j);
}

}  // namespace ekm

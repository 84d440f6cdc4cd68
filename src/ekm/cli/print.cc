#include "ekm/cli/print.h"

#include <cstdio>
#include <iostream>

#include "ekm/api/key_json.h"
#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/base/clock.h"

namespace ekm::cli {
namespace {

std::string TimeOrNever(int64_t unix_seconds) {
  return unix_seconds == 0 ? "never" : FormatRfc3339(FromUnixSeconds(unix_seconds));
}

}  // namespace

void PrintEvents(const std::vector<LifecycleEventInfo>& list, bool json, const char* none) {
  if (json) {
    for (const auto& e : list) std::cout << JsonText(LifecycleEventInfoToJson(e)) << "\n";
    return;
  }
  if (list.empty()) {
    std::fprintf(stderr, "%s\n", none);
    return;
  }
  std::printf("%-6s %-24s %-14s %-26s %-18s %s\n", "ID", "TIME", "ENVIRONMENT", "TYPE", "ACTOR",
              "DETAIL");
  for (const auto& e : list) {
    std::string at = LifecycleEventInfoToJson(e)["at"];
    std::printf("%-6lld %-24s %-14s %-26s %-18s %s\n", static_cast<long long>(e.id), at.c_str(),
                e.environment.empty() ? "-" : e.environment.c_str(), e.type.c_str(),
                e.actor.c_str(), e.detail.c_str());
  }
}

void PrintScopes(const ScopeList& list) {
  if (list.scopes.empty()) {
    std::fprintf(stderr,
                 "no scope of %s/%s has a data key yet (a scope's first encrypt makes one)\n",
                 list.workspace.c_str(), list.environment.c_str());
    return;
  }
  std::printf("%-24s %-4s %-4s %-22s %s\n", "SCOPE", "DK", "EK", "SINCE", "MESSAGES RESERVED");
  for (const ScopeInfo& s : list.scopes) {
    std::string since = ScopeInfoToJson(s)["created_at"];
    const double share = list.max_messages_per_dk == 0
                             ? 0
                             : 100.0 * static_cast<double>(s.messages_reserved) /
                                   static_cast<double>(list.max_messages_per_dk);
    std::printf("%-24s v%-3u v%-3u %-22s %llu (%.2f%% of the %llu before the DK rotates)\n",
                s.scope.c_str(), s.dk_version, s.ek_version, since.c_str(),
                static_cast<unsigned long long>(s.messages_reserved), share,
                static_cast<unsigned long long>(list.max_messages_per_dk));
  }
}

nlohmann::json ApiTokenInfoJson(const ApiTokenInfo& t, int64_t now) {
  auto at = [](int64_t v) {
    return v == 0 ? nlohmann::json(nullptr) : nlohmann::json(FormatRfc3339(FromUnixSeconds(v)));
  };
  return {{"id", t.id},
          {"role", t.role},
          {"workspace", t.workspace},
          {"environments", t.environments},
          {"description", t.description},
          {"created_at", at(t.created_at)},
          {"created_by", t.created_by},
          {"expires_at", at(t.expires_at)},
          {"revoked_at", at(t.revoked_at)},
          {"state", t.revoked_at != 0                          ? "revoked"
                    : t.expires_at != 0 && now >= t.expires_at ? "expired"
                                                               : "active"}};
}

void PrintWorkspaces(const std::vector<WorkspaceInfo>& list, bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& w : list) {
      j.push_back({{"name", w.name}, {"created_at", FormatRfc3339(FromUnixSeconds(w.created_at))}});
    }
    std::cout << nlohmann::json{{"workspaces", j}}.dump(2) << "\n";
    return;
  }
  if (list.empty()) {
    std::cerr << "no workspaces yet: create one with `ekm workspace create NAME`\n";
    return;
  }
  std::printf("%-32s %s\n", "NAME", "CREATED");
  for (const auto& w : list) {
    std::printf("%-32s %s\n", w.name.c_str(), FormatRfc3339(FromUnixSeconds(w.created_at)).c_str());
  }
}

void PrintEnvironments(const std::string& ws, const std::vector<EnvironmentInfo>& list, bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : list) {
      j.push_back({{"workspace", e.workspace},
                   {"name", e.name},
                   {"created_at", FormatRfc3339(FromUnixSeconds(e.created_at))},
                   {"cmk", {{"provider", e.cmk_provider}, {"key_id", e.cmk_key_id}}},
                   {"ek_version", e.ek_version}});
    }
    std::cout << nlohmann::json{{"environments", j}}.dump(2) << "\n";
    return;
  }
  if (list.empty()) {
    std::cerr << "workspace " << ws << " has no environments yet: create one with "
              << "`ekm environment create " << ws << " NAME`\n";
    return;
  }
  std::printf("%-24s %-22s %-10s %s\n", "NAME", "CREATED", "EK", "CMK");
  for (const auto& e : list) {
    // Appended, not "v" + …: GCC 12 at -O3 reports a false -Wrestrict (GCC bug 105651).
    std::string ek = std::string("v").append(std::to_string(e.ek_version));
    std::string cmk = e.cmk_provider + ":" + e.cmk_key_id;
    std::printf("%-24s %-22s %-10s %s\n", e.name.c_str(),
                FormatRfc3339(FromUnixSeconds(e.created_at)).c_str(), ek.c_str(), cmk.c_str());
  }
}

void PrintChecks(const KeyValidation& v) {
  for (const auto& c : v.checks) {
    const char* mark = c.outcome == "passed"    ? "ok  "
                       : c.outcome == "skipped" ? "skip"
                       : c.outcome == "warning" ? "warn"
                                                : "FAIL";
    std::printf("  [%s] %-9s %s\n", mark, c.name.c_str(), c.detail.c_str());
  }
}

void PrintKeyInfo(const CustomerKeyInfo& info) {
  std::printf("environment:   %s/%s\n", info.workspace.c_str(), info.environment.c_str());
  std::printf("provider:      %s\n", info.provider.c_str());
  std::printf("key:           %s\n", info.key_id.c_str());
  std::printf("env key:       v%u\n", info.ek_version);
  if (info.description) {
    const CmkDescription& d = *info.description;
    if (!d.region.empty()) std::printf("region:        %s\n", d.region.c_str());
    if (!d.resolved_key_id.empty() && d.resolved_key_id != info.key_id) {
      std::printf("resolves to:   %s\n", d.resolved_key_id.c_str());
    }
    std::printf("state:         %s\n",
                d.provider_state.empty() ? "unknown" : d.provider_state.c_str());
    if (!d.key_spec.empty()) std::printf("key spec:      %s\n", d.key_spec.c_str());
    std::printf("rotation:      %s\n", std::string(CmkRotationName(d.rotation)).c_str());
    if (d.rotation == CmkRotation::kDisabled && !d.rotation_advice.empty()) {
      std::printf("               %s\n", d.rotation_advice.c_str());
    }
    for (const auto& n : d.notes) std::printf("note:          %s\n", n.c_str());
  } else {
    std::printf("state:         unknown (%s)\n", info.description_error.c_str());
  }
  if (!info.last_validation) {
    std::printf("last validation: none (the key was never set with `ekm key set`)\n");
    return;
  }
  const KeyValidation& v = *info.last_validation;
  const bool other_key = v.provider != info.provider || v.key_id != info.key_id;
  std::printf("last validation: %s, %s, of %s %s%s\n",
              FormatRfc3339(FromUnixSeconds(v.checked_at)).c_str(), v.ok ? "passed" : "FAILED",
              v.provider.c_str(), v.key_id.c_str(),
              other_key && !v.ok ? " (not set: the key above stays in force)" : "");
  PrintChecks(v);
  if (!v.ok) {
    std::printf("  error: %s\n", v.message.c_str());
    if (!v.hint.empty()) std::printf("  what to do: %s\n", v.hint.c_str());
  }
}

void PrintKeyStatus(const EnvironmentKeyStatus& s) {
  std::printf("environment %s/%s\n", s.workspace.c_str(), s.environment.c_str());
  std::printf("CMK:            %s %s\n", s.cmk_provider.c_str(), s.cmk_key_id.c_str());
  std::string state = s.state;
  if (s.state == "degraded")
    state += " (the KMS cannot be reached: served from cache within the TTL, retried with backoff)";
  if (s.state == "unavailable")
    state += " (the KMS refused: every operation fails until access is restored)";
  std::printf("state:          %s\n", state.c_str());
  std::printf("since:          %s\n", TimeOrNever(s.since).c_str());
  std::printf("last success:   %s\n", TimeOrNever(s.last_success).c_str());
  if (s.next_retry != 0) std::printf("next retry:     %s\n", TimeOrNever(s.next_retry).c_str());
  std::printf("key cache TTL:  %llds\n", static_cast<long long>(s.key_cache_ttl_seconds));
  std::printf("grace period:   %s\n",
              s.grace_period_seconds == 0
                  ? "off"
                  : (std::to_string(s.grace_period_seconds) + "s (outages only)").c_str());
  if (!s.error_code.empty() && s.error_resolved_at != 0) {
    // History: the CMK answers again, so its hint is not something to do now.
    std::printf("last error (resolved at %s): %s%s%s\n", TimeOrNever(s.error_resolved_at).c_str(),
                s.error_code.c_str(), s.provider_code.empty() ? "" : ", ", s.provider_code.c_str());
    std::printf("  %s\n", s.message.c_str());
  } else if (!s.error_code.empty()) {
    std::printf("last error:     %s%s%s\n", s.error_code.c_str(),
                s.provider_code.empty() ? "" : ", ", s.provider_code.c_str());
    std::printf("  %s\n", s.message.c_str());
    if (!s.hint.empty()) std::printf("  what to do: %s\n", s.hint.c_str());
  }
}

void PrintKeyCacheStats(const KeyCacheStats& s) {
  std::printf("cached keys:    %llu (%llu environment keys, %llu data keys; bound %llu)\n",
              static_cast<unsigned long long>(s.entries),
              static_cast<unsigned long long>(s.ek_entries),
              static_cast<unsigned long long>(s.dk_entries),
              static_cast<unsigned long long>(s.max_entries));
  std::printf("hits / misses:  %llu / %llu\n", static_cast<unsigned long long>(s.hits),
              static_cast<unsigned long long>(s.misses));
  std::printf("provider calls: %llu ok, %llu refused, %llu unavailable, %llu other errors\n",
              static_cast<unsigned long long>(s.provider_ok),
              static_cast<unsigned long long>(s.provider_refused),
              static_cast<unsigned long long>(s.provider_unavailable),
              static_cast<unsigned long long>(s.provider_error));
  std::printf("TTL:            %llds (deployment default)\n",
              static_cast<long long>(s.ttl_seconds));
}

void PrintRotations(const std::vector<RotationResult>& list, bool json) {
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : list) arr.push_back(RotationResultToJson(r));
    std::cout << JsonText(nlohmann::json{{"rotated", arr}}, 2) << "\n";
    return;
  }
  if (list.empty()) std::printf("nothing to rotate\n");
  for (const auto& r : list) {
    if (r.kind == "ek") {
      std::printf(
          "%s/%s: environment key v%u -> v%u (new data keys go under v%u; older "
          "versions still decrypt)\n",
          r.workspace.c_str(), r.environment.c_str(), r.from_version, r.to_version, r.to_version);
    } else {
      std::printf("%s/%s: data key of scope \"%s\" v%u -> v%u\n", r.workspace.c_str(),
                  r.environment.c_str(), r.scope.c_str(), r.from_version, r.to_version);
    }
  }
}

void PrintSettings(const std::string& ws, const std::string& env, const EnvironmentSettings& s,
                   bool json) {
  if (json) {
    std::cout << JsonText(EnvironmentSettingsToJson(s), 2) << "\n";
    return;
  }
  std::printf("environment %s/%s settings (* = deployment default):\n", ws.c_str(), env.c_str());
  auto row = [](const char* name, const std::optional<int64_t>& v, const char* dflt) {
    std::string value = v ? FormatDuration(*v) : std::string(dflt) + " *";
    std::printf("  %-22s %s\n", name, value.c_str());
  };
  row("key-cache-ttl", s.key_cache_ttl_seconds, "deployment TTL");
  row("grace-period", s.grace_period_seconds, "deployment grace period");
  row("ek-rotation-period", s.ek_rotation_period_seconds, "none (manual)");
  row("dk-rotation-period", s.dk_rotation_period_seconds, "none (manual)");
  row("replacement-period", s.replacement_period_seconds, "24h");
}

}  // namespace ekm::cli

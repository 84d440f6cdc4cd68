#include "ekm/cli/repack.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>

#include "ekm/api/repack_json.h"
#include "ekm/base/clock.h"

namespace ekm::cli {
namespace {

std::string RepackTime(const std::optional<int64_t>& ms) {
  if (!ms) return "-";
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms)));
}

}  // namespace

// "[##########..........]  50.0%  50000/100000 data keys  52000/s  ETA 1 s"
std::string RepackProgressLine(const RepackStatus& s, bool bar) {
  const double share = s.total ? double(s.done) / double(s.total) : 1.0;
  std::string line;
  if (bar) {
    constexpr int kWidth = 30;
    int filled = static_cast<int>(share * kWidth + 0.5);
    // Appended, not "[" + …: GCC 12 at -O3 reports a false -Wrestrict (GCC bug 105651).
    line.append("[").append(filled, '#').append(kWidth - filled, '.').append("] ");
  }
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%5.1f%%  %llu/%llu data keys  %.0f/s", share * 100.0,
                static_cast<unsigned long long>(s.done), static_cast<unsigned long long>(s.total),
                s.rate);
  line += buf;
  if (s.eta_seconds && s.state == "running") {
    line += "  ETA " + HumanDuration(static_cast<int64_t>(*s.eta_seconds + 0.5));
  }
  line += "  " + s.state;
  return line;
}

void PrintRepackStatus(const RepackStatus& s, bool tty) {
  std::printf("environment:  %s/%s\n", s.workspace.c_str(), s.environment.c_str());
  std::printf("repack:       %s", s.state.c_str());
  if (s.state == "none") std::printf(" (no CMK change needs one)");
  if (s.state == "pending") std::printf(" (not begun yet: ekmd begins it, or `ekm repack run`)");
  std::printf("\n");
  if (s.state != "none") {
    std::printf("target:       environment key v%u\n", s.target_ek_version);
    std::printf("progress:     %s\n", RepackProgressLine(s, tty).c_str());
    std::printf("started:      %s\n", RepackTime(s.started_at_ms).c_str());
    if (s.finished_at_ms) std::printf("finished:     %s\n", RepackTime(s.finished_at_ms).c_str());
    if (!s.last_error.empty()) {
      std::printf("waiting:      %s\n", s.last_error.c_str());
      std::printf("next try:     %s\n", RepackTime(s.retry_at_ms).c_str());
    }
  }
  std::printf("inventory:\n  %-4s %-10s %10s  %s\n", "EK", "STATE", "DATA KEYS", "CMK");
  std::map<std::string, uint64_t> per_cmk;
  for (const EkInventoryEntry& e : s.inventory) {
    // Appended, not "v" + …: GCC 12 at -O3 reports a false -Wrestrict (GCC bug 105651).
    std::string ek = std::string("v").append(std::to_string(e.ek_version));
    std::string cmk = e.cmk_provider + ":" + e.cmk_key_id;
    std::printf("  %-4s %-10s %10llu  %s\n", ek.c_str(), e.state.c_str(),
                static_cast<unsigned long long>(e.data_keys), cmk.c_str());
    per_cmk[cmk] += e.data_keys;
  }
  std::printf("data keys per CMK:\n");
  for (const auto& [cmk, n] : per_cmk) {
    std::printf("  %10llu  %s\n", static_cast<unsigned long long>(n), cmk.c_str());
  }
  uint64_t lost = 0;
  for (const EkInventoryEntry& e : s.inventory) {
    if (e.state == "destroyed") lost += e.data_keys;
  }
  if (lost > 0) {
    // Only a store written by an older ekm holds these (docs/lifecycle.md, "The repack").
    std::printf(
        "unrecoverable: %llu data keys are under destroyed environment keys: nothing can "
        "unwrap them (an inconsistency of the store, not the CMK); the repack moves "
        "every other data key\n",
        static_cast<unsigned long long>(lost));
  }
}

Status RunRepackInForeground(Connection& b, const std::string& ws, const std::string& env) {
  if (b.local_service() == nullptr) {  // ekmd repacks in the background: wake it
    EKM_ASSIGN_OR_RETURN(RepackStatus st, b.api().RerunRepack(b.ctx(), ws, env));
    if (st.state == "none" || st.state == "finished") {
      std::fprintf(stderr,
                   "nothing to repack: every data key of %s/%s is under environment key v%u\n",
                   ws.c_str(), env.c_str(), st.target_ek_version);
    } else {
      std::fprintf(stderr,
                   "ekmd repacks %s/%s now (%llu data keys to go): `ekm repack status --workspace "
                   "%s --environment %s --watch`\n",
                   ws.c_str(), env.c_str(), static_cast<unsigned long long>(st.total - st.done),
                   ws.c_str(), env.c_str());
    }
    return Status::Ok();
  }
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  auto st = b.local_service()->RunRepack(b.ctx(), ws, env, [&](const RepackStatus& s) {
    auto now = std::chrono::steady_clock::now();
    if (s.state != "finished" && now - last < std::chrono::milliseconds(tty ? 200 : 5000)) return;
    last = now;
    std::fprintf(stderr, tty ? "\rrepack %s" : "repack %s\n", RepackProgressLine(s, tty).c_str());
  });
  if (tty) std::fprintf(stderr, "\n");
  // Only an interrupted repack can be resumed; a wrong name or a refusal is said as it is.
  const bool resumable = st.ok() || st.status().code() == StatusCode::kUnavailable ||
                         st.status().code() == StatusCode::kDeadlineExceeded;
  if (!st.ok() && (!(b.local_service() != nullptr) || !resumable)) return st.status();
  if (!st.ok()) {
    return st.status().WithHint(st.status().hint() + (st.status().hint().empty() ? "" : "; ") +
                                "`ekm repack run --workspace " + ws + " --environment " + env +
                                "` resumes the repack where it stopped");
  }
  if (st->state == "none") {
    std::fprintf(stderr,
                 "nothing to repack: every data key of %s/%s is under environment key v%u\n",
                 ws.c_str(), env.c_str(), st->target_ek_version);
    return Status::Ok();
  }
  std::fprintf(stderr, "repack of %s/%s %s: %llu data keys under environment key v%u\n", ws.c_str(),
               env.c_str(), st->state.c_str(), static_cast<unsigned long long>(st->done),
               st->target_ek_version);
  return Status::Ok();
}

Status AfterKeyChange(Connection& b, const std::string& ws, const std::string& env) {
  EKM_ASSIGN_OR_RETURN(RepackStatus st, b.api().GetRepackStatus(b.ctx(), ws, env));
  if (st.state == "none" || st.state == "finished") return Status::Ok();
  if (!(b.local_service() != nullptr)) {
    std::fprintf(stderr,
                 "ekmd repacks %llu data keys in the background: `ekm repack status --workspace "
                 "%s --environment %s --watch`\n",
                 static_cast<unsigned long long>(st.total - st.done), ws.c_str(), env.c_str());
    return Status::Ok();
  }
  return RunRepackInForeground(b, ws, env);
}

}  // namespace ekm::cli

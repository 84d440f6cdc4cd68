// EkmService's own implementation of the EkmApi operations it builds on its primitives: the
// stream forms (on NewEncryptStream/NewDecryptStream, so a decorator's checks of those apply),
// the calling token and the audit public key.
#include <algorithm>
#include <optional>
#include <vector>

#include "ekm/auth/token.h"
#include "ekm/base/worker_pool.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

namespace {

// Input is read in 1 MiB chunks: 16 default segments, sealed side by side on spare cores.
constexpr size_t kChunkSize = 1024 * 1024;
// Threads beside the caller's own that seal segments: a file moves at the speed of the cores.
constexpr size_t kMaxSealingThreads = 3;

template <typename UpdateFn, typename FinishFn>
Status Pump(const StreamSource& source, const StreamSink& sink, UpdateFn update, FinishFn finish) {
  Bytes out;
  const auto step = [&](ByteView in) -> Status {
    out.clear();
    EKM_RETURN_IF_ERROR(update(in, &out));
    return out.empty() ? Status::Ok() : sink(out);
  };
  if (source.mapped) {
    for (ByteView rest = *source.mapped; !rest.empty();) {
      const size_t n = std::min(rest.size(), kChunkSize);
      EKM_RETURN_IF_ERROR(step(rest.first(n)));
      rest = rest.subspan(n);
      if (source.release) source.release(source.mapped->size() - rest.size());
    }
  } else {
    std::vector<uint8_t> in(kChunkSize);
    for (;;) {
      EKM_ASSIGN_OR_RETURN(size_t n, source.read(in.data(), in.size()));
      if (n == 0) break;
      EKM_RETURN_IF_ERROR(step(ByteView(in.data(), n)));
    }
  }
  out.clear();
  EKM_RETURN_IF_ERROR(finish(&out));
  if (!out.empty()) EKM_RETURN_IF_ERROR(sink(out));
  return Status::Ok();
}

}  // namespace

Status EkmService::EncryptStream(const CallContext& ctx, std::string_view workspace,
                                 std::string_view environment, std::string_view scope, bool text,
                                 const StreamSource& source, const StreamSink& sink) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeEncoder> enc,
                       NewEncryptStream(ctx, workspace, environment, scope, text));
  WorkerPool pool(WorkerPool::SpareCores(kMaxSealingThreads));
  EnvelopeEncoder::ParallelSealing parallel;
  parallel.pool = &pool;
  if (source.mapped) parallel.input_size = source.mapped->size();
  parallel.sink = sink;
  enc->SealInParallel(std::move(parallel));
  return Pump(
      source, sink, [&](ByteView in, Bytes* out) { return enc->Update(in, out); },
      [&](Bytes* out) { return enc->Finish(out); });
}

Status EkmService::DecryptStream(const CallContext& ctx, std::string_view workspace,
                                 std::string_view environment, const StreamSource& source,
                                 const StreamSink& sink) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> dec,
                       NewDecryptStream(ctx, workspace, environment));
  return Pump(
      source, sink, [&](ByteView in, Bytes* out) { return dec->Update(in, out); },
      [&](Bytes* out) { return dec->Finish(out); });
}

StatusOr<std::optional<ApiTokenInfo>> EkmService::WhoAmI(const CallContext& ctx) {
  const auth::Principal& p = ctx.caller;
  if (p.local_operator) return std::optional<ApiTokenInfo>();
  ApiTokenInfo info;
  info.id = p.token_id;
  info.role = std::string(auth::RoleName(p.role));
  info.workspace = p.workspace;
  info.environments = p.environments;
  info.expires_at = p.expires_at;
  return std::optional<ApiTokenInfo>(std::move(info));
}

StatusOr<AuditPublicKeyInfo> EkmService::GetAuditPublicKey(const CallContext&) {
  const AuditPublicKey& key = AuditSigningPublicKey();
  AuditPublicKeyInfo info;
  info.key_id = key.key_id();
  info.public_key_pem = key.pem();
  return info;
}

}  // namespace ekm

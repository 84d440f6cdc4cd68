// Fuzz target: every route's JSON body and the events/audit query string, decoded as the
// router decodes them (ekm/api/request_codec.h). The first byte picks the decoder, the
// rest is the body (or the query string).
//
// Contract checks:
// - every failure is kInvalidArgument, with a message, and its error body (ErrorJson, what
//   ekmd answers) is JSON that reads back;
// - an error never quotes a secret field's value (plaintext, material, import_token,
//   confirmation), never a piece of a body that is not JSON, and never more than a short
//   excerpt of what was sent;
// - the encrypt and decrypt fast paths (flat_json) decode exactly what the full parser decodes,
//   and fail exactly when it fails, with the same error;
// - what is accepted holds the decoder's promises (batch sizes and positions, data key sizes,
//   the rewrap text form, shred's two steps).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/api/http_errors.h"
#include "ekm/api/request_codec.h"
#include "ekm/envelope/envelope.h"
#include "ekm/provider/imported/key_material_import.h"

namespace {

using nlohmann::json;

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

// The values of the secret fields of a body, for the no-echo check. Only values with '~' or
// '^' count: no error text has either, so the fuzzer cannot make a "secret" out of the
// message's own words.
std::vector<std::string> SecretsOf(std::string_view body) {
  std::vector<std::string> out;
  json j = json::parse(body, nullptr, false);
  auto take = [&](const json& o) {
    if (!o.is_object()) return;
    for (const char* f : {"plaintext", "material", "import_token", "confirmation"}) {
      auto it = o.find(f);
      if (it == o.end() || !it->is_string()) continue;
      const std::string v = it->get<std::string>();
      if (v.size() >= 8 && v.find_first_of("~^") != std::string::npos) out.push_back(v);
    }
  };
  take(j);
  if (j.is_object() && j.contains("items") && j["items"].is_array()) {
    for (const json& item : j["items"]) take(item);
  }
  return out;
}

void CheckFailure(const ekm::Status& s, std::string_view body, bool json_body = true) {
  Require(!s.ok());
  Require(s.code() == ekm::StatusCode::kInvalidArgument);
  Require(!s.message().empty());
  // What comes back is ekm's words plus short quoted names, never the request again.
  Require(s.message().size() <= 400 && s.hint().size() <= 400);
  const json reply = json::parse(ekm::ErrorJson(s), nullptr, false);
  Require(reply.is_object() && reply["error"]["code"] == "invalid_argument");
  if (!json_body) return;  // a query string: its unknown parameter is quoted (cut short)
  // A body that is not JSON gets ekm's words and a line and column, never a piece of itself
  // (nlohmann's "last read: '…'" may be part of a plaintext). No ekm text has '~' or '^'.
  if (!body.empty() && json::parse(body, nullptr, false).is_discarded()) {
    Require(s.message().find_first_of("~^") == std::string::npos);
    Require(s.hint().find_first_of("~^") == std::string::npos);
  }
  for (const std::string& secret : SecretsOf(body)) {
    Require(s.message().find(secret) == std::string::npos);
    Require(s.hint().find(secret) == std::string::npos);
  }
}

template <class T>
bool Failed(const ekm::StatusOr<T>& r, std::string_view body, bool json_body = true) {
  if (r.ok()) return false;
  CheckFailure(r.status(), body, json_body);
  return true;
}

template <class Item>
void CheckBatch(const ekm::BatchBody<Item>& b, std::string_view body) {
  Require(b.count >= 1 && b.count <= ekm::kMaxBatchItems);
  Require(b.errors.size() == b.count);
  Require(b.items.size() == b.positions.size());
  size_t bad = 0;
  for (const auto& e : b.errors) {
    if (e) {
      CheckFailure(*e, body);
      ++bad;
    }
  }
  Require(bad + b.items.size() == b.count);
  for (size_t k = 0; k < b.positions.size(); ++k) {
    Require(b.positions[k] < b.count && !b.errors[b.positions[k]]);
    if (k > 0) Require(b.positions[k] > b.positions[k - 1]);
  }
}

// The fast path against the full parser: the same outcome, value for value.
void CheckEncrypt(std::string_view body) {
  auto fast = ekm::DecodeEncryptBody(body);
  auto object = ekm::ParseObjectBody(body);
  auto slow = object.ok() ? ekm::DecodeEncryptObject(*object)
                          : ekm::StatusOr<ekm::EncryptBody>(object.status());
  Require(fast.ok() == slow.ok());
  if (fast.ok()) {
    Require(fast->plaintext == slow->plaintext && fast->scope == slow->scope);
  } else {
    CheckFailure(fast.status(), body);
    Require(fast.status().message() == slow.status().message());
  }
}

void CheckDecrypt(std::string_view body) {
  std::string storage;
  auto fast = ekm::DecodeDecryptBody(body, &storage);
  auto object = ekm::ParseObjectBody(body);
  auto slow =
      object.ok() ? ekm::DecodeDecryptObject(*object) : ekm::StatusOr<std::string>(object.status());
  Require(fast.ok() == slow.ok());
  if (fast.ok()) {
    Require(*fast == *slow);
  } else {
    CheckFailure(fast.status(), body);
    Require(fast.status().message() == slow.status().message());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 21) {
    case 0: {
      (void)Failed(ekm::DecodeNameBody(body), body);
      break;
    }
    case 1:
      CheckEncrypt(body);
      break;
    case 2:
      CheckDecrypt(body);
      break;
    case 3: {
      auto r = ekm::DecodeSetKeyBody(body);
      if (!Failed(r, body)) Require(!r->key.provider.empty() && !r->key.key_id.empty());
      break;
    }
    case 4: {
      auto r = ekm::DecodeValidateKeyBody(body);
      if (!Failed(r, body)) Require(!r->provider.empty() && !r->key_id.empty());
      break;
    }
    case 5: {
      auto r = ekm::DecodeDefaultKeyBody(body);
      if (!Failed(r, body)) Require(!r->provider.empty() && !r->key_id.empty());
      break;
    }
    case 6:
      (void)Failed(ekm::DecodeCheckPolicyBody(body), body);
      break;
    case 7: {
      auto r = ekm::DecodeImportParamsBody(body);
      if (!Failed(r, body) && body.empty()) Require(*r == ekm::kDefaultImportTokenLifetimeSeconds);
      break;
    }
    case 8:
      (void)Failed(ekm::DecodeImportKeyMaterialBody(body), body);
      break;
    case 9: {
      auto r = ekm::DecodeRotateDataKeysBody(body);
      if (!Failed(r, body) && body.empty()) Require(r->scopes.empty() && !r->all_scopes);
      break;
    }
    case 10: {
      auto r = ekm::DecodeRewrapBody(body);
      if (!Failed(r, body)) Require(r->starts_with(ekm::kEnvelopeTextPrefix));
      break;
    }
    case 11: {
      auto r = ekm::DecodeShredBody(body, "prod");
      // Step one without a body; step two names both.
      if (!Failed(r, body) && body.empty()) Require(!r->confirmation);
      break;
    }
    case 12: {
      auto r = ekm::DecodeSettingsPatchBody(body);
      if (!Failed(r, body)) Require(r->reset.size() <= body.size());
      break;
    }
    case 13: {
      // Who asks comes from the call's context, never the body (the request has no such field).
      static_cast<void>(Failed(ekm::DecodeCreateTokenBody(body), body));
      break;
    }
    case 14: {
      auto r = ekm::DecodeGenerateDataKeyBody(body);
      if (!Failed(r, body)) {
        Require(r->bytes >= ekm::kMinDataKeyBytes && r->bytes <= ekm::kMaxDataKeyBytes);
      }
      break;
    }
    case 15: {
      auto r = ekm::DecodeEncryptBatchBody(body);
      if (!Failed(r, body)) CheckBatch(*r, body);
      break;
    }
    case 16: {
      auto r = ekm::DecodeDecryptBatchBody(body);
      if (!Failed(r, body)) CheckBatch(*r, body);
      break;
    }
    case 17: {
      ekm::Status s = ekm::DecodeEmptyBody(body, "a checkpoint request");
      if (!s.ok()) CheckFailure(s, body);
      break;
    }
    case 18: {
      // The events and audit query string, at a fixed "now" (2026-12-01).
      auto r = ekm::DecodeEventQuery("acme", body, 1'796'083'200'000);
      // A query quotes the parameter it does not know (cut short): not a JSON body.
      if (!Failed(r, body, /*json_body=*/false)) Require(r->workspace == "acme");
      break;
    }
    case 19: {
      bool ok = true;
      const std::string value = ekm::QueryValue(body, "key_id", &ok);
      Require(value.size() <= body.size());
      std::string decoded = ekm::PercentDecode(body, &ok);
      Require(decoded.size() <= body.size());
      break;
    }
    case 20: {
      // A list route's paging (limit, after) beside its own parameter.
      auto r = ekm::DecodeListPage(body, {"workspace"});
      if (!Failed(r, body, /*json_body=*/false)) {
        Require(r->limit <= ekm::kMaxListPage);
        Require(r->after.size() <= body.size());
      }
      break;
    }
  }
  return 0;
}

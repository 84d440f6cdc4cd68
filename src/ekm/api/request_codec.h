// What an API request carries: every route's JSON body and the query strings, written by the
// client (the Encode functions) and read back by the router (the Decode functions) into plain
// values, so the two ends share one codec (request_codec_test holds each pair to a round trip).
// Decoding makes no service call and no authorization decision (the router makes those with the
// caller in hand), so each decoder is fuzzed alone (fuzz/request_decoding_fuzz.cc).
//
// Every decoding failure is InvalidArgument naming the field and how to fix it, and never quotes
// a secret field's value (plaintext, key material, import token, confirmation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/api/types.h"
#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// --- Query strings and path segments ---

// `%XX` and `+` decoded; `*ok` becomes false on a bad escape (and stays false).
std::string PercentDecode(std::string_view s, bool* ok);
// The decoded value of `name` in a query string ("" when absent).
std::string QueryValue(std::string_view query, std::string_view name, bool* ok);
// The paging of a list route (workspaces, environments, tokens): ?limit=N (1 to kMaxListPage;
// absent: the whole list) and ?after=CURSOR (the `next_after` of the page before). `extra`
// names the route's own parameters (read by the caller); any other is refused.
inline constexpr size_t kMaxListPage = 1000;
struct ListPage {
  size_t limit = 0;  // 0: no paging
  std::string after;
};
StatusOr<ListPage> DecodeListPage(std::string_view query,
                                  std::initializer_list<std::string_view> extra = {});

// The query of the events and audit routes: environment, type, since, until, after, limit.
// `now_ms` anchors relative times ("since=24h").
StatusOr<EventQuery> DecodeEventQuery(const std::string& workspace, std::string_view query,
                                      int64_t now_ms);

// --- JSON bodies ---

// A body that must be one JSON object; a syntax error names its line and column.
StatusOr<nlohmann::json> ParseObjectBody(std::string_view body);

// {"name"}: POST /v1/workspaces and POST …/environments.
StatusOr<std::string> DecodeNameBody(std::string_view body);

// {"plaintext": base64, "scope"?}: POST …/encrypt. `scope` is "" when absent (the route's).
struct EncryptBody {
  Bytes plaintext;
  std::string scope;
};
StatusOr<EncryptBody> DecodeEncryptBody(std::string_view body);
// The same from a parsed object (the slow path; the fuzzer compares the two).
StatusOr<EncryptBody> DecodeEncryptObject(const nlohmann::json& j);

// {"ciphertext"}: POST …/decrypt. The hot path reads the ciphertext in place, so the result is
// a view into `body`, or into `*storage` when the body needed the full parser.
StatusOr<std::string_view> DecodeDecryptBody(std::string_view body, std::string* storage);
StatusOr<std::string> DecodeDecryptObject(const nlohmann::json& j);

// The CMK a key body names: {"aws_kms_arn"} or {"provider", "key_id"}.
struct KeyRef {
  std::string provider;
  std::string key_id;
};
// PUT …/key: the key and the emergency-replacement options {"emergency", "reason"}.
struct SetKeyBody {
  KeyRef key;
  KeyChangeOptions change;
};
StatusOr<SetKeyBody> DecodeSetKeyBody(std::string_view body);
// POST …/key/validate.
StatusOr<KeyRef> DecodeValidateKeyBody(std::string_view body);
// PUT /v1/workspaces/{w}/default-key.
StatusOr<KeyRef> DecodeDefaultKeyBody(std::string_view body);

// {"policy": "…"}: POST …/key-policy/check. The policy is text (the doctor parses it).
StatusOr<std::string> DecodeCheckPolicyBody(std::string_view body);

// {"expires_in_seconds"?}: POST …/key/import-params; the body is optional.
StatusOr<int64_t> DecodeImportParamsBody(std::string_view body);

// {"material": base64, "import_token", "emergency"?, "reason"?}: POST …/key/import.
struct ImportKeyMaterialBody {
  Bytes material;  // RSA-OAEP wrapped: not a secret until unwrapped
  std::string import_token;
  KeyChangeOptions change;
};
StatusOr<ImportKeyMaterialBody> DecodeImportKeyMaterialBody(std::string_view body);

// {"scopes"?: [..], "all_scopes"?}: POST …/data-keys/rotate; the body is optional.
struct RotateDataKeysBody {
  std::vector<std::string> scopes;
  bool all_scopes = false;
};
StatusOr<RotateDataKeysBody> DecodeRotateDataKeysBody(std::string_view body);

// {"ciphertext": "ekm1:…"}: POST …/rewrap (the text form in, the text form out).
StatusOr<std::string> DecodeRewrapBody(std::string_view body);

// POST …/shred: step one has no body (or no "confirmation"); step two names the token and
// types the environment's name again. `path_environment` words the hint.
struct ShredBody {
  std::optional<std::string> confirmation;  // nullopt: step one
  std::string environment;
};
StatusOr<ShredBody> DecodeShredBody(std::string_view body, std::string_view path_environment);

// PATCH …/settings: numbers set, nulls reset to the deployment default.
struct SettingsPatchBody {
  EnvironmentSettings set;
  std::vector<std::string> reset;
};
StatusOr<SettingsPatchBody> DecodeSettingsPatchBody(std::string_view body);

// POST /v1/tokens. Unknown fields are refused: a misspelt "environments" must not silently
// mint a token for every environment.
StatusOr<ApiTokenRequest> DecodeCreateTokenBody(std::string_view body);

// {"scope"?, "bytes"?, "plaintext"?}: POST …/generate-data-key; the body is optional.
struct GenerateDataKeyBody {
  std::string scope;  // "" when absent (the route's)
  size_t bytes = kDefaultDataKeyBytes;
  bool with_plaintext = true;
};
StatusOr<GenerateDataKeyBody> DecodeGenerateDataKeyBody(std::string_view body);

// {"items": [..]}: the batch routes. A malformed item gets its own error and the rest go on.
template <class Item>
struct BatchBody {
  size_t count = 0;                           // items in the request, 1..kMaxBatchItems
  std::vector<Item> items;                    // the well-formed ones, in request order
  std::vector<size_t> positions;              // each one's position in the request
  std::vector<std::optional<Status>> errors;  // per position: why that item was not decoded
};
// Items {"plaintext": base64, "scope"?}; an item's scope is "" when absent (the route's).
StatusOr<BatchBody<BatchEncryptItem>> DecodeEncryptBatchBody(std::string_view body);
// Items {"ciphertext"}.
StatusOr<BatchBody<Bytes>> DecodeDecryptBatchBody(std::string_view body);

// A body that takes no fields: empty or {} (POST …/audit/checkpoints).
Status DecodeEmptyBody(std::string_view body, std::string_view what);

// --- The client's side: each body and query as its decoder above reads it ---

nlohmann::json EncodeNameBody(std::string_view name);
nlohmann::json EncodeEncryptBody(ByteView plaintext, std::string_view scope);
// `envelope_text`: the text form ("ekm1:…"), for decrypt and rewrap.
nlohmann::json EncodeDecryptBody(std::string_view envelope_text);
nlohmann::json EncodeRewrapBody(std::string_view envelope_text);
nlohmann::json EncodeSetKeyBody(const SetKeyBody& b);
// POST …/key/validate and PUT …/default-key.
nlohmann::json EncodeKeyRefBody(const KeyRef& key);
nlohmann::json EncodeCheckPolicyBody(std::string_view policy);
nlohmann::json EncodeImportParamsBody(int64_t expires_in_seconds);
// The import token is a secret: the text is written into a buffer of its final size (a growing
// string would leave copies of the token behind). The caller wipes it after sending.
std::string EncodeImportKeyMaterialBody(ByteView material, std::string_view import_token,
                                        const KeyChangeOptions& change);
nlohmann::json EncodeRotateDataKeysBody(const RotateDataKeysBody& b);
// Step one (no confirmation) is {}.
nlohmann::json EncodeShredBody(const ShredBody& b);
nlohmann::json EncodeSettingsPatchBody(const SettingsPatchBody& b);
nlohmann::json EncodeCreateTokenBody(const ApiTokenRequest& r);
nlohmann::json EncodeGenerateDataKeyBody(const GenerateDataKeyBody& b);
nlohmann::json EncodeEncryptBatchBody(const std::vector<BatchEncryptItem>& items);
nlohmann::json EncodeDecryptBatchBody(const std::vector<std::string>& envelope_texts);
// "?limit=…&…" of the events and audit routes; times in whole seconds.
std::string EncodeEventQuery(const EventQuery& q);

}  // namespace ekm

#include "ekm/api/request_codec.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <nlohmann/json.hpp>

#include "ekm/api/flat_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/base/encoding.h"
#include "ekm/envelope/envelope.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/imported/key_material_import.h"

namespace ekm {

namespace {

using nlohmann::json;

// The first error nlohmann's parser meets in a text: a syntax error, or a number beyond the
// range of a double (1e309), which json::parse throws as out_of_range, not as parse_error.
class JsonErrorFinder : public nlohmann::json_sax<json> {
 public:
  size_t position = 0;    // bytes read when the error was found: just past the offending token
  size_t token_size = 0;  // its length (never its text: it may be a piece of a plaintext)
  int id = 0;             // nlohmann's exception id: 101.. syntax, 406 number overflow
  std::string what;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string& last_token,
                   const json::exception& ex) override {
    position = pos;
    token_size = last_token.size();
    id = ex.id;
    what = ex.what();
    return false;
  }
};

// "line L, column C" of byte `offset` (0-based) of `text`.
std::string LineAndColumn(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

// Why `body` is not JSON, naming where (what json::parse's exceptions say, worded for a caller).
// It never quotes the body: the offending token may be a piece of a secret.
Status JsonSyntaxError(std::string_view body) {
  JsonErrorFinder finder;
  json::sax_parse(body, &finder);
  const std::string hint =
      "send one JSON object with Content-Type: application/json (with curl, --data '{\"name\": "
      "\"acme\"}'); a key policy goes in as a JSON string: {\"policy\": \"...\"}";
  if (finder.id == 406) {
    // The offending token ends where the parser stopped: name where it starts.
    const size_t start =
        finder.position >= finder.token_size ? finder.position - finder.token_size : 0;
    return InvalidArgumentError("request body is not valid JSON at " + LineAndColumn(body, start) +
                                    ": a number is out of range (beyond ±1.8e308)",
                                "send numbers within the range of a double: every number ekm "
                                "reads is a whole number of modest size, e.g. "
                                "{\"expires_in_seconds\": 86400}");
  }
  // parse_error's position is 1-based: the byte that could not be read. nlohmann's text
  // quotes the last token read ("last read: '…'"): keep only what it expected.
  const size_t at = finder.position > 0 ? finder.position - 1 : 0;
  std::string why;
  if (auto pos = finder.what.find("syntax error"); pos != std::string::npos) {
    why = finder.what.substr(pos);
    if (auto last = why.find("; last read:"); last != std::string::npos) why.erase(last);
  }
  return InvalidArgumentError("request body is not valid JSON at " + LineAndColumn(body, at) +
                                  (why.empty() ? "" : ": ") + why,
                              hint);
}

StatusOr<std::string> StringField(const json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (required) return InvalidArgumentError(std::string("field \"") + name + "\" is missing");
    return std::string();
  }
  if (!it->is_string()) {
    return InvalidArgumentError(std::string("field \"") + name + "\" must be a string, got " +
                                it->type_name());
  }
  return it->get<std::string>();
}

// A body that may be empty: empty is {}.
StatusOr<json> ParseOptionalObjectBody(std::string_view body) {
  if (body.empty()) return json::object();
  return ParseObjectBody(body);
}

// An optional array of strings.
Status StringArrayField(const json& j, const char* name, std::string_view hint,
                        std::vector<std::string>* out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return Status::Ok();
  auto bad = [&] {
    return InvalidArgumentError(std::string("field \"") + name + "\" must be an array of strings",
                                std::string(hint));
  };
  if (!it->is_array()) return bad();
  for (const auto& e : *it) {
    if (!e.is_string()) return bad();
    out->push_back(e.get<std::string>());
  }
  return Status::Ok();
}

StatusOr<KeyChangeOptions> KeyChangeOptionsFrom(const json& j) {
  KeyChangeOptions o;
  if (auto it = j.find("emergency"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) {
      return InvalidArgumentError("field \"emergency\" must be true or false",
                                  "send {\"emergency\": true, \"reason\": \"why\"} for an "
                                  "emergency replacement");
    }
    o.emergency = it->get<bool>();
  }
  if (auto it = j.find("reason"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return InvalidArgumentError("field \"reason\" must be a string");
    o.reason = it->get<std::string>();
  }
  return o;
}

StatusOr<KeyRef> KeyRefFrom(const json& j, std::string_view missing_hint) {
  EKM_ASSIGN_OR_RETURN(std::string arn, StringField(j, "aws_kms_arn", false));
  KeyRef k;
  EKM_ASSIGN_OR_RETURN(k.provider, StringField(j, "provider", false));
  EKM_ASSIGN_OR_RETURN(k.key_id, StringField(j, "key_id", false));
  if (!arn.empty() && (!k.provider.empty() || !k.key_id.empty())) {
    return InvalidArgumentError(
        "give either \"aws_kms_arn\" or \"provider\" and \"key_id\", not both");
  }
  if (!arn.empty()) {
    // The wire format's compatibility alias: "aws_kms_arn" names a key of the AWS provider.
    k.provider = std::string(kAwsKmsProviderName);
    k.key_id = std::move(arn);
  }
  if (k.provider.empty() || k.key_id.empty()) {
    return InvalidArgumentError("the key is missing", std::string(missing_hint));
  }
  return k;
}

constexpr std::string_view kKeyRefHint =
    "send {\"aws_kms_arn\": \"arn:aws:kms:REGION:ACCOUNT:key/KEY-ID\"}, or "
    "{\"provider\": \"platform\", \"key_id\": \"root\"}";

// The "items" array of a batch body: present, an array, 1..kMaxBatchItems long.
StatusOr<const json*> BatchItems(const json& j) {
  auto it = j.find("items");
  if (it == j.end() || !it->is_array()) {
    return InvalidArgumentError(
        "field \"items\" must be an array",
        "send {\"items\": [ … ]} with 1 to " + std::to_string(kMaxBatchItems) + " items");
  }
  if (it->size() > kMaxBatchItems) {
    return InvalidArgumentError(
        "a batch holds at most " + std::to_string(kMaxBatchItems) + " items, got " +
            std::to_string(it->size()),
        "split the items into batches of " + std::to_string(kMaxBatchItems) + " or fewer");
  }
  if (it->empty()) {
    return InvalidArgumentError("field \"items\" is empty",
                                "send 1 to " + std::to_string(kMaxBatchItems) + " items");
  }
  return &*it;
}

Status NotBase64(std::string_view field, const Status& why, std::string_view hint = "") {
  return InvalidArgumentError(
      "field \"" + std::string(field) + "\" must be base64: " + why.message(), std::string(hint));
}

}  // namespace

std::string PercentDecode(std::string_view s, bool* ok) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      if (i + 2 >= s.size()) {
        *ok = false;
        return {};
      }
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) {
        *ok = false;
        return {};
      }
      out.push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string QueryValue(std::string_view query, std::string_view name, bool* ok) {
  for (size_t i = 0; i < query.size();) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view kv = query.substr(i, amp - i);
    size_t eq = kv.find('=');
    if (PercentDecode(kv.substr(0, eq), ok) == name) {
      return eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1), ok);
    }
    i = amp + 1;
  }
  return "";
}

namespace {

// Calls `fn(key, value)` for each parameter of a query string, both percent-decoded, in order;
// stops at the first error `fn` returns.
template <typename Fn>
Status ForEachQueryParam(std::string_view query, Fn fn) {
  for (size_t i = 0; i < query.size();) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view kv = query.substr(i, amp - i);
    i = amp + 1;
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    bool ok = true;
    std::string key = PercentDecode(kv.substr(0, eq), &ok);
    std::string value = eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1), &ok);
    if (!ok) return InvalidArgumentError("the query string is not valid percent-encoding");
    EKM_RETURN_IF_ERROR(fn(key, value));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<ListPage> DecodeListPage(std::string_view query,
                                  std::initializer_list<std::string_view> extra) {
  ListPage page;
  Status s =
      ForEachQueryParam(query, [&](const std::string& key, const std::string& value) -> Status {
        if (key == "limit") {
          if (value.empty() || value.size() > 4 ||
              value.find_first_not_of("0123456789") != std::string::npos ||
              std::stoul(value) == 0 || std::stoul(value) > kMaxListPage) {
            return InvalidArgumentError("limit must be a whole number from 1 to " +
                                            std::to_string(kMaxListPage) + ", got " +
                                            QuotedExcerpt(value),
                                        "leave it out for the whole list");
          }
          page.limit = std::stoul(value);
        } else if (key == "after") {
          page.after = value;
        } else if (std::find(extra.begin(), extra.end(), key) == extra.end()) {
          std::string known = "limit, after";
          for (std::string_view e : extra) known.append(", ").append(e);
          return InvalidArgumentError("unknown query parameter " + QuotedExcerpt(key),
                                      "use " + known);
        }
        return Status::Ok();
      });
  if (!s.ok()) return s;
  return page;
}

StatusOr<EventQuery> DecodeEventQuery(const std::string& workspace, std::string_view query,
                                      int64_t now_ms) {
  EventQuery q;
  q.workspace = workspace;
  Status s =
      ForEachQueryParam(query, [&](const std::string& key, const std::string& value) -> Status {
        auto number = [&](const char* what) -> StatusOr<int64_t> {
          if (value.empty() || value.size() > 18 ||
              value.find_first_not_of("0123456789") != std::string::npos) {
            return InvalidArgumentError(std::string(what) + " must be a whole number, got " +
                                        QuotedExcerpt(value));
          }
          return std::stoll(value);
        };
        if (key == "environment") {
          if (!value.empty()) q.environment = value;
        } else if (key == "type") {
          q.type = value;
        } else if (key == "since" || key == "until") {
          EKM_ASSIGN_OR_RETURN(int64_t ms, ParseTimeMs(value, now_ms));
          (key == "since" ? q.since_ms : q.until_ms) = ms;
        } else if (key == "after") {
          EKM_ASSIGN_OR_RETURN(q.after_id, number("after"));
        } else if (key == "limit") {
          EKM_ASSIGN_OR_RETURN(int64_t n, number("limit"));
          q.limit = static_cast<size_t>(n);
        } else {
          return InvalidArgumentError("unknown query parameter " + QuotedExcerpt(key),
                                      "use environment, type, since, until, after, limit");
        }
        return Status::Ok();
      });
  if (!s.ok()) return s;
  return q;
}

StatusOr<json> ParseObjectBody(std::string_view body) {
  if (body.empty()) {
    return InvalidArgumentError("request body is empty", "send a JSON object");
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return JsonSyntaxError(body);
  if (!j.is_object()) {
    return InvalidArgumentError(
        "request body must be a JSON object, got " + std::string(j.type_name()),
        "send one JSON object, e.g. {\"name\": \"acme\"}; docs/api.md "
        "lists each route's fields");
  }
  return j;
}

StatusOr<std::string> DecodeNameBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  return StringField(j, "name", true);
}

StatusOr<EncryptBody> DecodeEncryptObject(const json& j) {
  EKM_ASSIGN_OR_RETURN(std::string plaintext, StringField(j, "plaintext", true));
  EncryptBody out;
  EKM_ASSIGN_OR_RETURN(out.scope, StringField(j, "scope", false));
  auto bytes = Base64Decode(plaintext);
  if (!bytes.ok()) return NotBase64("plaintext", bytes.status());
  out.plaintext = std::move(bytes).value();
  return out;
}

StatusOr<EncryptBody> DecodeEncryptBody(std::string_view body) {
  // The fast path: a flat object of plain strings, read in place.
  FlatFields flat;
  size_t count = 0;
  if (ParseFlatStringObject(body, &flat, &count)) {
    if (const std::string_view* plaintext = FlatValue(flat, count, "plaintext")) {
      EncryptBody out;
      if (const std::string_view* scope = FlatValue(flat, count, "scope")) out.scope = *scope;
      auto bytes = Base64Decode(*plaintext);
      if (!bytes.ok()) return NotBase64("plaintext", bytes.status());
      out.plaintext = std::move(bytes).value();
      return out;
    }
  }
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  return DecodeEncryptObject(j);
}

StatusOr<std::string> DecodeDecryptObject(const json& j) {
  return StringField(j, "ciphertext", true);
}

StatusOr<std::string_view> DecodeDecryptBody(std::string_view body, std::string* storage) {
  FlatFields flat;
  size_t count = 0;
  if (ParseFlatStringObject(body, &flat, &count)) {
    if (const std::string_view* ciphertext = FlatValue(flat, count, "ciphertext")) {
      return *ciphertext;
    }
  }
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  EKM_ASSIGN_OR_RETURN(*storage, DecodeDecryptObject(j));
  return std::string_view(*storage);
}

StatusOr<SetKeyBody> DecodeSetKeyBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  SetKeyBody out;
  EKM_ASSIGN_OR_RETURN(out.key, KeyRefFrom(j, kKeyRefHint));
  EKM_ASSIGN_OR_RETURN(out.change, KeyChangeOptionsFrom(j));
  return out;
}

StatusOr<KeyRef> DecodeValidateKeyBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  return KeyRefFrom(j, kKeyRefHint);
}

StatusOr<KeyRef> DecodeDefaultKeyBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  return KeyRefFrom(j,
                    "send {\"aws_kms_arn\": \"arn:aws:kms:REGION:ACCOUNT:key/KEY-ID\"}; DELETE "
                    "this route to go back to the platform key");
}

StatusOr<std::string> DecodeCheckPolicyBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  auto policy = StringField(j, "policy", true);
  if (!policy.ok()) {
    return policy.status().WithHint(
        "send the key policy as pasted, as a JSON string: {\"policy\": \"{ ... }\"}");
  }
  return policy;
}

StatusOr<int64_t> DecodeImportParamsBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseOptionalObjectBody(body));
  int64_t expires_in = kDefaultImportTokenLifetimeSeconds;
  if (auto it = j.find("expires_in_seconds"); it != j.end()) {
    if (!it->is_number_integer()) {
      return InvalidArgumentError("field \"expires_in_seconds\" must be an integer",
                                  "send e.g. {\"expires_in_seconds\": 86400}");
    }
    expires_in = it->get<int64_t>();
  }
  return expires_in;
}

StatusOr<ImportKeyMaterialBody> DecodeImportKeyMaterialBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  auto material = StringField(j, "material", true);
  if (!material.ok()) {
    return material.status().WithHint(
        "send {\"material\": base64 of material.wrapped, \"import_token\": \"…\"}");
  }
  ImportKeyMaterialBody out;
  auto token = StringField(j, "import_token", true);
  if (!token.ok()) {
    return token.status().WithHint(
        "send the token from POST …/key/import-params as \"import_token\"");
  }
  out.import_token = std::move(token).value();
  auto bytes = Base64Decode(*material);
  if (!bytes.ok()) {
    return NotBase64("material", bytes.status(), "base64-encode the binary material.wrapped file");
  }
  out.material = std::move(bytes).value();
  EKM_ASSIGN_OR_RETURN(out.change, KeyChangeOptionsFrom(j));
  return out;
}

StatusOr<RotateDataKeysBody> DecodeRotateDataKeysBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseOptionalObjectBody(body));
  RotateDataKeysBody out;
  EKM_RETURN_IF_ERROR(StringArrayField(
      j, "scopes", "e.g. {\"scopes\": [\"orders\"]}, or {\"all_scopes\": true}", &out.scopes));
  if (auto all = j.find("all_scopes"); all != j.end()) {
    if (!all->is_boolean()) {
      return InvalidArgumentError("field \"all_scopes\" must be true or false",
                                  "send {\"all_scopes\": true}, or name them in \"scopes\"");
    }
    out.all_scopes = all->get<bool>();
  }
  return out;
}

StatusOr<std::string> DecodeRewrapBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  EKM_ASSIGN_OR_RETURN(std::string ciphertext, StringField(j, "ciphertext", true));
  if (!ciphertext.starts_with(kEnvelopeTextPrefix)) {
    return InvalidArgumentError("field \"ciphertext\" must be the text form (ekm1:…)",
                                "send the ciphertext as the encrypt route returned it");
  }
  return ciphertext;
}

StatusOr<ShredBody> DecodeShredBody(std::string_view body, std::string_view path_environment) {
  EKM_ASSIGN_OR_RETURN(json j, ParseOptionalObjectBody(body));
  ShredBody out;
  if (!j.contains("confirmation")) return out;
  EKM_ASSIGN_OR_RETURN(out.confirmation, StringField(j, "confirmation", true));
  auto name = StringField(j, "environment", true);
  if (!name.ok()) {
    return name.status().WithHint("type the environment's name again: {\"environment\": " +
                                  QuotedExcerpt(path_environment) + "}");
  }
  out.environment = std::move(name).value();
  return out;
}

StatusOr<SettingsPatchBody> DecodeSettingsPatchBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  SettingsPatchBody out;
  EKM_RETURN_IF_ERROR(EnvironmentSettingsPatchFromJson(j, &out.set, &out.reset));
  return out;
}

StatusOr<ApiTokenRequest> DecodeCreateTokenBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "role" && key != "workspace" && key != "environments" && key != "description" &&
        key != "expires_in_seconds") {
      return InvalidArgumentError(
          "unknown field " + QuotedExcerpt(key) + " in a token request",
          "the fields are role, workspace, environments, description, expires_in_seconds");
    }
  }
  ApiTokenRequest req;
  auto role = StringField(j, "role", true);
  if (!role.ok())
    return role.status().WithHint("e.g. {\"role\": \"app\", \"workspace\": \"acme\"}");
  req.role = std::move(role).value();
  EKM_ASSIGN_OR_RETURN(req.workspace, StringField(j, "workspace", false));
  EKM_ASSIGN_OR_RETURN(req.description, StringField(j, "description", false));
  EKM_RETURN_IF_ERROR(StringArrayField(
      j, "environments", "e.g. {\"environments\": [\"production\"]}", &req.environments));
  if (auto it = j.find("expires_in_seconds"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) {
      return InvalidArgumentError("field \"expires_in_seconds\" must be an integer",
                                  "e.g. {\"expires_in_seconds\": 2592000} (30 days)");
    }
    req.expires_in = std::chrono::seconds(it->get<int64_t>());
  }
  return req;
}

StatusOr<GenerateDataKeyBody> DecodeGenerateDataKeyBody(std::string_view body) {
  EKM_ASSIGN_OR_RETURN(json j, ParseOptionalObjectBody(body));
  GenerateDataKeyBody out;
  EKM_ASSIGN_OR_RETURN(out.scope, StringField(j, "scope", false));
  if (auto it = j.find("bytes"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < int64_t{kMinDataKeyBytes} ||
        it->get<int64_t>() > int64_t{kMaxDataKeyBytes}) {
      std::string got = it->dump(-1, ' ', false, json::error_handler_t::replace);
      if (got.size() > 40) got = it->type_name();
      return InvalidArgumentError(
          "field \"bytes\": a data key is " + std::to_string(kMinDataKeyBytes) + " to " +
              std::to_string(kMaxDataKeyBytes) + " bytes (a whole number), got " + got,
          "send \"bytes\": 32 for an AES-256 key (the default)");
    }
    out.bytes = static_cast<size_t>(it->get<int64_t>());
  }
  if (auto it = j.find("plaintext"); it != j.end()) {
    if (!it->is_boolean()) {
      return InvalidArgumentError("field \"plaintext\" must be true or false",
                                  "send \"plaintext\": false for the wrapped key only");
    }
    out.with_plaintext = it->get<bool>();
  }
  return out;
}

namespace {

// A batch body: each item an object that `decode` makes an Item of, or the item's own error.
template <class Item, class DecodeItem>
StatusOr<BatchBody<Item>> DecodeBatchBody(std::string_view body, std::string_view item_example,
                                          DecodeItem decode) {
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  EKM_ASSIGN_OR_RETURN(const json* items, BatchItems(j));
  BatchBody<Item> out;
  out.count = items->size();
  out.errors.resize(out.count);
  for (size_t i = 0; i < out.count; ++i) {
    const json& item = (*items)[i];
    if (!item.is_object()) {
      out.errors[i] = InvalidArgumentError("item " + std::to_string(i) + " must be an object",
                                           "send " + std::string(item_example));
      continue;
    }
    StatusOr<Item> decoded = decode(item);
    if (!decoded.ok()) {
      out.errors[i] = decoded.status();
      continue;
    }
    out.items.push_back(std::move(decoded).value());
    out.positions.push_back(i);
  }
  return out;
}

}  // namespace

StatusOr<BatchBody<BatchEncryptItem>> DecodeEncryptBatchBody(std::string_view body) {
  return DecodeBatchBody<BatchEncryptItem>(
      body, "{\"plaintext\": base64, \"scope\": \"…\"}",
      [](const json& item) -> StatusOr<BatchEncryptItem> {
        EKM_ASSIGN_OR_RETURN(EncryptBody in, DecodeEncryptObject(item));
        return BatchEncryptItem{std::move(in.scope), std::move(in.plaintext)};
      });
}

StatusOr<BatchBody<Bytes>> DecodeDecryptBatchBody(std::string_view body) {
  return DecodeBatchBody<Bytes>(body, "{\"ciphertext\": \"ekm1:…\"}",
                                [](const json& item) -> StatusOr<Bytes> {
                                  EKM_ASSIGN_OR_RETURN(std::string text, DecodeDecryptObject(item));
                                  return Bytes(text.begin(), text.end());
                                });
}

Status DecodeEmptyBody(std::string_view body, std::string_view what) {
  if (body.empty()) return Status::Ok();
  EKM_ASSIGN_OR_RETURN(json j, ParseObjectBody(body));
  if (!j.empty()) {
    return InvalidArgumentError(std::string(what) + " takes no fields", "send an empty body or {}");
  }
  return Status::Ok();
}

// --- The client's side ---

json EncodeNameBody(std::string_view name) { return {{"name", name}}; }

json EncodeEncryptBody(ByteView plaintext, std::string_view scope) {
  return {{"plaintext", Base64Encode(plaintext)}, {"scope", scope}};
}

json EncodeDecryptBody(std::string_view envelope_text) { return {{"ciphertext", envelope_text}}; }

json EncodeRewrapBody(std::string_view envelope_text) { return {{"ciphertext", envelope_text}}; }

json EncodeKeyRefBody(const KeyRef& key) {
  return {{"provider", key.provider}, {"key_id", key.key_id}};
}

json EncodeSetKeyBody(const SetKeyBody& b) {
  json j = EncodeKeyRefBody(b.key);
  if (b.change.emergency) j["emergency"] = true;
  if (!b.change.reason.empty()) j["reason"] = b.change.reason;
  return j;
}

json EncodeCheckPolicyBody(std::string_view policy) { return {{"policy", policy}}; }

json EncodeImportParamsBody(int64_t expires_in_seconds) {
  return {{"expires_in_seconds", expires_in_seconds}};
}

std::string EncodeImportKeyMaterialBody(ByteView material, std::string_view import_token,
                                        const KeyChangeOptions& change) {
  json rest = {{"material", Base64Encode(material)}};
  if (change.emergency) {
    rest["emergency"] = true;
    rest["reason"] = change.reason;
  }
  const std::string others = rest.dump();
  constexpr std::string_view kField = "{\"import_token\":\"";
  std::string payload;
  payload.reserve(kField.size() + 6 * import_token.size() + 2 + others.size());
  payload.append(kField);
  for (char c : import_token) {  // a JSON string; anything unusual escaped as \u00XX
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      payload.push_back(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      const auto u = static_cast<unsigned char>(c);
      payload.append("\\u00");
      payload.push_back(kHex[u >> 4]);
      payload.push_back(kHex[u & 15]);
    }
  }
  payload.append("\",");
  payload.append(others, 1);  // the other members, without their "{"
  return payload;
}

json EncodeRotateDataKeysBody(const RotateDataKeysBody& b) {
  return {{"scopes", b.scopes}, {"all_scopes", b.all_scopes}};
}

json EncodeShredBody(const ShredBody& b) {
  if (!b.confirmation) return json::object();
  return {{"confirmation", *b.confirmation}, {"environment", b.environment}};
}

json EncodeSettingsPatchBody(const SettingsPatchBody& b) {
  json body = json::object();
  json all = EnvironmentSettingsToJson(b.set);
  for (auto it = all.begin(); it != all.end(); ++it) {
    if (!it->is_null()) body[it.key()] = *it;
  }
  for (const auto& name : b.reset) body[name] = nullptr;
  return body;
}

json EncodeCreateTokenBody(const ApiTokenRequest& r) {
  json body = {{"role", r.role}};
  if (!r.workspace.empty()) body["workspace"] = r.workspace;
  if (!r.environments.empty()) body["environments"] = r.environments;
  if (!r.description.empty()) body["description"] = r.description;
  if (r.expires_in.count() > 0) body["expires_in_seconds"] = r.expires_in.count();
  return body;
}

json EncodeGenerateDataKeyBody(const GenerateDataKeyBody& b) {
  json body = {{"bytes", b.bytes}, {"plaintext", b.with_plaintext}};
  if (!b.scope.empty()) body["scope"] = b.scope;
  return body;
}

json EncodeEncryptBatchBody(const std::vector<BatchEncryptItem>& items) {
  json list = json::array();
  for (const BatchEncryptItem& item : items) {
    list.push_back({{"plaintext", Base64Encode(item.plaintext)}, {"scope", item.scope}});
  }
  return {{"items", std::move(list)}};
}

json EncodeDecryptBatchBody(const std::vector<std::string>& envelope_texts) {
  json list = json::array();
  for (const std::string& text : envelope_texts) list.push_back({{"ciphertext", text}});
  return {{"items", std::move(list)}};
}

std::string EncodeEventQuery(const EventQuery& q) {
  std::string out = "?limit=" + std::to_string(q.limit);
  auto add = [&out](std::string_view name, std::string_view value) {
    out += '&';
    out.append(name);
    out += '=';
    AppendPercentEncoded(value, &out);
  };
  if (q.environment) add("environment", *q.environment);
  if (!q.type.empty()) add("type", q.type);
  if (q.since_ms > 0) add("since", std::to_string(q.since_ms / 1000));
  if (q.until_ms != INT64_MAX) add("until", std::to_string(q.until_ms / 1000));
  if (q.after_id > 0) add("after", std::to_string(q.after_id));
  return out;
}

}  // namespace ekm

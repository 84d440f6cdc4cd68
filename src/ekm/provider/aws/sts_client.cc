#include "ekm/provider/aws/sts_client.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <time.h>

#include <cctype>
#include <cstring>
#include <mutex>
#include <utility>

#include "ekm/base/secret_bytes.h"

namespace ekm {
namespace {

constexpr std::string_view kStsVersion = "2011-06-15";
constexpr size_t kMaxQuotedMessage = 300;

void InitXmlOnce() {
  // libxml2 must be initialised once before use from several threads.
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

bool NameIs(xmlNodePtr n, std::string_view name) {
  return n->type == XML_ELEMENT_NODE && n->name != nullptr &&
         std::string_view(reinterpret_cast<const char*>(n->name)) == name;
}

// A parsed XML document whose text is wiped before it is freed (it may hold a secret key).
class XmlDoc {
 public:
  explicit XmlDoc(xmlDocPtr doc) : doc_(doc) {}
  ~XmlDoc() {
    if (doc_ == nullptr) return;
    WipeText(xmlDocGetRootElement(doc_));
    xmlFreeDoc(doc_);
  }
  XmlDoc(const XmlDoc&) = delete;
  XmlDoc& operator=(const XmlDoc&) = delete;

  xmlNodePtr root() const { return doc_ ? xmlDocGetRootElement(doc_) : nullptr; }

 private:
  static void WipeText(xmlNodePtr n) {
    for (; n != nullptr; n = n->next) {
      if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
          n->content != nullptr) {
        OPENSSL_cleanse(n->content, std::strlen(reinterpret_cast<char*>(n->content)));
      }
      WipeText(n->children);
    }
  }
  xmlDocPtr doc_;
};

std::unique_ptr<XmlDoc> ParseXml(std::string_view body) {
  InitXmlOnce();
  if (body.empty() || body.size() > (1u << 20)) return nullptr;
  // No network, no entity substitution, no DTD loading (XXE), no error output to stderr.
  xmlDocPtr doc = xmlReadMemory(body.data(), static_cast<int>(body.size()), "sts.xml", nullptr,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == nullptr) return nullptr;
  return std::make_unique<XmlDoc>(doc);
}

// The first descendant element (depth first) with that local name.
xmlNodePtr Find(xmlNodePtr n, std::string_view name) {
  for (; n != nullptr; n = n->next) {
    if (NameIs(n, name)) return n;
    if (xmlNodePtr found = Find(n->children, name)) return found;
  }
  return nullptr;
}

xmlNodePtr Child(xmlNodePtr parent, std::string_view name) {
  return parent == nullptr ? nullptr : Find(parent->children, name);
}

std::string Text(xmlNodePtr n) {
  std::string out;
  if (n == nullptr) return out;
  for (xmlNodePtr c = n->children; c != nullptr; c = c->next) {
    if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
      out += reinterpret_cast<const char*>(c->content);
    }
  }
  size_t b = out.find_first_not_of(" \t\r\n");
  size_t e = out.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
}

SecretBytes SecretText(xmlNodePtr n) {
  std::string s = Text(n);
  SecretBytes out(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  WipeString(s);
  return out;
}

std::string Quote(std::string s) {
  if (s.size() > kMaxQuotedMessage) {
    s.resize(kMaxQuotedMessage);
    s += "...";
  }
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return s;
}

StatusOr<AwsTemporaryCredentials> ParseCredentialsResponse(std::string_view action,
                                                           std::string_view body) {
  auto doc = ParseXml(body);
  auto malformed = [&](std::string_view what) {
    return UnavailableError(
        "STS " + std::string(action) + " returned a malformed response (" + std::string(what) + ")",
        "is the STS endpoint an AWS STS service?");
  };
  if (!doc) return malformed("not XML");
  xmlNodePtr creds = Find(doc->root(), "Credentials");
  if (creds == nullptr) return malformed("no Credentials");
  AwsTemporaryCredentials out;
  out.credentials.access_key_id = Text(Child(creds, "AccessKeyId"));
  out.credentials.secret_access_key = SecretText(Child(creds, "SecretAccessKey"));
  std::string token = Text(Child(creds, "SessionToken"));
  if (out.credentials.access_key_id.empty() || out.credentials.secret_access_key.empty() ||
      token.empty()) {
    return malformed("missing AccessKeyId, SecretAccessKey or SessionToken");
  }
  out.credentials.session_token = std::move(token);
  auto expiration = ParseRfc3339(Text(Child(creds, "Expiration")));
  if (!expiration.ok()) return malformed("bad Expiration");
  out.expiration = *expiration;
  out.assumed_role_arn = Text(Child(Find(doc->root(), "AssumedRoleUser"), "Arn"));
  return out;
}

std::string Form(std::initializer_list<std::pair<std::string_view, std::string_view>> params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += FormUrlEncode(k);
    out += '=';
    out += FormUrlEncode(v);
  }
  return out;
}

Status ValidateSessionName(std::string_view name) {
  if (name.size() < 2 || name.size() > 64) {
    return InvalidArgumentError(
        "role session name \"" + std::string(name) + "\" must be 2 to 64 characters long",
        "use letters, digits and + = , . @ - _");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_+=,.@-", c) != nullptr)) {
      return InvalidArgumentError("role session name \"" + std::string(name) +
                                      "\" has an invalid character at position " +
                                      std::to_string(i + 1),
                                  "use letters, digits and + = , . @ - _");
    }
  }
  return Status::Ok();
}

}  // namespace

std::string FormUrlEncode(std::string_view value) { return SigV4UriEncode(value, false); }

namespace {

// The status for an STS error answer; `code` is set to the STS error name, if any.
Status StsErrorStatus(std::string_view action, long http_status, std::string_view body,
                      std::string& code) {
  std::string message;
  if (auto doc = ParseXml(body)) {
    // AWS: <ErrorResponse><Error>...; moto: <ErrorResponse><Errors><Error>...
    xmlNodePtr err = Find(doc->root(), "Error");
    code = Text(Child(err, "Code"));
    message = Text(Child(err, "Message"));
  }
  const std::string what = "STS " + std::string(action) + " failed: " +
                           (code.empty() ? "HTTP " + std::to_string(http_status) : code) +
                           (message.empty() ? "" : " (" + Quote(message) + ")");
  const std::string creds_hint =
      "check the platform's own AWS credentials (access key id, secret access key, session "
      "token) and where they come from";
  if (code == "AccessDenied" || code == "AccessDeniedException") {
    return PermissionDeniedError(
        what, action == "AssumeRole" || action == "AssumeRoleWithWebIdentity"
                  ? "the role's trust policy must allow the caller (and the external id, if one "
                    "is set), and the caller's IAM policy must allow sts:AssumeRole on the role"
                  : "the caller's IAM policy does not allow this STS action");
  }
  if (code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" ||
      code == "IncompleteSignature" || code == "ExpiredToken" || code == "RequestExpired" ||
      code == "MissingAuthenticationToken" || code == "UnrecognizedClientException" ||
      code == "InvalidAccessKeyId") {
    return UnauthenticatedError(what, creds_hint);
  }
  if (code == "InvalidIdentityToken" || code == "IDPRejectedClaim" ||
      code == "ExpiredTokenException") {
    return UnauthenticatedError(what,
                                "check the web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE) "
                                "and the role's OIDC trust policy");
  }
  if (code == "Throttling" || code == "ThrottlingException" || code == "RequestLimitExceeded" ||
      code == "ServiceUnavailable" || code == "InternalFailure" || code == "InternalError" ||
      code == "IDPCommunicationError" || http_status >= 500 || http_status == 429) {
    return UnavailableError(what, "AWS STS is unavailable or throttling; try again");
  }
  if (code == "RegionDisabledException") {
    return FailedPreconditionError(what,
                                   "activate STS in this region (IAM account settings) or "
                                   "use another STS endpoint");
  }
  if (http_status == 403) return PermissionDeniedError(what);
  return InvalidArgumentError(what);
}

}  // namespace

Status StsErrorToStatus(std::string_view action, long http_status, std::string_view body) {
  std::string code;
  Status status = StsErrorStatus(action, http_status, body, code);
  return code.empty() ? status : status.WithProviderCode(code);
}

StsClient::StsClient(StsClientOptions options) : options_(std::move(options)) {}

StatusOr<HttpResponse> StsClient::Call(std::string_view action, std::string& body,
                                       const AwsCredentials* credentials) const {
  if (!options_.transport) return InternalError("STS client without a transport");
  const AwsEndpoint& ep = options_.endpoint;
  HttpRequest req;
  req.method = "POST";
  req.url = ep.url + (ep.path == "/" ? "/" : "");
  req.timeout = options_.timeout;
  req.headers = {{"Host", ep.host_header},
                 {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  if (credentials != nullptr) {
    SigV4Request sreq;
    sreq.method = "POST";
    sreq.path = ep.path;
    sreq.headers = req.headers;
    sreq.payload = AsBytes(body);
    auto sig = SignRequest(sreq, *credentials, SigV4Scope{ep.signing_region, "sts"},
                           options_.clock->Now());
    if (!sig.ok()) return sig.status().WithContext("signing STS " + std::string(action));
    for (auto& h : sig->headers_to_add) req.headers.push_back(std::move(h));
  }
  req.body = std::move(body);
  auto resp = options_.transport->Send(req);
  WipeString(req.body);
  if (!resp.ok()) return resp.status().WithContext("STS " + std::string(action));
  if (resp->status != 200) {
    Status s = StsErrorToStatus(action, resp->status, resp->body);
    WipeString(resp->body);
    return s;
  }
  return resp;
}

StatusOr<CallerIdentity> StsClient::GetCallerIdentity(const AwsCredentials& credentials) const {
  std::string body = Form({{"Action", "GetCallerIdentity"}, {"Version", kStsVersion}});
  EKM_ASSIGN_OR_RETURN(HttpResponse resp, Call("GetCallerIdentity", body, &credentials));
  auto doc = ParseXml(resp.body);
  CallerIdentity id;
  if (doc) {
    xmlNodePtr result = Find(doc->root(), "GetCallerIdentityResult");
    id.arn = Text(Child(result, "Arn"));
    id.account = Text(Child(result, "Account"));
    id.user_id = Text(Child(result, "UserId"));
  }
  if (id.arn.empty()) {
    return UnavailableError("STS GetCallerIdentity returned a malformed response (no Arn)",
                            "is the STS endpoint an AWS STS service?");
  }
  return id;
}

StatusOr<AwsTemporaryCredentials> StsClient::AssumeRole(const AwsCredentials& credentials,
                                                        const AssumeRoleRequest& request) const {
  if (request.role_arn.empty()) return InvalidArgumentError("AssumeRole needs a role ARN");
  EKM_RETURN_IF_ERROR(ValidateSessionName(request.role_session_name));
  std::string duration = std::to_string(request.duration.count());
  std::string body = Form({{"Action", "AssumeRole"},
                           {"Version", kStsVersion},
                           {"RoleArn", request.role_arn},
                           {"RoleSessionName", request.role_session_name},
                           {"DurationSeconds", duration}});
  if (!request.external_id.empty()) body += "&ExternalId=" + FormUrlEncode(request.external_id);
  EKM_ASSIGN_OR_RETURN(HttpResponse resp, Call("AssumeRole", body, &credentials));
  auto out = ParseCredentialsResponse("AssumeRole", resp.body);
  WipeString(resp.body);
  return out;
}

StatusOr<AwsTemporaryCredentials> StsClient::AssumeRoleWithWebIdentity(
    const AssumeRoleWithWebIdentityRequest& request) const {
  if (request.role_arn.empty()) {
    return InvalidArgumentError("AssumeRoleWithWebIdentity needs a role ARN");
  }
  if (request.web_identity_token.empty()) {
    return InvalidArgumentError("the web identity token is empty",
                                "check AWS_WEB_IDENTITY_TOKEN_FILE");
  }
  EKM_RETURN_IF_ERROR(ValidateSessionName(request.role_session_name));
  std::string body = Form({{"Action", "AssumeRoleWithWebIdentity"},
                           {"Version", kStsVersion},
                           {"RoleArn", request.role_arn},
                           {"RoleSessionName", request.role_session_name},
                           {"DurationSeconds", std::to_string(request.duration.count())}});
  std::string token(AsChars(request.web_identity_token.RevealForCrypto()));
  body += "&WebIdentityToken=" + FormUrlEncode(token);
  WipeString(token);
  EKM_ASSIGN_OR_RETURN(HttpResponse resp, Call("AssumeRoleWithWebIdentity", body, nullptr));
  auto out = ParseCredentialsResponse("AssumeRoleWithWebIdentity", resp.body);
  WipeString(resp.body);
  return out;
}

std::string PrincipalArnFromCallerIdentity(std::string_view arn) {
  // arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION
  std::string_view rest = arn;
  if (!rest.starts_with("arn:")) return std::string(arn);
  rest.remove_prefix(4);
  size_t p = rest.find(':');
  if (p == std::string_view::npos) return std::string(arn);
  std::string_view partition = rest.substr(0, p);
  rest.remove_prefix(p + 1);
  if (!rest.starts_with("sts::")) return std::string(arn);
  rest.remove_prefix(5);
  p = rest.find(':');
  if (p == std::string_view::npos) return std::string(arn);
  std::string_view account = rest.substr(0, p);
  rest.remove_prefix(p + 1);
  if (!rest.starts_with("assumed-role/")) return std::string(arn);
  rest.remove_prefix(13);
  p = rest.find('/');
  if (p == std::string_view::npos || p == 0) return std::string(arn);
  // The session ARN carries only the role's last path segment: a role's path is lost here.
  std::string_view role = rest.substr(0, p);
  return "arn:" + std::string(partition) + ":iam::" + std::string(account) + ":role/" +
         std::string(role);
}

}  // namespace ekm

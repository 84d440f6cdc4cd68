#include "ekm/provider/aws/aws_config.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>
#include <vector>

#include "ekm/base/file_reader.h"
#include "ekm/base/secret_bytes.h"

namespace ekm {
namespace {

constexpr size_t kMaxConfigFileBytes = 1 << 20;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsTrue(const std::optional<std::string>& v) { return v && Lower(Trim(*v)) == "true"; }

void WipeSections(std::map<std::string, AwsIniSection>& sections) {
  for (auto& [name, section] : sections) {
    for (auto& [key, value] : section) WipeString(value);
  }
}

// Strips an inline comment: " #..." or " ;..." (a '#' after whitespace). AWS secrets and ids
// never contain whitespace, so this cannot cut a credential.
std::string_view StripInlineComment(std::string_view s) {
  for (size_t i = 1; i < s.size(); ++i) {
    if ((s[i] == '#' || s[i] == ';') && std::isspace(static_cast<unsigned char>(s[i - 1]))) {
      return Trim(s.substr(0, i));
    }
  }
  return s;
}

// The INI dialect of the AWS shared files: [section], key = value, full-line comments with '#'
// or ';', and indented lines after a key with an empty value as its sub-properties.
// `section_name` maps a header to (kind, name); kind "" drops the section.
using SectionMapper = std::pair<std::string, std::string> (*)(std::string_view header);

Status ParseIni(std::string_view text, const std::string& path, SectionMapper mapper,
                std::map<std::string, std::map<std::string, AwsIniSection>>& out) {
  AwsIniSection* current = nullptr;
  bool in_section = false;
  std::string parent_key;  // a key with an empty value, whose indented lines are sub-keys
  std::string last_key;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    std::string_view line = Trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    const bool indented = std::isspace(static_cast<unsigned char>(raw[0]));
    auto error = [&](std::string_view what) {
      return InvalidArgumentError(
          path + " line " + std::to_string(line_no) + ": " + std::string(what),
          "fix the AWS shared config/credentials file (INI format: "
          "[section] then key = value lines)");
    };
    if (line[0] == '[') {
      line = StripInlineComment(line);
      if (line.back() != ']') return error("section header without a closing ']'");
      auto [kind, name] = mapper(Trim(line.substr(1, line.size() - 2)));
      in_section = true;
      parent_key.clear();
      last_key.clear();
      current = kind.empty() ? nullptr : &out[kind][name];
      continue;
    }
    if (!in_section) return error("a setting before the first [section]");
    if (current == nullptr) continue;  // a section we do not use (sso-session, ...)
    size_t eq = line.find('=');
    if (indented && !last_key.empty() && parent_key.empty() && eq == std::string_view::npos) {
      // A continuation line of a multi-line value.
      (*current)[last_key] += "\n" + std::string(line);
      continue;
    }
    if (eq == std::string_view::npos) return error("expected 'key = value'");
    std::string key = Lower(Trim(line.substr(0, eq)));
    std::string_view value = StripInlineComment(Trim(line.substr(eq + 1)));
    if (key.empty()) return error("empty key before '='");
    if (indented && !parent_key.empty()) {
      (*current)[parent_key + "." + key] = std::string(value);
      continue;
    }
    parent_key = value.empty() ? key : std::string();
    last_key = key;
    (*current)[key] = std::string(value);
  }
  return Status::Ok();
}

std::pair<std::string, std::string> MapConfigSection(std::string_view header) {
  if (header == "default") return {"profile", "default"};
  if (header.starts_with("profile ")) return {"profile", std::string(Trim(header.substr(8)))};
  if (header.starts_with("services ")) return {"services", std::string(Trim(header.substr(9)))};
  return {"", ""};  // sso-session and unknown sections
}

std::pair<std::string, std::string> MapCredentialsSection(std::string_view header) {
  return {"profile", std::string(header)};
}

// A whole (small) file: nullopt + `missing` set when it does not exist.
StatusOr<std::optional<std::string>> ReadConfigFile(const std::string& path, std::string_view what,
                                                    std::string& missing) {
  auto text = ReadSmallFile(path, what, kMaxConfigFileBytes);
  if (text.ok()) return std::optional<std::string>(std::move(text).value());
  if (text.status().code() != StatusCode::kNotFound) return text.status();
  missing = "no such file";
  return std::optional<std::string>();
}

std::string ExpandHome(const std::string& path, const GetEnvFn& env) {
  if (path == "~" || path.starts_with("~/")) {
    std::string home = env("HOME").value_or("");
    return home + path.substr(1);
  }
  return path;
}

bool IsRegionChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

}  // namespace

GetEnvFn RealGetEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

GetEnvFn MapGetEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

AwsSharedConfig::~AwsSharedConfig() {
  WipeSections(config_profiles_);
  WipeSections(credentials_profiles_);
}

StatusOr<AwsSharedConfig> AwsSharedConfig::Parse(std::string_view config_text,
                                                 std::string_view credentials_text,
                                                 std::string config_path,
                                                 std::string credentials_path) {
  AwsSharedConfig c;
  c.config_path_ = std::move(config_path);
  c.credentials_path_ = std::move(credentials_path);
  std::map<std::string, std::map<std::string, AwsIniSection>> config, credentials;
  EKM_RETURN_IF_ERROR(ParseIni(config_text, c.config_path_, MapConfigSection, config));
  c.config_profiles_ = std::move(config["profile"]);
  c.services_ = std::move(config["services"]);
  EKM_RETURN_IF_ERROR(
      ParseIni(credentials_text, c.credentials_path_, MapCredentialsSection, credentials));
  c.credentials_profiles_ = std::move(credentials["profile"]);
  return c;
}

StatusOr<AwsSharedConfig> AwsSharedConfig::Load(const GetEnvFn& env) {
  std::string config_path = AwsConfigFilePath(env);
  std::string credentials_path = AwsCredentialsFilePath(env);
  std::string config_missing, credentials_missing;
  EKM_ASSIGN_OR_RETURN(std::optional<std::string> config_text,
                       ReadConfigFile(config_path, "AWS config file", config_missing));
  EKM_ASSIGN_OR_RETURN(
      std::optional<std::string> credentials_text,
      ReadConfigFile(credentials_path, "AWS shared credentials file", credentials_missing));
  auto parsed =
      Parse(config_text.value_or(""), credentials_text.value_or(""), config_path, credentials_path);
  if (config_text) WipeString(*config_text);
  if (credentials_text) WipeString(*credentials_text);
  if (!parsed.ok()) return parsed.status();
  parsed->config_missing_ = std::move(config_missing);
  parsed->credentials_missing_ = std::move(credentials_missing);
  return parsed;
}

bool AwsSharedConfig::HasProfile(const std::string& profile) const {
  return config_profiles_.count(profile) > 0 || credentials_profiles_.count(profile) > 0;
}

std::optional<std::string> AwsSharedConfig::Get(const std::string& profile,
                                                const std::string& key) const {
  for (const auto* sections : {&credentials_profiles_, &config_profiles_}) {
    auto p = sections->find(profile);
    if (p == sections->end()) continue;
    auto k = p->second.find(key);
    if (k != p->second.end()) return k->second;
  }
  return std::nullopt;
}

std::optional<SecretBytes> AwsSharedConfig::GetSecret(const std::string& profile,
                                                      const std::string& key) const {
  for (const auto* sections : {&credentials_profiles_, &config_profiles_}) {
    auto p = sections->find(profile);
    if (p == sections->end()) continue;
    auto k = p->second.find(key);
    if (k != p->second.end()) {
      return SecretBytes(reinterpret_cast<const uint8_t*>(k->second.data()), k->second.size());
    }
  }
  return std::nullopt;
}

std::string AwsSharedConfig::FileOf(const std::string& profile, const std::string& key) const {
  auto has = [&](const std::map<std::string, AwsIniSection>& sections) {
    auto p = sections.find(profile);
    return p != sections.end() && p->second.count(key) > 0;
  };
  if (has(credentials_profiles_)) return "shared credentials file";
  if (has(config_profiles_)) return "config file";
  return "";
}

std::optional<std::string> AwsSharedConfig::GetService(const std::string& services,
                                                       const std::string& key) const {
  auto s = services_.find(services);
  if (s == services_.end()) return std::nullopt;
  auto k = s->second.find(key);
  if (k == s->second.end()) return std::nullopt;
  return k->second;
}

std::string AwsProfileName(const GetEnvFn& env) {
  for (const char* var : {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}) {
    auto v = env(var);
    if (v && !Trim(*v).empty()) return std::string(Trim(*v));
  }
  return "default";
}

std::string AwsConfigFilePath(const GetEnvFn& env) {
  auto v = env("AWS_CONFIG_FILE");
  return ExpandHome(v && !v->empty() ? *v : "~/.aws/config", env);
}

std::string AwsCredentialsFilePath(const GetEnvFn& env) {
  auto v = env("AWS_SHARED_CREDENTIALS_FILE");
  return ExpandHome(v && !v->empty() ? *v : "~/.aws/credentials", env);
}

Status ValidateAwsRegion(std::string_view region) {
  if (region.empty()) return InvalidArgumentError("the AWS region is empty");
  if (region.size() > 64)
    return InvalidArgumentError("the AWS region is longer than 64 characters");
  for (size_t i = 0; i < region.size(); ++i) {
    if (!IsRegionChar(region[i])) {
      return InvalidArgumentError("the AWS region \"" + std::string(region) +
                                      "\" has an invalid character at position " +
                                      std::to_string(i + 1) + " (only a-z, 0-9 and '-')",
                                  "use a region code such as eu-west-1");
    }
  }
  if (region.front() == '-' || region.back() == '-') {
    return InvalidArgumentError(
        "the AWS region \"" + std::string(region) + "\" starts or ends with '-'",
        "use a region code such as eu-west-1");
  }
  return Status::Ok();
}

StatusOr<std::string> ResolveAwsRegion(const GetEnvFn& env, const AwsSharedConfig* config,
                                       std::string_view explicit_region) {
  auto checked = [](std::string region, std::string_view from) -> StatusOr<std::string> {
    Status s = ValidateAwsRegion(region);
    if (!s.ok()) return s.WithContext(std::string("region from ") + std::string(from));
    return region;
  };
  if (!Trim(explicit_region).empty()) {
    return checked(std::string(Trim(explicit_region)), "the configuration");
  }
  for (const char* var : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
    auto v = env(var);
    if (v && !Trim(*v).empty()) return checked(std::string(Trim(*v)), var);
  }
  std::string profile = AwsProfileName(env);
  if (config != nullptr) {
    auto v = config->Get(profile, "region");
    if (v && !Trim(*v).empty()) {
      return checked(std::string(Trim(*v)), "profile " + profile + " in " + config->config_path());
    }
  }
  return FailedPreconditionError(
      "no AWS region configured",
      "set the region in ekm's configuration, AWS_REGION, or `region` in profile " + profile +
          " of the AWS config file");
}

std::string SigningRegionForHost(std::string_view host, std::string_view configured_region) {
  std::string h = Lower(host);
  if (h == "sts.amazonaws.com") return "us-east-1";
  std::string_view rest = h;
  for (std::string_view suffix : {".amazonaws.com.cn", ".amazonaws.com"}) {
    if (!rest.ends_with(suffix)) continue;
    rest.remove_suffix(suffix.size());
    if (rest.ends_with(".vpce"))
      rest.remove_suffix(5);  // vpce-1a2b.kms.eu-west-1.vpce.amazonaws.com
    // The region is the last label before the suffix: kms.REGION, kms-fips.REGION, ...
    size_t dot = rest.rfind('.');
    if (dot == std::string_view::npos) break;
    std::string_view region = rest.substr(dot + 1);
    if (ValidateAwsRegion(region).ok() && region.find('-') != std::string_view::npos) {
      return std::string(region);
    }
    break;
  }
  return std::string(configured_region);
}

StatusOr<AwsEndpoint> ParseAwsEndpoint(std::string_view url, std::string_view region,
                                       std::string_view source) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError(
        "endpoint URL from " + std::string(source) + " is invalid: " + std::string(why),
        "use scheme://host[:port], e.g. https://kms.eu-west-1.amazonaws.com or "
        "http://127.0.0.1:5055");
  };
  url = Trim(url);
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("it contains a space or control character");
  }
  AwsEndpoint e;
  size_t sep = url.find("://");
  if (sep == std::string_view::npos) return bad("no scheme (expected https:// or http://)");
  e.scheme = Lower(url.substr(0, sep));
  if (e.scheme != "https" && e.scheme != "http")
    return bad("scheme \"" + e.scheme + "\" is not http or https");
  std::string_view rest = url.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("it has a query or fragment");
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "/" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) return bad("it has user info ('@')");
  std::string_view host, port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unbalanced '[' in an IPv6 host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("unexpected characters after the IPv6 host");
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad("empty host");
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ':' ||
          c == '_')) {
      return bad(std::string("invalid character '") + c + "' in the host");
    }
  }
  std::string default_port = e.scheme == "https" ? "443" : "80";
  if (authority.back() == ':') return bad("empty port");
  if (!port.empty()) {
    if (port.size() > 5) return bad("port out of range");
    for (char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return bad("the port is not a number");
    }
    int p = std::stoi(std::string(port));
    if (p < 1 || p > 65535) return bad("port out of range");
  }
  e.host = Lower(host);
  std::string bracketed = e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host;
  e.host_header = bracketed;
  if (!port.empty() && port != default_port) e.host_header += ":" + std::string(port);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  e.path = std::string(path);
  e.url = e.scheme + "://" + e.host_header + (e.path == "/" ? "" : e.path);
  e.signing_region = SigningRegionForHost(e.host, region);
  e.source = std::string(source);
  return e;
}

StatusOr<AwsEndpoint> ResolveAwsEndpoint(std::string_view service, std::string_view region,
                                         const GetEnvFn& env, const AwsSharedConfig* config,
                                         std::string_view explicit_endpoint) {
  EKM_RETURN_IF_ERROR(ValidateAwsRegion(region));
  const std::string svc = Lower(service);
  if (!Trim(explicit_endpoint).empty()) {
    return ParseAwsEndpoint(explicit_endpoint, region, "the configuration");
  }
  std::string profile = AwsProfileName(env);
  bool ignore = IsTrue(env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"));
  if (!ignore && config != nullptr && !env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) {
    ignore = IsTrue(config->Get(profile, "ignore_configured_endpoint_urls"));
  }
  if (!ignore) {
    std::string upper;
    for (char c : svc)
      upper += static_cast<char>(
          c == ' ' || c == '-' ? '_' : std::toupper(static_cast<unsigned char>(c)));
    for (std::string var : {"AWS_ENDPOINT_URL_" + upper, std::string("AWS_ENDPOINT_URL")}) {
      auto v = env(var);
      if (v && !Trim(*v).empty()) return ParseAwsEndpoint(*v, region, var);
    }
    if (config != nullptr) {
      if (auto services = config->Get(profile, "services"); services && !services->empty()) {
        if (auto v = config->GetService(*services, svc + ".endpoint_url"); v && !v->empty()) {
          return ParseAwsEndpoint(
              *v, region,
              "[services " + *services + "] " + svc + " endpoint_url in " + config->config_path());
        }
      }
      if (auto v = config->Get(profile, "endpoint_url"); v && !v->empty()) {
        return ParseAwsEndpoint(
            *v, region, "endpoint_url of profile " + profile + " in " + config->config_path());
      }
    }
  }
  std::string domain = region.starts_with("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
  return ParseAwsEndpoint("https://" + svc + "." + std::string(region) + "." + domain, region,
                          "default");
}

}  // namespace ekm

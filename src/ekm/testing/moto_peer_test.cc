// Tests of the moto test peer itself: moto over HTTPS with the throwaway CA, the IAM set-up with
// auth on, and the fault proxy. One peer for the whole suite keeps it to a few seconds.
#include "ekm/testing/moto_peer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ekm::testing {
namespace {

class MotoPeerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto peer = MotoPeer::Start({.tls = true, .fault_proxy = true});
    if (!peer.ok()) {
      start_error_ = new std::string(peer.status().ToString());
      return;
    }
    peer_ = std::move(peer).value().release();
  }
  static void TearDownTestSuite() {
    delete peer_;
    peer_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(peer_, nullptr) << (start_error_ ? *start_error_ : std::string("no peer"));
    ASSERT_TRUE(peer_->ClearFaults().ok());
  }

  // Runs python and fails the test with its output if it fails.
  void Python(const std::string& code) {
    std::string output;
    Status s = peer_->RunBoto3(code, &output);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  static MotoPeer* peer_;
  static std::string* start_error_;
};

MotoPeer* MotoPeerTest::peer_ = nullptr;
std::string* MotoPeerTest::start_error_ = nullptr;

TEST_F(MotoPeerTest, EndpointsAndSetup) {
  EXPECT_EQ(peer_->endpoint().rfind("https://127.0.0.1:", 0), 0u) << peer_->endpoint();
  EXPECT_EQ(peer_->proxy_endpoint().rfind("http://127.0.0.1:", 0), 0u) << peer_->proxy_endpoint();
  EXPECT_FALSE(peer_->ca_file().empty());
  const auto& setup = peer_->setup();
  EXPECT_EQ(setup["region"], "us-east-1");
  EXPECT_EQ(setup["account"], "123456789012");
  for (const char* user :
       {"ekm-platform", "ekm-no-decrypt", "ekm-describe", "ekm-admin", "ekm-web-identity"}) {
    ASSERT_TRUE(setup["users"].contains(user)) << user;
    EXPECT_EQ(setup["users"][user]["arn"], std::string("arn:aws:iam::123456789012:user/") + user);
    EXPECT_EQ(setup["users"][user]["access_key_id"].get<std::string>().rfind("AKIA", 0), 0u);
    EXPECT_FALSE(setup["users"][user]["secret_access_key"].get<std::string>().empty());
  }
  EXPECT_EQ(setup["roles"]["ekm-platform-role"]["arn"],
            "arn:aws:iam::123456789012:role/ekm-platform-role");
  EXPECT_EQ(setup["roles"]["ekm-web-role"]["arn"], "arn:aws:iam::123456789012:role/ekm-web-role");
  for (const char* key : {"main", "rotating", "disabled"}) {
    ASSERT_TRUE(setup["keys"].contains(key)) << key;
    const auto& k = setup["keys"][key];
    EXPECT_EQ(k["arn"], "arn:aws:kms:us-east-1:123456789012:key/" + k["key_id"].get<std::string>());
    EXPECT_EQ(k["alias_arn"], std::string("arn:aws:kms:us-east-1:123456789012:alias/ekm-") + key);
  }
}

TEST_F(MotoPeerTest, IamChecksAreOnOverHttps) {
  Python(R"PY(
import ssl, urllib.request, botocore.exceptions
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
keys = setup["keys"]
kms = client("kms", "ekm-platform")
for key in (keys["main"]["arn"], keys["main"]["alias_arn"]):
    ct = kms.encrypt(KeyId=key, Plaintext=b"hello", EncryptionContext={"ws": "acme"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ct, EncryptionContext={"ws": "acme"})["Plaintext"] == b"hello"

# Not in the platform user's policy.
try:
    kms.describe_key(KeyId=keys["main"]["arn"]); raise SystemExit("DescribeKey allowed")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
try:
    client("kms", "ekm-no-decrypt").decrypt(CiphertextBlob=ct, EncryptionContext={"ws": "acme"})
    raise SystemExit("Decrypt allowed for ekm-no-decrypt")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
md = client("kms", "ekm-describe").describe_key(KeyId=keys["disabled"]["arn"])["KeyMetadata"]
assert md["KeyState"] == "Disabled", md
assert client("kms", "ekm-describe").get_key_rotation_status(
    KeyId=keys["rotating"]["arn"])["KeyRotationEnabled"]

# A wrong secret: moto recomputes SigV4 and answers 403 with IAM's XML (boto3 cannot parse it).
body = json.dumps({"KeyId": keys["main"]["arn"], "Plaintext": "aGVsbG8="})
req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers={
    "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Encrypt"})
SigV4Auth(Credentials(setup["users"]["ekm-platform"]["access_key_id"], "wrong" * 8),
          "kms", "us-east-1").add_auth(req)
p = req.prepare()
try:
    urllib.request.urlopen(urllib.request.Request(p.url, data=body.encode(), headers=dict(p.headers),
        method="POST"), context=ssl.create_default_context(cafile=ca_file))
    raise SystemExit("wrong secret accepted")
except urllib.error.HTTPError as e:
    text = e.read().decode()
    assert e.code == 403 and "<Code>SignatureDoesNotMatch</Code>" in text, (e.code, text)

# Certificate checking is real: without the test CA the handshake fails.
try:
    boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", verify=True,
                 aws_access_key_id="x", aws_secret_access_key="y",
                 config=Config(retries={"total_max_attempts": 1})).list_keys()
    raise SystemExit("TLS without the CA succeeded")
except botocore.exceptions.SSLError:
    pass

# AssumeRole: the temporary credentials (with session token) get the role's policy.
sts = client("sts", "ekm-platform")
c = sts.assume_role(RoleArn=setup["roles"]["ekm-platform-role"]["arn"],
                    RoleSessionName="ekm-test")["Credentials"]
role_kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", verify=ca_file,
                        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])
assert role_kms.describe_key(KeyId=keys["main"]["arn"])["KeyMetadata"]["KeyState"] == "Enabled"
)PY");
}

TEST_F(MotoPeerTest, ProxyInjectsAwsErrorShapesAndCounts) {
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "DisabledException", 1).ok());
  Python(R"PY(
import botocore.exceptions
key = setup["keys"]["main"]
kms = client("kms", "ekm-platform", via_proxy=True)
ct = kms.encrypt(KeyId=key["arn"], Plaintext=b"x", EncryptionContext={"ws": "a"})["CiphertextBlob"]
try:
    kms.decrypt(CiphertextBlob=ct, EncryptionContext={"ws": "a"}); raise SystemExit("no fault")
except botocore.exceptions.ClientError as e:
    r = e.response
    assert r["Error"]["Code"] == "DisabledException", r
    assert r["Error"]["Message"] == key["arn"] + " is disabled.", r
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 400, r
    h = r["ResponseMetadata"]["HTTPHeaders"]
    assert h["content-type"] == "application/x-amz-json-1.1" and h["x-amzn-requestid"], h
# The fault was for one request only; signatures made for the proxy's Host still verify.
assert kms.decrypt(CiphertextBlob=ct, EncryptionContext={"ws": "a"})["Plaintext"] == b"x"
)PY");
  auto stats = peer_->FaultStats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ((*stats)["requests"]["TrentService.Decrypt"], 2) << stats->dump();
  EXPECT_EQ((*stats)["faulted"]["TrentService.Decrypt"], 1) << stats->dump();
  EXPECT_EQ((*stats)["forwarded"]["TrentService.Encrypt"], 1) << stats->dump();

  ASSERT_TRUE(peer_->ClearFaults().ok());
  stats = peer_->FaultStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE((*stats)["requests"].empty()) << stats->dump();
}

TEST_F(MotoPeerTest, ProxyFaultKinds) {
  ASSERT_TRUE(peer_->ArmFault("*", "KMSInternalException", 1).ok());
  ASSERT_TRUE(peer_->ArmFault("*", "ServiceUnavailable", 1).ok());
  ASSERT_TRUE(peer_->ArmFault("*", "reset", 1).ok());
  ASSERT_TRUE(peer_->ArmFault("*", "timeout", 1, /*delay_ms=*/1500).ok());
  Python(R"PY(
import botocore.exceptions, time
kms = client("kms", "ekm-platform", via_proxy=True, config=Config(
    retries={"total_max_attempts": 1}, read_timeout=0.5, connect_timeout=2))
arn = setup["keys"]["main"]["arn"]
def fails():
    try:
        kms.encrypt(KeyId=arn, Plaintext=b"x")
    except (botocore.exceptions.ClientError, botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError) as e:
        return e
    raise SystemExit("no fault")
e = fails(); assert e.response["Error"]["Code"] == "KMSInternalException", e.response
assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 500
e = fails(); assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503, e.response
e = fails(); assert isinstance(e, botocore.exceptions.ConnectionClosedError), repr(e)
t = time.monotonic(); e = fails()
assert isinstance(e, botocore.exceptions.ReadTimeoutError) and time.monotonic() - t < 1.4, repr(e)
kms.encrypt(KeyId=arn, Plaintext=b"x")
)PY");
}

TEST_F(MotoPeerTest, WebIdentityThroughTheProxy) {
  Python(R"PY(
from botocore import UNSIGNED
sts = boto3.client("sts", endpoint_url=proxy_endpoint, region_name="us-east-1",
                   config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))
r = sts.assume_role_with_web_identity(RoleArn=setup["roles"]["ekm-web-role"]["arn"],
                                      RoleSessionName="pod-1", WebIdentityToken="eyJ.a.b")
assert r["AssumedRoleUser"]["Arn"].endswith(":assumed-role/ekm-web-role/pod-1"), r
)PY");
}

TEST_F(MotoPeerTest, RunBoto3ReportsFailures) {
  std::string output;
  Status s = peer_->RunBoto3("print('partial'); raise SystemExit(3)", &output);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("exit code 3"), std::string::npos) << s.ToString();
  EXPECT_NE(output.find("partial"), std::string::npos) << output;
}

}  // namespace
}  // namespace ekm::testing

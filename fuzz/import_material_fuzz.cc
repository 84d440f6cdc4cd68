// Fuzz target: importing key material (ekm/provider/imported/import_unwrap.h), the two inputs an
// admin uploads: the import token text and the RSA-OAEP wrapped material. Input: token bytes,
// a NUL, then the wrapped material.
// Contract checks: a token is accepted only as 32 bytes of base64url (its hash is 32 bytes);
// every rejection is kInvalidArgument with a printable message; the size check passes exactly
// 512-byte uploads; the unwrap never errors with a good key, and yields either nothing (one
// answer for every failure: no padding oracle) or exactly 32 bytes.
//
// The harness's wrapping key below is a test key made for this file (openssl genpkey RSA 4096);
// it protects nothing. Seeds in corpus/import_material_fuzz are wrapped under its public half.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "ekm/base/ossl.h"
#include "ekm/provider/imported/import_unwrap.h"

namespace {

constexpr char kHarnessKeyPem[] = R"(
-----BEGIN PRIVATE KEY-----
MIIJQgIBADANBgkqhkiG9w0BAQEFAASCCSwwggkoAgEAAoICAQDEiFL4lAIqQuhu
p9PVI0UI5Tw8SGUqJ2jG+MyKOixETErGoh7LLm1j32mBpgx+oGRL9n3/VaJPxhgu
lDYRbqXl9KLE+Ed8yj4YeUwsEB59PrnU2NbDjEBq5NqV9SM2mipWADhRptVgQZ5v
EC99kHQm8dxkZBWj21/akMRBbmzkVr6Bg64yaFxZ0t+YV9pigkqdmEO2mgBr+qWi
3jbO77WCXmHTwk3Qwv0mAfcIGZ1E144OkpOBtmwdoeck1S/Lr9I39PXhxlIAIHue
cZ/ta7LrHqBFQg3otAwqMSN2KwNeJNxf2Uwx8FTEBIo65oC7hH3hezNURK7oBH0D
s28xKTWOSFdkxcPx0otrHiFOYPlIgzS2CxJu6UdXJ0KqVpQ7bwuIs8gmljZtSHZv
TFxhtG57gqgyYsnzxyFk3+i8btIxvD4WgZ6wLZVDdHR9x8AB4gKjG910GcaasdTt
/gYRgIjH1eGzSDUIequ/dZO63ASNbMXu6KNh82EbkEqtRB7INRyCW5TJIvQeFcDq
TG7JTFbRKoT1RNm3ZrFRjFKWLCeYgdcI5VmLQ+yOUVvgz85zqqmJQjKzRHfrSOBt
iVKsycqSjn/U3QSveG4VINhXrLnezwD4oGaAhblsdjdpqWF5MdnXuZY4K3kl1gak
2CgYufCEl0SYrb50HHIRB75CC5zr+QIDAQABAoICAAfbvZmT7Xw8HagjDMzWcrG2
3NA6QtVLKxzdoOwcBF4cwNatb9bG/ffC3Kii95fumOQSsJoPlgRjkt717S2IQ5js
zb9bgBxEx/PZkcqnQFjYs7yHiRrblk3P5c+eNDDAPFYg/x+AsMJ/DTM6rfNy3boa
7KmU+OqK4IvQQxCstizxLP/nwITieGLdFDS2upQ6ynn/tyFrif3HUW0wPnfKzPKw
DHBXsh3ZVh75cCPCRnAUwGjjwoMqxKrwqNnnrlgSKTE0mcpT0D6SDe9ZcsAfENHm
8Rij2gOGg4ACY/0bHjDa/3bTrQDIL9OArPhK9DXLR+9GqlhBwM6lM0x9FcKc97et
SqApNlFIw/x91jXxv9FkC8zjlGpcPxt9L3/wG8RAOPCObLe+RGnvygRC2UEpqJ7C
QwoGCwyk9cl0MEM1rEaIA79UmeTxfnNKu0nrSd1jfWGfotS10nXsVJ3CcoVwNsgc
Zo1PkhjV2ZMsda0/7cjuIT5GcbvLjt+KCNhd2SEU6P0RJS6s85k6klqFILT3WeJw
jKLTXOy4v+JpkNF2L3WytiIB9bfoX+fJPqhWZyMxYrYjyns/PN5M37UIIFDTcJNb
GWqwIOPuvOgJrlrSKweX30T0F0t7VqFZElhoGJ7dIXqo7KZpCM4Sn5kw5GGETuth
0nsSOTtb3sI3AGk+XaojAoIBAQDlSKV/tmcN4NaJx6E8WcXRViyDGdIT9+A8+T6o
u7clykeDfhH+Os1nNz48R+gm4cNeo64Oy7q9yoAZ1072eYbwTz3dKZMv8zTQ1lJK
OuB7qVsRxTOc1ni82KLOAiZf/1CaH9JLEcHF1f71MNlBUGbf9dW0mpDvE9oh62vz
JheGN3BEeLydKPGjzMCFfeJ7vYRV96R5TZaKSNcLqcuKxhRdADpjMqX2lJ63fxpz
UqykoBIFmx/w0qV6qNgfDoSjqUrgZdahVqySL4TXR4dBeNDipdtW2tVO12I62KJt
F2/VLTcrWsQJ+M9erRgniygSZMO4IaTSx8eJGXnQbaHYc+mrAoIBAQDbbrvFyU4Y
BPfy5UxuvsIPldx7lV04a96ifBw+2Tbd7CNn8lZXZMTvEyDC84C94RVyiEZJPWkm
BL5iKFiei4tcSyF8blHBRSx3TpXq25Hnz+qYlPhHe/QpAJVUOzkPz24IWxZEdiCp
K2zG1hZx6gqFXxQz4xWRTX2FMb2cDC+6EtddX8Q3zylNaL+vqxeOn3mg0SymQPJX
yCa8t4pM4rlq8vgdp4Trq6REMVGQwDNo6O6dfXB6d3Ol3rGdhSzQK9nCo5At8kqk
H4ULWMm5kXpFwcGRnhOVoe+wYrAjIYwlZXrCLHljX4DGBf4oxCwIRDmLrDgfH1q/
yLtioPPxbETrAoIBAQDkqTmcD33hIlzzFWsgc+tLpSRJLuQK1AcG6A9sWaECiCQf
6Afrwhr9F+PyXEgTFs4vwQ8iZF19T8nHe6mdN3+yg2SP/xlyFZuTtlpk+yjLSw+u
vjuF64KH24kp6Iz66fYpbxjbkv7r3Uoiny/b6mJecp5JOmjWdbbyYwXKfS+yw/Er
6Dk6hw3NrLJHr07C1zN2RL3717wNdy03zYNXh8nhIgwYx/cp3fgXyiPH5SiWGak/
fAAzvPAZTvASsPjo+znYZtfRGU6Lj+ZsiEJEsken8X64tQ9MTJMDWu9J2rjGIgzG
KQQfacrtgbT4Iti411M1fCATsfe2K/kHO37QDnF3AoIBAAHmAFvitPlCOb7xOusO
XXFzE3hCP484Z7GyLzBgAriCzX+duh+BcK681KC7KJb79oqKIUmK7Xj1u4vv22xr
uqXuxHhmH/DzH0Jc/LEOe0GtK9NsHoXHzcH5DlGvPXwkiEgsOZIYD4pHJObHfWQ4
6SRkQTF9uncKW5amaoSKGnOarCBTrsfo0+umh1oGuepy+MNqa994WmBmC+fAEsM9
husk9P6Ur3K2hnJMlu8QqqEyurXEGxAELoz100WQnGWkq3qinaG4IesvlqAVgZFI
b+1gksMmwfaecwtsnyd+p86/BQPfDKHOdre/34YMxHDB3lmWANpMFCXqn6xnxhSF
okcCggEAGzJf0cKoRaNVJcrGp6V0XguH8pjj0Yd/9kfTmlIAuHaIV/D9ISuKhKDs
3l0eXAblTgZ25Obh2G9fWSV3zaKRiIk9VP4Pk5POOJsVXAu8184/oDpe7u9xdoR1
mSacE4fmWmSp0bvtKmOkk4OZ5mLfYg7kuyYc6E+ssxEJAivKZmvAknRC+Buh25ps
dFdfjmoDq4bsuDKEo8qVpu25ZPereTEXS1Lc76DNXqUua4cBMeMTDB2NwaAHwdXm
bfCFl4+dGouOBFDb0scw6wR3EGJ+0kjKoqhR3THAdOWHMT/mnMT+lKXEzVtmHXWS
StMPvhBzNToBPsQPjscTMC7T1kWbmQ==
-----END PRIVATE KEY-----
)";

bool PrintableAscii(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

const ekm::SecretBytes& HarnessKeyDer() {
  static const ekm::SecretBytes der = [] {
    BIO* bio = BIO_new_mem_buf(kHarnessKeyPem, -1);
    ekm::OsslPtr<EVP_PKEY> pkey(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    if (!pkey) __builtin_trap();
    const int len = i2d_PrivateKey(pkey.get(), nullptr);
    if (len <= 0) __builtin_trap();
    ekm::SecretBytes out(static_cast<size_t>(len));
    uint8_t* p = out.MutableForCrypto().data();
    if (i2d_PrivateKey(pkey.get(), &p) != len) __builtin_trap();
    return out;
  }();
  return der;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view token = input.substr(0, nul);
  const std::string_view rest =
      nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  const ekm::ByteView wrapped(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());

  auto hash = ekm::ImportTokenHash(token, "pass the import-token file");
  if (hash.ok()) {
    if (hash->size() != 32) __builtin_trap();
  } else {
    const ekm::Status& s = hash.status();
    if (s.code() != ekm::StatusCode::kInvalidArgument) __builtin_trap();
    if (!PrintableAscii(s.message()) || !PrintableAscii(s.hint())) __builtin_trap();
  }

  const ekm::Status size_ok = ekm::CheckWrappedMaterialSize(wrapped);
  if (size_ok.ok() != (wrapped.size() == ekm::kWrappedMaterialSize)) __builtin_trap();
  if (!size_ok.ok()) {
    if (size_ok.code() != ekm::StatusCode::kInvalidArgument || !PrintableAscii(size_ok.message())) {
      __builtin_trap();
    }
    return 0;
  }
  auto material = ekm::UnwrapImportedMaterial(HarnessKeyDer(), wrapped);
  if (!material.ok()) __builtin_trap();  // the key is good: never an error
  if (material->has_value() && (*material)->size() != ekm::kImportedMaterialSize) __builtin_trap();
  return 0;
}

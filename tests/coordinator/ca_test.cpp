// The run's CA (frugal/coordinator/ca.h) writes each client's compact identity
// credential beside its certificate: it names the client, certifies the
// client's own mTLS key, and verifies under the CA certificate's key only.
#include "frugal/coordinator/ca.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/temp_dir.h"
#include "frugal/core/config_reader.h"
#include "frugal/privacy/identity.h"

namespace frugal::coordinator {
namespace {

privacy::IdentityCredential ReadCredential(const std::string& path) {
  auto text = ReadTextFile(path);
  REQUIRE(text.ok());
  auto c = privacy::DecodeIdentityCredentialFile(
      std::span(reinterpret_cast<const uint8_t*>(text->data()), text->size()));
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  return *c;
}

TEST_SUITE("coordinator") {
  TEST_CASE("ca issue writes an identity credential of the client's key that verifies under its CA only") {
    testing::TempDir dir, other;
    const std::string ca_dir = dir.Path("ca"), other_dir = other.Path("ca");
    REQUIRE(InitCa(ca_dir).ok());
    REQUIRE(InitCa(other_dir).ok());
    REQUIRE(IssueClientCert(ca_dir, "device-0").ok());
    REQUIRE(IssueClientCerts(ca_dir, "fleet-", 2).ok());
    auto ca = privacy::P256PublicKeyFromPem(*ReadTextFile(CaPaths::In(ca_dir).ca_cert));
    auto rogue = privacy::P256PublicKeyFromPem(*ReadTextFile(CaPaths::In(other_dir).ca_cert));
    REQUIRE(ca.ok());
    REQUIRE(rogue.ok());
    for (const std::string name : {"device-0", "fleet-0", "fleet-1"}) {
      const privacy::IdentityCredential c = ReadCredential(CaPaths::ClientIdentity(ca_dir, name));
      CHECK(c.name == name);
      auto key = privacy::P256Key::FromPem(*ReadTextFile(CaPaths::ClientKey(ca_dir, name)));
      REQUIRE(key.ok());
      CHECK(key->public_key() == c.public_key);
      // The certificate's key is the same key.
      CHECK(*privacy::P256PublicKeyFromPem(*ReadTextFile(CaPaths::ClientCert(ca_dir, name))) == c.public_key);
      CHECK(privacy::VerifyIdentityCredential(*ca, c).ok());
      CHECK(privacy::VerifyIdentityCredential(*rogue, c).error().code() == ErrorCode::kUnauthenticated);
    }
    // A client issued before credentials: ca identity writes the same statement again.
    const std::string idc = CaPaths::ClientIdentity(ca_dir, "device-0");
    CHECK(IssueIdentityCredential(ca_dir, "device-0").error().code() == ErrorCode::kAlreadyExists);
    std::filesystem::remove(idc);
    REQUIRE(IssueIdentityCredential(ca_dir, "device-0").ok());
    const privacy::IdentityCredential again = ReadCredential(idc);
    CHECK(again.name == "device-0");
    CHECK(privacy::VerifyIdentityCredential(*ca, again).ok());
    CHECK(IssueIdentityCredential(ca_dir, "nobody").error().code() == ErrorCode::kNotFound);
    CHECK(!privacy::P256Key::FromPem("not a key").ok());
    CHECK(!privacy::P256PublicKeyFromPem("not a certificate").ok());
  }
}

}  // namespace
}  // namespace frugal::coordinator

// libFuzzer target for the SecAgg+ protocol messages (DecodeSecureMessage, all
// nine types in use, version 2 with varint counts and positions; version 1 and
// the retired type 6 must be refused) and the state machines that take them
// from outside: the server's advertise-keys stage and a client's share-keys
// stage, each without (modes 1, 2) and with identity-bound keys (modes 3, 4:
// credentials and advertisement signatures from the seeds' simulated CA),
// and mode 5 the identity credential file an agent reads (`.idc`,
// DecodeIdentityCredentialFile), which must re-encode to itself.
// Input: u8 mode, then the bytes. Accepted bytes must re-encode to themselves
// (the encodings are canonical); a state machine may refuse anything but must
// never crash or accept a message of another session, round or party, nor,
// with identities, keys whose credential and signature do not verify.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/privacy/secure_aggregation.h"
#include "fuzz_common.h"
#include "fuzz_secagg_common.h"

namespace {

using namespace frugal::privacy;

void CheckCanonical(std::span<const uint8_t> bytes) {
  auto m = DecodeSecureMessage(bytes);
  if (!m.ok()) return;
  frugal::fuzz::Require(m->header.type != SecureMessageType::kRetiredUnmaskRequest);
  const std::vector<uint8_t> again = EncodeSecureMessage(*m);
  frugal::fuzz::Require(std::vector<uint8_t>(bytes.begin(), bytes.end()) == again);
}

const SimulatedIdentityAuthority& Ca() {
  static const SimulatedIdentityAuthority ca = *SimulatedIdentityAuthority::Create(frugal::fuzz::kSecAggFuzzCaSeed);
  return ca;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::span<const uint8_t> bytes(data + 1, size - 1);
  CheckCanonical(bytes);
  const int mode = data[0] % 6;
  const bool bound = mode == 3 || mode == 4;
  const SecureRoundConfig cfg = frugal::fuzz::SecAggFuzzConfig(bound);
  switch (mode) {
    case 5: {
      auto c = DecodeIdentityCredentialFile(bytes);
      if (c.ok()) {
        frugal::fuzz::Require(EncodeIdentityCredentialFile(*c) == std::vector<uint8_t>(bytes.begin(), bytes.end()));
        frugal::fuzz::Require(ValidIdentityName(c->name));
      }
      break;
    }
    case 1:
    case 3: {
      auto server = bound ? SecureAggServer::Create(cfg, Ca().ca_public()) : SecureAggServer::Create(cfg);
      frugal::fuzz::Require(server.ok());
      const auto m = DecodeSecureMessage(bytes);
      const std::string name = bound ? std::to_string(frugal::fuzz::SecAggFuzzClientId(3)) : std::string();
      const bool accepted = server->OnAdvertiseKeys(3, bytes, name).ok();
      if (accepted) {
        frugal::fuzz::Require(m.ok() && m->header.session_id == cfg.session_id && m->header.round == cfg.round &&
                              m->header.party == 3);
        if (bound) {
          frugal::fuzz::Require(m->keys.identity && m->keys.identity->name == name &&
                                VerifyAdvertisement(Ca().ca_public(), cfg.session_id, cfg.round, m->keys).ok());
        }
      }
      break;
    }
    case 2:
    case 4: {
      std::optional<SecureIdentity> id;
      if (bound) id = *Ca().Issue(frugal::fuzz::SecAggFuzzClientId(0));
      auto client = SecureAggClient::Create(cfg, 0, id);
      frugal::fuzz::Require(client.ok());
      frugal::fuzz::Require(client->AdvertiseKeys().ok());
      auto shares = client->ShareKeys(bytes);
      if (shares.ok()) {
        const auto dir = DecodeSecureMessage(bytes);
        frugal::fuzz::Require(dir.ok() && dir->header.party == 0 && dir->header.round == cfg.round);
        const auto out = DecodeSecureMessage(*shares);
        frugal::fuzz::Require(out.ok() && out->shares.size() == dir->directory.size());
        if (bound) {
          for (const auto& k : dir->directory) {
            frugal::fuzz::Require(VerifyAdvertisement(Ca().ca_public(), cfg.session_id, cfg.round, k).ok());
          }
        }
      }
      break;
    }
    default:
      break;
  }
  return 0;
}

// libFuzzer target for the SecAgg+ protocol messages (DecodeSecureMessage, all
// nine types in use; type 6, retired, must be refused) and the state machines that take them from outside: the
// server's advertise-keys stage and a client's share-keys stage. Input: u8
// mode, then the bytes. Accepted bytes must re-encode to themselves (the
// encodings are canonical); a state machine may refuse anything but must never
// crash or accept a message of another session, round or party.
#include <cstdint>
#include <span>
#include <vector>

#include "frugal/privacy/secure_aggregation.h"
#include "fuzz_common.h"

namespace {

using namespace frugal::privacy;

// The round every seed is written for (tests/fuzz/corpus/fuzz_secagg_messages).
SecureRoundConfig Config() {
  return {.session_id = 0x0123456789abcdefULL, .round = 7, .clients = 10, .degree = 6, .threshold = 2, .bits = 20,
          .length = 16};
}

void CheckCanonical(std::span<const uint8_t> bytes) {
  auto m = DecodeSecureMessage(bytes);
  if (!m.ok()) return;
  frugal::fuzz::Require(m->header.type != SecureMessageType::kRetiredUnmaskRequest);
  const std::vector<uint8_t> again = EncodeSecureMessage(*m);
  frugal::fuzz::Require(std::vector<uint8_t>(bytes.begin(), bytes.end()) == again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::span<const uint8_t> bytes(data + 1, size - 1);
  CheckCanonical(bytes);
  const SecureRoundConfig cfg = Config();
  switch (data[0] % 3) {
    case 1: {
      auto server = SecureAggServer::Create(cfg);
      frugal::fuzz::Require(server.ok());
      const auto m = DecodeSecureMessage(bytes);
      const bool accepted = server->OnAdvertiseKeys(3, bytes).ok();
      if (accepted) {
        frugal::fuzz::Require(m.ok() && m->header.session_id == cfg.session_id && m->header.round == cfg.round &&
                              m->header.party == 3);
      }
      break;
    }
    case 2: {
      auto client = SecureAggClient::Create(cfg, 0);
      frugal::fuzz::Require(client.ok());
      frugal::fuzz::Require(client->AdvertiseKeys().ok());
      auto shares = client->ShareKeys(bytes);
      if (shares.ok()) {
        const auto dir = DecodeSecureMessage(bytes);
        frugal::fuzz::Require(dir.ok() && dir->header.party == 0 && dir->header.round == cfg.round);
        const auto out = DecodeSecureMessage(*shares);
        frugal::fuzz::Require(out.ok() && out->shares.size() == dir->directory.size());
      }
      break;
    }
    default:
      break;
  }
  return 0;
}

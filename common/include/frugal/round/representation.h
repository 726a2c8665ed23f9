// Representativeness of a run: each region's and each device class's share of
// participations against its share of the fleet's clients and of their data,
// so that a saving bought by ignoring part of the fleet shows. No I/O.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/energy/ledger.h"

namespace frugal {

// Clients of the fleet as the shares count them: `clients` clients of one
// device class and region holding `examples` examples between them.
struct FleetMember {
  std::string_view device, region;
  uint64_t examples = 0;
  uint64_t clients = 1;
};

// One region or device class. Shares are fractions of the fleet's clients, of
// its examples, and of the run's participations (ledger rows whose update
// counted) and selections (every ledger row); 0 when the total is 0.
struct ShareRow {
  std::string kind;  // "region" or "device"
  std::string id;
  uint64_t clients = 0, examples = 0, participations = 0, selections = 0;
  double client_share = 0, data_share = 0, participation_share = 0, selection_share = 0;
  // participation_share / client_share (0 when the group has no clients).
  double ratio() const { return client_share > 0 ? participation_share / client_share : 0; }
};

// Rows for every region, then every device class, named by the fleet or the
// ledger, each kind sorted by id. Ledger ids are matched ASCII case-insensitively.
std::vector<ShareRow> RepresentationShares(std::span<const FleetMember> fleet, std::span<const LedgerRow> ledger);

// The lowest participation/client ratio among the regions with clients, and
// its region ("" and 0 when there is none).
std::pair<std::string, double> LowestRegionRatio(std::span<const ShareRow> rows);

}  // namespace frugal

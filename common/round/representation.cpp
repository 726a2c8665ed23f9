#include "frugal/round/representation.h"

#include <cctype>
#include <map>

namespace frugal {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct Group {
  std::string id;  // first spelling seen
  uint64_t clients = 0, examples = 0, participations = 0, selections = 0;
};

void AddRows(std::string_view kind, std::map<std::string, Group>& groups, uint64_t clients, uint64_t examples,
             uint64_t participations, uint64_t selections, std::vector<ShareRow>& out) {
  auto share = [](uint64_t part, uint64_t total) {
    return total > 0 ? static_cast<double>(part) / static_cast<double>(total) : 0.0;
  };
  for (const auto& [key, g] : groups) {
    ShareRow r;
    r.kind = std::string(kind);
    r.id = g.id;
    r.clients = g.clients;
    r.examples = g.examples;
    r.participations = g.participations;
    r.selections = g.selections;
    r.client_share = share(g.clients, clients);
    r.data_share = share(g.examples, examples);
    r.participation_share = share(g.participations, participations);
    r.selection_share = share(g.selections, selections);
    out.push_back(std::move(r));
  }
}

}  // namespace

std::vector<ShareRow> RepresentationShares(std::span<const FleetMember> fleet, std::span<const LedgerRow> ledger) {
  std::map<std::string, Group> regions, devices;
  auto at = [](std::map<std::string, Group>& m, std::string_view id) -> Group& {
    Group& g = m[Lower(id)];
    if (g.id.empty()) g.id = std::string(id);
    return g;
  };
  uint64_t clients = 0, examples = 0, participations = 0;
  for (const FleetMember& f : fleet) {
    for (Group* g : {&at(regions, f.region), &at(devices, f.device)}) {
      g->clients += f.clients;
      g->examples += f.examples;
    }
    clients += f.clients;
    examples += f.examples;
  }
  uint64_t selections = 0;
  for (const LedgerRow& row : ledger) {
    if (row.outcome == ClientOutcome::kEvaluated) continue;  // federated evaluation, not training
    ++selections;
    const bool counted = row.outcome == ClientOutcome::kParticipated;
    participations += counted ? 1 : 0;
    for (Group* g : {&at(regions, row.region), &at(devices, row.device)}) {
      ++g->selections;
      g->participations += counted ? 1 : 0;
    }
  }
  std::vector<ShareRow> out;
  AddRows("region", regions, clients, examples, participations, selections, out);
  AddRows("device", devices, clients, examples, participations, selections, out);
  return out;
}

std::pair<std::string, double> LowestRegionRatio(std::span<const ShareRow> rows) {
  std::pair<std::string, double> low{"", 0};
  bool any = false;
  for (const ShareRow& r : rows) {
    if (r.kind != "region" || r.clients == 0) continue;
    if (!any || r.ratio() < low.second) low = {r.id, r.ratio()};
    any = true;
  }
  return low;
}

}  // namespace frugal

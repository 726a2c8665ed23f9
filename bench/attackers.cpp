// Prints the clients frugal-sim makes malicious (attack.fraction, chosen by
// the seed; sim/attack.h, ChooseAttackers), one line per seed: the seed, then
// the client ids. bench/alie_rounds.py joins them with a run's ledger.csv to
// count the attackers of each round (docs/benchmarks.md, robust rounds,
// "Fifteenth session").
//   frugal-attackers POPULATION FRACTION SEED...
#include <cstdio>
#include <cstdlib>
#include <string>

#include "frugal/core/streams.h"
#include "frugal/sim/attack.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s POPULATION FRACTION SEED...\n", argv[0]);
    return 2;
  }
  char* end = nullptr;
  const unsigned long population = std::strtoul(argv[1], &end, 10);
  if (*end != '\0' || population == 0) {
    std::fprintf(stderr, "POPULATION must be a positive integer, got '%s'\n", argv[1]);
    return 2;
  }
  const double fraction = std::strtod(argv[2], &end);
  if (*end != '\0' || !(fraction >= 0 && fraction <= 1)) {
    std::fprintf(stderr, "FRACTION must be in [0, 1], got '%s'\n", argv[2]);
    return 2;
  }
  for (int a = 3; a < argc; ++a) {
    const unsigned long long seed = std::strtoull(argv[a], &end, 10);
    if (*end != '\0') {
      std::fprintf(stderr, "SEED must be an integer, got '%s'\n", argv[a]);
      return 2;
    }
    const auto mask = frugal::sim::ChooseAttackers(population, fraction,
                                                   frugal::StreamSeed(seed, frugal::SeedStream::kAttack));
    std::string line = std::to_string(seed);
    for (size_t i = 0; i < mask.size(); ++i) {
      if (mask[i]) line += ' ' + std::to_string(i);
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

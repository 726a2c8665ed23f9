// `frugal-sim accountant`: the privacy spent by a DP-FedAvg run (or the noise
// a run needs for a target ε), as one JSON object on stdout.
#pragma once

namespace frugal::sim {

// argv[0] is "accountant". Returns the process exit code: 0 on success, 2 for a
// missing or invalid argument (message on stderr), 1 when no bound exists.
int RunAccountantCommand(int argc, char** argv);

}  // namespace frugal::sim

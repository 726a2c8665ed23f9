// The coordinator service: a TLS 1.3 mutual-auth Listener, one Session per
// connection (enable_shared_from_this, a strand, do_read/on_read, a bounded
// write queue), a SessionManager that owns them and stops them all on SIGINT
// or SIGTERM, and the loopback status HTTP endpoint (/metrics, /status).
// Sessions only move bytes; protocol decisions are the RoundDriver's.
#pragma once

#include <memory>
#include <string>

#include "frugal/coordinator/config.h"
#include "frugal/core/status.h"

namespace frugal::coordinator {

// Loads the data, profiles and store, resumes or creates the run, serves
// until every configured round is committed (or a signal arrives), then says
// Bye to the clients and returns. Errors: bad certificates or key, a port in
// use, a store that cannot be opened, or a fatal driver error.
Status RunCoordinator(const CoordinatorConfig& config);

}  // namespace frugal::coordinator

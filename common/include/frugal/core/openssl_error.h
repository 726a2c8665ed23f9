// OpenSSL's per-thread error queue as Frugal's errors: one formatting for every
// module that calls OpenSSL (the core's privacy layer, the coordinator's CA and
// its TLS sessions), converted at the edge of the call that failed.
#pragma once

#include <string>
#include <string_view>

#include "frugal/core/status.h"

namespace frugal {

// The text of the earliest error OpenSSL queued on this thread (e.g.
// "error:1E08010C:DECODER routines::unsupported"), or "" when none is queued.
// Clears the queue, so a later failure never reports a stale error.
std::string TakeOpenSslError();

// InternalError("<what>: <TakeOpenSslError()>", or "<what>: no OpenSSL error
// queued"): for a call into OpenSSL that failed where the input was ours.
Error OpenSslFailure(std::string_view what);

}  // namespace frugal

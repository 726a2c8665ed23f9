// The run's certificate authority, built on OpenSSL's C API: one EC P-256 CA,
// a server certificate for localhost/127.0.0.1, and device certificates whose
// CN is the client's identity. Files are PEM under one directory.
#pragma once

#include <cstddef>
#include <string>

#include "frugal/core/status.h"

namespace frugal::coordinator {

// Paths of the files `ca init` and `ca issue` write under a directory.
struct CaPaths {
  std::string ca_cert, ca_key, server_cert, server_key;
  static CaPaths In(const std::string& dir);
  // <dir>/clients/<name>.crt and .key
  static std::string ClientCert(const std::string& dir, const std::string& name);
  static std::string ClientKey(const std::string& dir, const std::string& name);
  // <dir>/clients/<name>.idc: the compact identity credential (frugal/privacy/identity.h)
  static std::string ClientIdentity(const std::string& dir, const std::string& name);
};

// Creates DIR (if needed) with ca.key, ca.crt (self-signed CA, 10 years),
// server.key and server.crt (CN "frugal-coordinator", SAN DNS:localhost and
// IP:127.0.0.1, signed by the CA). AlreadyExists if ca.key is already there.
// Keys are written 0600.
Status InitCa(const std::string& dir);

// Issues <dir>/clients/<name>.{key,crt,idc}: a fresh P-256 key, a certificate
// with CN = name signed by the CA in DIR (client-auth usage), and the CA's
// compact identity credential for the same name and key (secure.identity). InvalidArgument
// for a name that is empty, longer than 64 bytes, or not [A-Za-z0-9._-];
// NotFound if the CA files are missing; AlreadyExists if the client exists.
Status IssueClientCert(const std::string& dir, const std::string& name);

// Issues `count` clients named <prefix>0 .. <prefix>(count-1), as IssueClientCert
// does for each, reading the CA once (for benchmarks and fleets: 10,000 take
// seconds, not a process each). Stops at the first error, naming the client;
// the ones issued before it stay.
Status IssueClientCerts(const std::string& dir, const std::string& prefix, size_t count);

// Writes <dir>/clients/<name>.idc for a client issued before credentials
// were (its key and the CA's read from DIR). AlreadyExists if it is there,
// NotFound without the client's key or the CA.
Status IssueIdentityCredential(const std::string& dir, const std::string& name);

// True if `name` may be a client identity (see IssueClientCert).
bool ValidClientName(const std::string& name);

}  // namespace frugal::coordinator

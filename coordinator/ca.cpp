#include "frugal/coordinator/ca.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "frugal/core/openssl_error.h"
#include "frugal/privacy/identity.h"

namespace frugal::coordinator {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct FileClose {
  void operator()(FILE* f) const { std::fclose(f); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using FilePtr = std::unique_ptr<FILE, FileClose>;

// OpenSSL's queued error, converted at the edge.
Result<PkeyPtr> NewP256Key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslFailure("generating a P-256 key");
  return key;
}

Status WriteKey(const std::string& path, EVP_PKEY* key) {
  // Created 0600 so the private key is never readable by others, even briefly.
  const mode_t old = umask(077);
  FilePtr f(std::fopen(path.c_str(), "wx"));
  umask(old);
  if (!f) return UnavailableError("cannot create " + path);
  if (PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslFailure("writing " + path);
  }
  return OkStatus();
}

Status WriteCert(const std::string& path, X509* cert) {
  FilePtr f(std::fopen(path.c_str(), "wx"));
  if (!f) return UnavailableError("cannot create " + path);
  if (PEM_write_X509(f.get(), cert) != 1) return OpenSslFailure("writing " + path);
  return OkStatus();
}

Result<PkeyPtr> ReadKey(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return NotFoundError("cannot open " + path + " (run `frugal-coordinator ca init` first)");
  PkeyPtr key(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslFailure("reading the key " + path);
  return key;
}

Result<X509Ptr> ReadCert(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return NotFoundError("cannot open " + path + " (run `frugal-coordinator ca init` first)");
  X509Ptr cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return OpenSslFailure("reading the certificate " + path);
  return cert;
}

Status AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) return OpenSslFailure(std::string("adding extension ") + value);
  return OkStatus();
}

// A certificate for `key` named `cn`, signed by issuer_key (self-signed when issuer is null).
Result<X509Ptr> MakeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key, long days,
                         const std::vector<std::pair<int, const char*>>& exts) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslFailure("allocating a certificate");
  X509_set_version(cert.get(), 2);
  // A random 127-bit serial, as RFC 5280 recommends for uniqueness.
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslFailure("making a serial number");
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * days);
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslFailure("setting the public key");
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Frugal"), -1, -1, 0);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                 -1, 0) != 1) {
    return OpenSslFailure("setting CN " + cn);
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1) return OpenSslFailure("setting the issuer");
  for (const auto& [nid, value] : exts) FRUGAL_RETURN_IF_ERROR(AddExt(cert.get(), signer, nid, value));
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return OpenSslFailure("signing the certificate for " + cn);
  }
  return cert;
}

}  // namespace

CaPaths CaPaths::In(const std::string& dir) {
  const std::filesystem::path d(dir);
  return {(d / "ca.crt").string(), (d / "ca.key").string(), (d / "server.crt").string(),
          (d / "server.key").string()};
}

std::string CaPaths::ClientCert(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / "clients" / (name + ".crt")).string();
}
std::string CaPaths::ClientKey(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / "clients" / (name + ".key")).string();
}
std::string CaPaths::ClientIdentity(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / "clients" / (name + ".idc")).string();
}

bool ValidClientName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Status InitCa(const std::string& dir) {
  const CaPaths p = CaPaths::In(dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return UnavailableError("cannot create " + dir + ": " + ec.message());
  if (std::filesystem::exists(p.ca_key)) return Error(ErrorCode::kAlreadyExists, p.ca_key + " already exists");

  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr ca_key, NewP256Key());
  FRUGAL_ASSIGN_OR_RETURN(X509Ptr ca, MakeCert(ca_key.get(), "Frugal CA", nullptr, nullptr, 3650,
                                               {{NID_basic_constraints, "critical,CA:TRUE"},
                                                {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                                {NID_subject_key_identifier, "hash"}}));
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr server_key, NewP256Key());
  FRUGAL_ASSIGN_OR_RETURN(X509Ptr server, MakeCert(server_key.get(), "frugal-coordinator", ca.get(), ca_key.get(),
                                                   825,
                                                   {{NID_basic_constraints, "critical,CA:FALSE"},
                                                    {NID_key_usage, "critical,digitalSignature"},
                                                    {NID_ext_key_usage, "serverAuth"},
                                                    {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"}}));
  FRUGAL_RETURN_IF_ERROR(WriteKey(p.ca_key, ca_key.get()));
  FRUGAL_RETURN_IF_ERROR(WriteCert(p.ca_cert, ca.get()));
  FRUGAL_RETURN_IF_ERROR(WriteKey(p.server_key, server_key.get()));
  FRUGAL_RETURN_IF_ERROR(WriteCert(p.server_cert, server.get()));
  return OkStatus();
}

namespace {

Result<privacy::P256Key> AsP256Key(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslFailure("exporting a key");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(len));
  auto k = privacy::P256Key::FromPem(pem);
  OPENSSL_cleanse(pem.data(), pem.size());
  return k;
}

// <dir>/clients/<name>.idc: the compact identity credential of the client's
// key (frugal/privacy/identity.h), what secure.identity = "ca" relays each round.
Status WriteIdentityCredential(const std::string& path, const std::string& name, EVP_PKEY* key, EVP_PKEY* ca_key) {
  FRUGAL_ASSIGN_OR_RETURN(privacy::P256Key ca, AsP256Key(ca_key));
  FRUGAL_ASSIGN_OR_RETURN(privacy::P256Key client, AsP256Key(key));
  FRUGAL_ASSIGN_OR_RETURN(privacy::IdentityCredential credential,
                          privacy::IssueIdentityCredential(ca, name, client.public_key()));
  const std::vector<uint8_t> bytes = privacy::EncodeIdentityCredentialFile(credential);
  FilePtr f(std::fopen(path.c_str(), "wbx"));
  if (!f) return UnavailableError("cannot create " + path);
  if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) return UnavailableError("cannot write " + path);
  return OkStatus();
}

// Writes <dir>/clients/<name>.{key,crt,idc} signed by `ca`.
Status IssueWith(const std::string& dir, const std::string& name, X509* ca, EVP_PKEY* ca_key) {
  if (!ValidClientName(name)) {
    return InvalidArgumentError("client name '" + name + "' must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  const std::string key_path = CaPaths::ClientKey(dir, name), cert_path = CaPaths::ClientCert(dir, name);
  if (std::filesystem::exists(key_path)) return Error(ErrorCode::kAlreadyExists, "client " + name + " already exists");
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr key, NewP256Key());
  FRUGAL_ASSIGN_OR_RETURN(X509Ptr cert, MakeCert(key.get(), name, ca, ca_key, 825,
                                                 {{NID_basic_constraints, "critical,CA:FALSE"},
                                                  {NID_key_usage, "critical,digitalSignature"},
                                                  {NID_ext_key_usage, "clientAuth"}}));
  FRUGAL_RETURN_IF_ERROR(WriteKey(key_path, key.get()));
  FRUGAL_RETURN_IF_ERROR(WriteCert(cert_path, cert.get()));
  return WriteIdentityCredential(CaPaths::ClientIdentity(dir, name), name, key.get(), ca_key);
}

Status CreateClientsDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "clients", ec);
  if (ec) return UnavailableError("cannot create " + dir + "/clients: " + ec.message());
  return OkStatus();
}

}  // namespace

Status IssueClientCert(const std::string& dir, const std::string& name) {
  if (!ValidClientName(name)) {
    return InvalidArgumentError("client name '" + name + "' must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  const CaPaths p = CaPaths::In(dir);
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr ca_key, ReadKey(p.ca_key));
  FRUGAL_ASSIGN_OR_RETURN(X509Ptr ca, ReadCert(p.ca_cert));
  FRUGAL_RETURN_IF_ERROR(CreateClientsDir(dir));
  return IssueWith(dir, name, ca.get(), ca_key.get());
}

Status IssueIdentityCredential(const std::string& dir, const std::string& name) {
  if (!ValidClientName(name)) {
    return InvalidArgumentError("client name '" + name + "' must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  const std::string path = CaPaths::ClientIdentity(dir, name);
  if (std::filesystem::exists(path)) return Error(ErrorCode::kAlreadyExists, path + " already exists");
  const CaPaths p = CaPaths::In(dir);
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr ca_key, ReadKey(p.ca_key));
  FilePtr f(std::fopen(CaPaths::ClientKey(dir, name).c_str(), "r"));
  if (!f) return NotFoundError("cannot open " + CaPaths::ClientKey(dir, name) + " (no client " + name + ")");
  PkeyPtr key(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslFailure("reading the key of client " + name);
  return WriteIdentityCredential(path, name, key.get(), ca_key.get());
}

Status IssueClientCerts(const std::string& dir, const std::string& prefix, size_t count) {
  // The longest name is checked before anything is written.
  if (count == 0) return InvalidArgumentError("--count must be at least 1");
  if (!ValidClientName(prefix + std::to_string(count - 1))) {
    return InvalidArgumentError("client names '" + prefix + "N' must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  const CaPaths p = CaPaths::In(dir);
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr ca_key, ReadKey(p.ca_key));
  FRUGAL_ASSIGN_OR_RETURN(X509Ptr ca, ReadCert(p.ca_cert));
  FRUGAL_RETURN_IF_ERROR(CreateClientsDir(dir));
  for (size_t i = 0; i < count; ++i) {
    FRUGAL_RETURN_IF_ERROR(IssueWith(dir, prefix + std::to_string(i), ca.get(), ca_key.get()));
  }
  return OkStatus();
}

}  // namespace frugal::coordinator

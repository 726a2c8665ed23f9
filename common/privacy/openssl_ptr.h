// Owners of the OpenSSL objects the privacy module makes (private to
// common/privacy): one deleter template instead of a struct per type in each
// file. A unique_ptr<T, OpenSslFree<F>> calls F on the pointer it holds.
#pragma once

#include <openssl/bn.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <memory>

namespace frugal::privacy {

template <auto Free>
struct OpenSslFree {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

using PkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslFree<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpenSslFree<EVP_PKEY_CTX_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OpenSslFree<EVP_CIPHER_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpenSslFree<EVP_MD_CTX_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, OpenSslFree<EVP_KDF_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, OpenSslFree<BIO_free>>;
using BnPtr = std::unique_ptr<BIGNUM, OpenSslFree<BN_clear_free>>;  // cleared: it may hold a private scalar
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OpenSslFree<ECDSA_SIG_free>>;
using EcGroupPtr = std::unique_ptr<EC_GROUP, OpenSslFree<EC_GROUP_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, OpenSslFree<EC_POINT_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslFree<X509_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OpenSslFree<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, OpenSslFree<OSSL_PARAM_free>>;

// The deleter a shared_ptr<EVP_PKEY> takes over from a PkeyPtr.
inline constexpr OpenSslFree<EVP_PKEY_free> kPkeyFree{};

}  // namespace frugal::privacy

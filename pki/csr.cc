#include "pki/csr.h"

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#include <openssl/core_names.h>
#include <openssl/params.h>
#endif
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "pki/der.h"
#include "pki/pem.h"
#include "pki/ssl_error.h"

namespace relay::pki {
namespace {

const EVP_MD* DigestFor(KeyType type) {
  return type == KeyType::kEcdsaP384 ? EVP_sha384() : EVP_sha256();
}

UniquePtr<GENERAL_NAMES> DnsNames(absl::string_view dns_name) {
  UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
  ASN1_IA5STRING* value = ASN1_IA5STRING_new();
  if (!names || !name || value == nullptr ||
      !ASN1_STRING_set(value, dns_name.data(), static_cast<int>(dns_name.size()))) {
    ASN1_STRING_free(value);
    return nullptr;
  }
  GENERAL_NAME_set0_value(name.get(), GEN_DNS, value);  // takes ownership of value
  if (!sk_GENERAL_NAME_push(names.get(), name.get())) return nullptr;
  name.release();  // now owned by names
  return names;
}

// The identity a CSR asks for: exactly one SAN, a DNS label, equal to the CN if there
// is one; and no request for CA:TRUE.
absl::StatusOr<std::string> RequestedCluster(const X509_NAME* subject,
                                             const STACK_OF(X509_EXTENSION)* extensions) {
  UniquePtr<GENERAL_NAMES> names;
  int extension_count = extensions == nullptr ? 0 : static_cast<int>(sk_X509_EXTENSION_num(extensions));
  for (int i = 0; i < extension_count; ++i) {
    X509_EXTENSION* extension = sk_X509_EXTENSION_value(extensions, i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(extension));
    if (nid == NID_basic_constraints) {
      UniquePtr<BASIC_CONSTRAINTS> constraints(
          static_cast<BASIC_CONSTRAINTS*>(X509V3_EXT_d2i(extension)));
      if (!constraints) {
        return SslError(absl::StatusCode::kInvalidArgument,
                        "CSR has an unreadable basicConstraints extension");
      }
      if (constraints->ca) {
        return absl::InvalidArgumentError(
            "CSR asks for a CA certificate (basicConstraints CA:TRUE): agents get client "
            "certificates only");
      }
    } else if (nid == NID_subject_alt_name) {
      if (names) return absl::InvalidArgumentError("CSR has two subjectAltName extensions");
      names.reset(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(extension)));
      if (!names) {
        return SslError(absl::StatusCode::kInvalidArgument,
                        "CSR has an unreadable subjectAltName extension");
      }
    }
  }
  int count = names ? static_cast<int>(sk_GENERAL_NAME_num(names.get())) : 0;
  if (count != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR must name exactly one subject alternative name, the cluster's DNS name; it has ",
        count));
  }
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), 0);
  if (name->type != GEN_DNS) {
    return absl::InvalidArgumentError(
        "CSR's subject alternative name is not a DNS name: it must be the cluster name");
  }
  std::string cluster(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                      static_cast<size_t>(ASN1_STRING_length(name->d.dNSName)));
  RETURN_IF_ERROR(ValidateClusterName(cluster, "CSR's DNS name"));

  X509_NAME* mutable_subject = const_cast<X509_NAME*>(subject);
  int cn_index = X509_NAME_get_index_by_NID(mutable_subject, NID_commonName, -1);
  if (cn_index >= 0) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(mutable_subject, cn_index));
    absl::string_view cn_text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
                              static_cast<size_t>(ASN1_STRING_length(cn)));
    if (cn_text != cluster) {
      return absl::InvalidArgumentError(absl::StrCat("CSR's common name \"", cn_text.substr(0, 64),
                                                     "\" differs from its DNS name \"", cluster, "\""));
    }
  }
  return cluster;
}

// The public key of a SubjectPublicKeyInfo (`der`, split by SplitCsr into `parts`). For
// P-256 under OpenSSL 3 the point goes straight to EVP_PKEY_fromdata, skipping the
// provider decoder chain (der.h says why); everything else, and BoringSSL (whose parser
// is quick), uses d2i_PUBKEY.
absl::StatusOr<UniquePtr<EVP_PKEY>> PublicKeyFromInfo([[maybe_unused]] const internal::PublicKeyInfoParts& parts,
                                                      absl::string_view der) {
#if !defined(OPENSSL_IS_BORINGSSL)
  const ASN1_OBJECT* algorithm = nullptr;
  int parameter_type = 0;
  const void* parameter = nullptr;
  X509_ALGOR_get0(&algorithm, &parameter_type, &parameter, parts.algorithm.get());
  if (OBJ_obj2nid(algorithm) == NID_X9_62_id_ecPublicKey && parameter_type == V_ASN1_OBJECT &&
      OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(parameter)) == NID_X9_62_prime256v1) {
    // The curve's parameters are copied from a per-thread template: building them by
    // name (EVP_PKEY_fromdata with a group name) costs ~17 us per key, the copy ~5 us.
    thread_local UniquePtr<EVP_PKEY> p256_parameters = [] {
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                           const_cast<char*>(SN_X9_62_prime256v1), 0),
          OSSL_PARAM_construct_end(),
      };
      UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
      EVP_PKEY* parameters = nullptr;
      if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
          EVP_PKEY_fromdata(ctx.get(), &parameters, EVP_PKEY_KEY_PARAMETERS, params) != 1) {
        ClearSslErrors();
        return UniquePtr<EVP_PKEY>();
      }
      return UniquePtr<EVP_PKEY>(parameters);
    }();
    UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
    if (!p256_parameters || !key || EVP_PKEY_copy_parameters(key.get(), p256_parameters.get()) != 1) {
      return SslError(absl::StatusCode::kInternal, "preparing a P-256 key");
    }
    // Decoding the point checks that it lies on the curve.
    if (EVP_PKEY_set1_encoded_public_key(key.get(), ASN1_STRING_get0_data(parts.public_key.get()),
                                         static_cast<size_t>(ASN1_STRING_length(parts.public_key.get()))) != 1) {
      return SslError(absl::StatusCode::kInvalidArgument,
                      "CSR's P-256 public key is not a valid point on the curve");
    }
    return key;
  }
#endif
  const unsigned char* cursor = reinterpret_cast<const unsigned char*>(der.data());
  UniquePtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &cursor, static_cast<long>(der.size())));
  if (!key) return SslError(absl::StatusCode::kInvalidArgument, "CSR carries no usable public key");
  return key;
}

absl::Status VerifySignature(const internal::CsrParts& parts, EVP_PKEY* key) {
  const ASN1_OBJECT* algorithm = nullptr;
  X509_ALGOR_get0(&algorithm, nullptr, nullptr, parts.signature_algorithm.get());
  int digest_nid = NID_undef;
  int key_nid = NID_undef;
  if (!OBJ_find_sigid_algs(OBJ_obj2nid(algorithm), &digest_nid, &key_nid) ||
      (digest_nid != NID_sha256 && digest_nid != NID_sha384 && digest_nid != NID_sha512)) {
    ClearSslErrors();
    return absl::InvalidArgumentError(
        "CSR is signed with an unsupported algorithm: use ECDSA or RSA (PKCS#1 v1.5) with "
        "SHA-256, SHA-384 or SHA-512");
  }
  if (key_nid != EVP_PKEY_id(key)) {
    return absl::InvalidArgumentError("CSR's signature algorithm does not match its key type");
  }
  UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  const EVP_MD* digest = EVP_get_digestbynid(digest_nid);
  if (!ctx || digest == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, digest, nullptr, key) != 1) {
    return SslError(absl::StatusCode::kInternal, "setting up CSR signature verification");
  }
  if (EVP_DigestVerify(ctx.get(), ASN1_STRING_get0_data(parts.signature.get()),
                       static_cast<size_t>(ASN1_STRING_length(parts.signature.get())),
                       reinterpret_cast<const unsigned char*>(parts.signed_info.data()),
                       parts.signed_info.size()) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "CSR signature does not verify: the request was altered or not signed "
                    "with the key it carries");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UniquePtr<X509_REQ>> CreateCsr(const EVP_PKEY* key, absl::string_view cluster) {
  RETURN_IF_ERROR(ValidateClusterName(cluster));
  ASSIGN_OR_RETURN(KeyType type, CheckKeyPolicy(key));
  UniquePtr<X509_REQ> csr(X509_REQ_new());
  UniquePtr<X509_NAME> subject(X509_NAME_new());
  UniquePtr<GENERAL_NAMES> names = DnsNames(cluster);
  UniquePtr<STACK_OF(X509_EXTENSION)> extensions(sk_X509_EXTENSION_new_null());
  if (!csr || !subject || !names || !extensions) {
    return SslError(absl::StatusCode::kInternal, "allocating a CSR");
  }
  UniquePtr<X509_EXTENSION> san(
      static_cast<X509_EXTENSION*>(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get())));
  if (!san || !sk_X509_EXTENSION_push(extensions.get(), san.get())) {
    return SslError(absl::StatusCode::kInternal, "encoding the CSR's subject alternative name");
  }
  san.release();  // now owned by extensions
  if (!X509_REQ_set_version(csr.get(), 0) ||
      !X509_NAME_add_entry_by_NID(subject.get(), NID_commonName, MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(cluster.data()),
                                  static_cast<int>(cluster.size()), -1, 0) ||
      !X509_REQ_set_subject_name(csr.get(), subject.get()) ||
      !X509_REQ_set_pubkey(csr.get(), const_cast<EVP_PKEY*>(key)) ||
      !X509_REQ_add_extensions(csr.get(), extensions.get()) ||
      !X509_REQ_sign(csr.get(), const_cast<EVP_PKEY*>(key), DigestFor(type))) {
    return SslError(absl::StatusCode::kInternal, "building and signing the CSR");
  }
  return csr;
}

absl::StatusOr<std::string> CreateCsrPem(const EVP_PKEY* key, absl::string_view cluster) {
  ASSIGN_OR_RETURN(UniquePtr<X509_REQ> csr, CreateCsr(key, cluster));
  return CsrToPem(csr.get());
}

absl::StatusOr<VerifiedCsr> VerifyCsr(const X509_REQ* csr) {
  std::string bytes;
  if (!EncodeDer(i2d_X509_REQ, csr, &bytes)) {
    return SslError(absl::StatusCode::kInvalidArgument, "CSR cannot be encoded");
  }
  return VerifyCsrDer(bytes);
}

absl::StatusOr<VerifiedCsr> VerifyCsrDer(absl::string_view der) {
  if (der.size() > kMaxPemObjectBytes) {
    return absl::InvalidArgumentError(absl::StrCat("CSR is ", der.size(),
                                                   " bytes, over the limit of ", kMaxPemObjectBytes));
  }
  ASSIGN_OR_RETURN(internal::CsrParts parts, internal::SplitCsr(der));
  VerifiedCsr result;
  result.public_key_info = std::string(parts.public_key_info);
  ASSIGN_OR_RETURN(result.public_key, PublicKeyFromInfo(parts.public_key_parts, parts.public_key_info));
  ASSIGN_OR_RETURN(result.key_type, CheckKeyPolicy(result.public_key.get()));
  RETURN_IF_ERROR(VerifySignature(parts, result.public_key.get()));
  ASSIGN_OR_RETURN(result.cluster, RequestedCluster(parts.subject.get(), parts.extensions.get()));
  ClearSslErrors();
  return result;
}

absl::StatusOr<VerifiedCsr> ParseAndVerifyCsrPem(absl::string_view pem) {
  ASSIGN_OR_RETURN(std::string der, PemBlockToDer(pem, "CERTIFICATE REQUEST"));
  return VerifyCsrDer(der);
}

}  // namespace relay::pki

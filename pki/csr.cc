#include "pki/csr.h"

#include <openssl/obj_mac.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status_macros.h"
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

absl::StatusOr<VerifiedCsr> VerifyCsr(const X509_REQ* const_csr) {
  X509_REQ* csr = const_cast<X509_REQ*>(const_csr);  // OpenSSL 3 getters are not const-clean
  VerifiedCsr result;
  result.public_key.reset(X509_REQ_get_pubkey(csr));
  if (!result.public_key) {
    return SslError(absl::StatusCode::kInvalidArgument, "CSR carries no usable public key");
  }
  ASSIGN_OR_RETURN(result.key_type, CheckKeyPolicy(result.public_key.get()));
  if (X509_REQ_verify(csr, result.public_key.get()) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "CSR signature does not verify: the request was altered or not signed "
                    "with the key it carries");
  }

  UniquePtr<STACK_OF(X509_EXTENSION)> extensions(X509_REQ_get_extensions(csr));
  const GENERAL_NAMES* names = nullptr;
  UniquePtr<GENERAL_NAMES> owned_names;
  for (int i = 0; extensions && i < static_cast<int>(sk_X509_EXTENSION_num(extensions.get())); ++i) {
    X509_EXTENSION* extension = sk_X509_EXTENSION_value(extensions.get(), i);
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
      if (owned_names) {
        return absl::InvalidArgumentError("CSR has two subjectAltName extensions");
      }
      owned_names.reset(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(extension)));
      if (!owned_names) {
        return SslError(absl::StatusCode::kInvalidArgument,
                        "CSR has an unreadable subjectAltName extension");
      }
      names = owned_names.get();
    }
  }
  int count = names == nullptr ? 0 : static_cast<int>(sk_GENERAL_NAME_num(names));
  if (count != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR must name exactly one subject alternative name, the cluster's DNS name; it has ",
        count));
  }
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, 0);
  if (name->type != GEN_DNS) {
    return absl::InvalidArgumentError(
        "CSR's subject alternative name is not a DNS name: it must be the cluster name");
  }
  result.cluster.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                        static_cast<size_t>(ASN1_STRING_length(name->d.dNSName)));
  RETURN_IF_ERROR(ValidateClusterName(result.cluster, "CSR's DNS name"));

  const X509_NAME* subject = X509_REQ_get_subject_name(csr);
  int cn_index = X509_NAME_get_index_by_NID(const_cast<X509_NAME*>(subject), NID_commonName, -1);
  if (cn_index >= 0) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(
        X509_NAME_get_entry(const_cast<X509_NAME*>(subject), cn_index));
    absl::string_view cn_text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
                              static_cast<size_t>(ASN1_STRING_length(cn)));
    if (cn_text != result.cluster) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CSR's common name \"", cn_text.substr(0, 64), "\" differs from its DNS name \"",
          result.cluster, "\""));
    }
  }
  ClearSslErrors();
  return result;
}

absl::StatusOr<VerifiedCsr> ParseAndVerifyCsrPem(absl::string_view pem) {
  ASSIGN_OR_RETURN(UniquePtr<X509_REQ> csr, ParseCsrPem(pem));
  return VerifyCsr(csr.get());
}

}  // namespace relay::pki

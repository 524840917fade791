#include "pki/ca.h"

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/status_macros.h"
#include "pki/certificate.h"
#include "pki/client_assembly.h"
#include "pki/der.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "pki/ssl_error.h"

namespace relay::pki {
namespace {

constexpr int kX509Version3 = 2;

absl::Status Internal(absl::string_view what) {
  return SslError(absl::StatusCode::kInternal, what);
}

absl::StatusOr<std::string> KeyIdentifier(const X509_PUBKEY* public_key) {
  const unsigned char* bits = nullptr;
  int length = 0;
  if (X509_PUBKEY_get0_param(nullptr, &bits, &length, nullptr,
                             const_cast<X509_PUBKEY*>(public_key)) != 1) {
    return Internal("reading the public key for its identifier");
  }
  return internal::KeyIdentifierOfBits(bits, static_cast<size_t>(length));
}

absl::Status SetRandomSerial(X509* cert) {
  ASSIGN_OR_RETURN(std::string bytes, internal::RandomSerialBytes());
  UniquePtr<BIGNUM> bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                                 static_cast<int>(bytes.size()), nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert))) {
    return Internal("setting the serial number");
  }
  return absl::OkStatus();
}

absl::Status AddExtension(X509* cert, int nid, void* value, bool critical) {
  if (X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_REPLACE) != 1) {
    return Internal(absl::StrCat("adding extension ", OBJ_nid2sn(nid)));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniquePtr<X509_NAME>> BuildName(const CertificateSpec& spec) {
  UniquePtr<X509_NAME> name(X509_NAME_new());
  auto add = [&](int nid, const std::string& value) {
    return value.empty() ||
           X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!name || !add(NID_organizationName, spec.organization) ||
      !add(NID_commonName, spec.common_name)) {
    return Internal("building the subject name");
  }
  return name;
}

absl::Status AddSubjectAltNames(X509* cert, const CertificateSpec& spec) {
  if (spec.dns_names.empty() && spec.ip_addresses.empty()) return absl::OkStatus();
  UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  if (!names) return Internal("allocating subject alternative names");
  for (const std::string& dns : spec.dns_names) {
    UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    UniquePtr<ASN1_STRING> value(ASN1_IA5STRING_new());
    if (!name || !value ||
        !ASN1_STRING_set(value.get(), dns.data(), static_cast<int>(dns.size()))) {
      return Internal("encoding a DNS name");
    }
    GENERAL_NAME_set0_value(name.get(), GEN_DNS, value.release());  // name owns it
    if (!sk_GENERAL_NAME_push(names.get(), name.get())) return Internal("adding a DNS name");
    name.release();  // names owns it
  }
  for (const std::string& ip : spec.ip_addresses) {
    UniquePtr<ASN1_STRING> value(a2i_IPADDRESS(ip.c_str()));
    if (!value) {
      ClearSslErrors();
      return absl::InvalidArgumentError(
          absl::StrCat("\"", ip, "\" is not an IPv4 or IPv6 address"));
    }
    UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    if (!name) return Internal("allocating an IP name");
    GENERAL_NAME_set0_value(name.get(), GEN_IPADD, value.release());  // name owns it
    if (!sk_GENERAL_NAME_push(names.get(), name.get())) return Internal("adding an IP name");
    name.release();  // names owns it
  }
  return AddExtension(cert, NID_subject_alt_name, names.get(), false);
}

absl::Status AddUsageExtensions(X509* cert, const CertificateSpec& spec, bool rsa_key) {
  UniquePtr<BASIC_CONSTRAINTS> constraints(BASIC_CONSTRAINTS_new());
  if (!constraints) return Internal("allocating basicConstraints");
  constraints->ca = spec.usage == CertificateUsage::kCa ? 0xff : 0;
  if (spec.usage == CertificateUsage::kCa && spec.path_length >= 0) {
    constraints->pathlen = ASN1_INTEGER_new();
    if (!constraints->pathlen || !ASN1_INTEGER_set(constraints->pathlen, spec.path_length)) {
      return Internal("setting the path length");
    }
  }
  RETURN_IF_ERROR(AddExtension(cert, NID_basic_constraints, constraints.get(), true));

  UniquePtr<ASN1_STRING> key_usage(ASN1_BIT_STRING_new());
  if (!key_usage) return Internal("allocating keyUsage");
  std::vector<int> bits;
  const char* purpose = nullptr;
  switch (spec.usage) {
    case CertificateUsage::kCa:
      bits = {0, 5, 6};  // digitalSignature, keyCertSign, cRLSign
      break;
    case CertificateUsage::kServer:
      bits = {0};
      if (rsa_key) bits.push_back(2);  // keyEncipherment, for RSA key exchange
      purpose = SN_server_auth;
      break;
    case CertificateUsage::kClient:
      bits = {0};
      purpose = SN_client_auth;
      break;
  }
  for (int bit : bits) {
    if (!ASN1_BIT_STRING_set_bit(key_usage.get(), bit, 1)) return Internal("setting keyUsage");
  }
  RETURN_IF_ERROR(AddExtension(cert, NID_key_usage, key_usage.get(), true));

  if (purpose != nullptr) {
    UniquePtr<EXTENDED_KEY_USAGE> eku(sk_ASN1_OBJECT_new_null());
    UniquePtr<ASN1_OBJECT> oid(OBJ_txt2obj(purpose, 0));
    if (!eku || !oid || !sk_ASN1_OBJECT_push(eku.get(), oid.get())) {
      return Internal("building extKeyUsage");
    }
    oid.release();  // eku owns it
    RETURN_IF_ERROR(AddExtension(cert, NID_ext_key_usage, eku.get(), false));
  }
  return absl::OkStatus();
}

absl::Status AddKeyIdentifiers(X509* cert, absl::string_view authority_key_id) {
  ASSIGN_OR_RETURN(std::string subject_key_id, KeyIdentifier(X509_get_X509_PUBKEY(cert)));
  UniquePtr<ASN1_STRING> ski(ASN1_OCTET_STRING_new());
  if (!ski || !ASN1_OCTET_STRING_set(ski.get(),
                                     reinterpret_cast<const unsigned char*>(subject_key_id.data()),
                                     static_cast<int>(subject_key_id.size()))) {
    return Internal("encoding the subject key identifier");
  }
  RETURN_IF_ERROR(AddExtension(cert, NID_subject_key_identifier, ski.get(), false));

  // Self-signed: the authority is the subject itself.
  absl::string_view aki_bytes = authority_key_id.empty() ? subject_key_id : authority_key_id;
  UniquePtr<AUTHORITY_KEYID> aki(AUTHORITY_KEYID_new());
  if (!aki) return Internal("allocating the authority key identifier");
  aki->keyid = ASN1_OCTET_STRING_new();
  if (!aki->keyid ||
      !ASN1_OCTET_STRING_set(aki->keyid, reinterpret_cast<const unsigned char*>(aki_bytes.data()),
                             static_cast<int>(aki_bytes.size()))) {
    return Internal("encoding the authority key identifier");
  }
  return AddExtension(cert, NID_authority_key_identifier, aki.get(), false);
}

absl::Status CheckSpec(const CertificateSpec& spec) {
  if (spec.lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("certificate lifetime must be positive");
  }
  if (spec.common_name.empty() && spec.dns_names.empty() && spec.ip_addresses.empty()) {
    return absl::InvalidArgumentError("certificate needs a common name or a subject alternative name");
  }
  return absl::OkStatus();
}

// The subject's public key, as an EVP_PKEY or as SubjectPublicKeyInfo DER (der.h).
struct SubjectKey {
  const EVP_PKEY* key = nullptr;
  absl::string_view info_der;

  absl::Status SetOn(X509* cert) const {
    if (key != nullptr) {
      if (X509_set_pubkey(cert, const_cast<EVP_PKEY*>(key)) != 1) {
        return Internal("setting the certificate's public key");
      }
      return absl::OkStatus();
    }
    return internal::SetCertificatePublicKeyInfo(cert, info_der);
  }

  bool IsRsa(X509* cert) const {
    if (key != nullptr) return EVP_PKEY_id(key) == EVP_PKEY_RSA;
    ASN1_OBJECT* algorithm = nullptr;
    X509_PUBKEY_get0_param(&algorithm, nullptr, nullptr, nullptr, X509_get_X509_PUBKEY(cert));
    return OBJ_obj2nid(algorithm) == NID_rsaEncryption;
  }
};

// A certificate's validity: notBefore backdated for clock skew, notAfter after its
// lifetime but never after its issuer's (a leaf that outlives its CA would be refused
// by every verifier from that day on, while it still looks valid to its holder).
absl::StatusOr<std::pair<absl::Time, absl::Time>> Validity(absl::Time now, absl::Duration lifetime,
                                                           absl::Time issuer_not_after) {
  absl::Time not_before = now - Backdate(lifetime);
  absl::Time not_after = std::min(now + lifetime, issuer_not_after);
  if (not_after <= now) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the signing CA expires at ", FormatUtc(issuer_not_after),
        ": it can issue no certificate now; renew the signing CA"));
  }
  return std::make_pair(not_before, not_after);
}

// Builds and signs. `issuer_cert` null means self-signed with `signing_key`.
absl::StatusOr<UniquePtr<X509>> BuildAndSign(const SubjectKey& subject_key,
                                             const CertificateSpec& spec,
                                             const X509* issuer_cert,
                                             const EVP_PKEY* signing_key,
                                             absl::string_view authority_key_id,
                                             absl::Time issuer_not_after) {
  RETURN_IF_ERROR(CheckSpec(spec));
  UniquePtr<X509> cert(X509_new());
  ASSIGN_OR_RETURN(UniquePtr<X509_NAME> subject, BuildName(spec));
  ASSIGN_OR_RETURN(auto validity, Validity(spec.now, spec.lifetime, issuer_not_after));
  auto [not_before, not_after] = validity;
  if (!cert || !X509_set_version(cert.get(), kX509Version3) ||
      !X509_set_subject_name(cert.get(), subject.get()) ||
      !X509_set_issuer_name(cert.get(), issuer_cert ? X509_get_subject_name(issuer_cert)
                                                    : subject.get()) ||
      !ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after))) {
    return Internal("building the certificate");
  }
  RETURN_IF_ERROR(subject_key.SetOn(cert.get()));
  RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  RETURN_IF_ERROR(AddUsageExtensions(cert.get(), spec, subject_key.IsRsa(cert.get())));
  RETURN_IF_ERROR(AddSubjectAltNames(cert.get(), spec));
  RETURN_IF_ERROR(AddKeyIdentifiers(cert.get(), authority_key_id));
  if (X509_sign(cert.get(), const_cast<EVP_PKEY*>(signing_key), internal::SigningDigest(signing_key)) <= 0) {
    return Internal("signing the certificate");
  }
  return cert;
}

}  // namespace

absl::Duration Backdate(absl::Duration lifetime) {
  return std::min(absl::Minutes(5), lifetime / 10);
}

CertificateSpec RootCaSpec(absl::string_view common_name, absl::Time now,
                           absl::Duration lifetime) {
  CertificateSpec spec;
  spec.usage = CertificateUsage::kCa;
  spec.common_name = std::string(common_name);
  spec.organization = "relay";
  spec.now = now;
  spec.lifetime = lifetime;
  return spec;
}

CertificateSpec IntermediateCaSpec(absl::string_view common_name, absl::Time now,
                                   absl::Duration lifetime) {
  CertificateSpec spec = RootCaSpec(common_name, now, lifetime);
  spec.path_length = 0;  // signs leaves only
  return spec;
}

CertificateSpec ServerSpec(absl::string_view common_name, std::vector<std::string> dns_names,
                           std::vector<std::string> ip_addresses, absl::Time now,
                           absl::Duration lifetime) {
  CertificateSpec spec;
  spec.usage = CertificateUsage::kServer;
  spec.common_name = std::string(common_name);
  spec.dns_names = std::move(dns_names);
  spec.ip_addresses = std::move(ip_addresses);
  spec.now = now;
  spec.lifetime = lifetime;
  return spec;
}

CertificateSpec ClientSpec(absl::string_view cluster, absl::Time now, absl::Duration lifetime) {
  CertificateSpec spec;
  spec.usage = CertificateUsage::kClient;
  spec.common_name = std::string(cluster);
  spec.dns_names = {std::string(cluster)};
  spec.now = now;
  spec.lifetime = lifetime;
  return spec;
}

absl::StatusOr<UniquePtr<X509>> CreateSelfSignedCertificate(const EVP_PKEY* key,
                                                            const CertificateSpec& spec) {
  return BuildAndSign(SubjectKey{key, {}}, spec, nullptr, key, "", absl::InfiniteFuture());
}

absl::StatusOr<std::unique_ptr<Issuer>> Issuer::Create(UniquePtr<X509> cert,
                                                       UniquePtr<EVP_PKEY> key, absl::Time now) {
  RETURN_IF_ERROR(CheckCaCertificate(cert.get(), now, "signing CA certificate"));
  RETURN_IF_ERROR(CheckKeyMatchesCertificate(cert.get(), key.get()));
  ASSIGN_OR_RETURN(std::string key_id, KeyIdentifier(X509_get_X509_PUBKEY(cert.get())));
  ASSIGN_OR_RETURN(std::string pem, CertificateToPem(cert.get()));
  ASSIGN_OR_RETURN(CertificateInfo info, InspectCertificate(cert.get()));
  std::unique_ptr<Issuer> issuer(
      new Issuer(std::move(cert), std::move(key), std::move(key_id), std::move(pem), info.not_after));
  // One client certificate through the X509 path, for the assembler's constant parts.
  std::string own_key_info;
  if (!EncodeDer(i2d_X509_PUBKEY, X509_get_X509_PUBKEY(issuer->cert_.get()), &own_key_info)) {
    return Internal("encoding the CA's public key");
  }
  ASSIGN_OR_RETURN(UniquePtr<X509> sample,
                   issuer->IssueForPublicKeyInfo(own_key_info, ClientSpec("template", now, absl::Minutes(1))));
  ASSIGN_OR_RETURN(internal::ClientCertificateAssembler assembler,
                   internal::ClientCertificateAssembler::FromSample(sample.get()));
  issuer->assembler_ = std::make_unique<const internal::ClientCertificateAssembler>(std::move(assembler));
  return issuer;
}

absl::StatusOr<UniquePtr<X509>> Issuer::Issue(const EVP_PKEY* subject_key,
                                              const CertificateSpec& spec) const {
  return BuildAndSign(SubjectKey{subject_key, {}}, spec, cert_.get(), key_.get(), key_id_, not_after_);
}

absl::StatusOr<UniquePtr<X509>> Issuer::IssueForPublicKeyInfo(absl::string_view public_key_info,
                                                              const CertificateSpec& spec) const {
  return BuildAndSign(SubjectKey{nullptr, public_key_info}, spec, cert_.get(), key_.get(), key_id_, not_after_);
}

absl::StatusOr<Issuer::IssuedPem> Issuer::IssueClientFromCsrPem(absl::string_view csr_pem,
                                                                absl::string_view expected_cluster,
                                                                absl::Time now,
                                                                absl::Duration lifetime) const {
  ASSIGN_OR_RETURN(VerifiedCsr csr, ParseAndVerifyCsrPem(csr_pem));
  if (!expected_cluster.empty() && csr.cluster != expected_cluster) {
    return absl::InvalidArgumentError(absl::StrCat("CSR names cluster \"", csr.cluster,
                                                   "\" but the request is for \"",
                                                   expected_cluster, "\""));
  }
  return IssueClient(csr, now, lifetime);
}

absl::StatusOr<Issuer::IssuedPem> Issuer::IssueClient(const VerifiedCsr& csr, absl::Time now,
                                                      absl::Duration lifetime) const {
  RETURN_IF_ERROR(CheckSpec(ClientSpec(csr.cluster, now, lifetime)));
  ASSIGN_OR_RETURN(auto validity, Validity(now, lifetime, not_after_));
  ASSIGN_OR_RETURN(internal::ClientCertificateAssembler::Assembled assembled,
                   assembler_->Assemble(csr, validity.first, validity.second, key_.get()));
  IssuedPem issued;
  issued.certificate_pem = std::move(assembled.certificate_pem) + cert_pem_;
  issued.cluster = csr.cluster;
  issued.serial_hex = std::move(assembled.serial_hex);
  issued.not_after = validity.second;
  return issued;
}

namespace {

// The UTF-8 text of the first `nid` entry of `name`, or "".
std::string NameEntry(const X509_NAME* name, int nid) {
  const int index = X509_NAME_get_index_by_NID(const_cast<X509_NAME*>(name), nid, -1);
  if (index < 0) return "";
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(const_cast<X509_NAME*>(name), index));
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return "";
  std::string text(reinterpret_cast<char*>(utf8), static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return text;
}

}  // namespace

absl::StatusOr<UniquePtr<X509>> CrossCertify(const Issuer& issuer, const X509* ca, absl::Time now,
                                             absl::Duration lifetime) {
  RETURN_IF_ERROR(CheckCaCertificate(ca, now, "certificate to cross-certify"));
  const X509_NAME* subject = X509_get_subject_name(ca);
  CertificateSpec spec = RootCaSpec(NameEntry(subject, NID_commonName), now, lifetime);
  spec.organization = NameEntry(subject, NID_organizationName);
  UniquePtr<EVP_PKEY> key(X509_get_pubkey(const_cast<X509*>(ca)));
  if (!key) return Internal("reading the public key to cross-certify");
  ASSIGN_OR_RETURN(UniquePtr<X509> cross, issuer.Issue(key.get(), spec));
  if (X509_NAME_cmp(X509_get_subject_name(cross.get()), subject) != 0) {
    return absl::InvalidArgumentError(
        "the certificate's subject holds more than an organization and a common name: it cannot be cross-certified");
  }
  return cross;
}

}  // namespace relay::pki

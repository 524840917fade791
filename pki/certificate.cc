#include "pki/certificate.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "pki/der.h"
#include "pki/ssl_error.h"

namespace relay::pki {
namespace {

std::string NameToString(const X509_NAME* name) {
  UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), const_cast<X509_NAME*>(name), 0,
                                 XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    ClearSslErrors();
    return "";
  }
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return length > 0 ? std::string(data, static_cast<size_t>(length)) : "";
}

std::string CommonName(const X509_NAME* name) {
  int index = X509_NAME_get_index_by_NID(const_cast<X509_NAME*>(name), NID_commonName, -1);
  if (index < 0) return "";
  const ASN1_STRING* value =
      X509_NAME_ENTRY_get_data(X509_NAME_get_entry(const_cast<X509_NAME*>(name), index));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     static_cast<size_t>(ASN1_STRING_length(value)));
}

std::string IpToString(const ASN1_OCTET_STRING* ip) {
  char text[INET6_ADDRSTRLEN] = {0};
  int length = ASN1_STRING_length(ip);
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  if (length == 4) inet_ntop(AF_INET, data, text, sizeof(text));
  if (length == 16) inet_ntop(AF_INET6, data, text, sizeof(text));
  return text;
}

UniquePtr<STACK_OF(X509)> StackOf(const std::vector<const X509*>& certs) {
  UniquePtr<STACK_OF(X509)> stack(sk_X509_new_null());
  if (!stack) return nullptr;
  for (const X509* cert : certs) {
    X509* ref = const_cast<X509*>(cert);
    X509_up_ref(ref);
    if (!sk_X509_push(stack.get(), ref)) {
      X509_free(ref);
      return nullptr;
    }
  }
  return stack;
}

}  // namespace

double CertificateInfo::FractionRemaining(absl::Time now) const {
  absl::Duration lifetime = Lifetime();
  if (lifetime <= absl::ZeroDuration()) return 0;
  double fraction = absl::FDivDuration(not_after - now, lifetime);
  return std::clamp(fraction, 0.0, 1.0);
}

std::string FormatUtc(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> Asn1TimeToTime(const ASN1_TIME* time) {
  // ASN1_TIME_to_tm is missing in BoringSSL; a difference from the epoch works in both.
  UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (!epoch || ASN1_TIME_diff(&days, &seconds, epoch.get(), time) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument, "certificate has an invalid time field");
  }
  return absl::UnixEpoch() + absl::Hours(24) * days + absl::Seconds(seconds);
}

namespace {

// Uppercase hex without leading zeros; "" when it cannot be read.
std::string IntegerHex(const ASN1_INTEGER* integer) {
  UniquePtr<BIGNUM> bn(ASN1_INTEGER_to_BN(integer, nullptr));
  OpensslPtr<char> hex(bn ? BN_bn2hex(bn.get()) : nullptr);
  if (hex == nullptr) {
    ClearSslErrors();
    return "";
  }
  return absl::AsciiStrToUpper(hex.get());  // BoringSSL's BN_bn2hex writes lowercase
}

}  // namespace

std::string SerialHex(const X509* cert) { return IntegerHex(X509_get0_serialNumber(cert)); }

absl::StatusOr<CertificateInfo> InspectCertificate(const X509* cert) {
  CertificateInfo info;
  info.subject = NameToString(X509_get_subject_name(cert));
  info.issuer = NameToString(X509_get_issuer_name(cert));
  info.common_name = CommonName(X509_get_subject_name(cert));
  info.serial_hex = SerialHex(cert);
  ASSIGN_OR_RETURN(info.not_before, Asn1TimeToTime(X509_get0_notBefore(cert)));
  ASSIGN_OR_RETURN(info.not_after, Asn1TimeToTime(X509_get0_notAfter(cert)));
  info.is_ca = X509_check_ca(const_cast<X509*>(cert)) > 0;
  UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < static_cast<int>(sk_GENERAL_NAME_num(names.get())); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type == GEN_DNS) {
        const ASN1_STRING* dns = name->d.dNSName;
        info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                    static_cast<size_t>(ASN1_STRING_length(dns)));
      } else if (name->type == GEN_IPADD) {
        info.ip_addresses.push_back(IpToString(name->d.iPAddress));
      }
    }
  }
  ClearSslErrors();
  return info;
}

absl::Status CheckValidAt(const CertificateInfo& info, absl::Time now, absl::string_view what) {
  if (now < info.not_before) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is not valid until ", FormatUtc(info.not_before),
        " (now ", FormatUtc(now), "): check the clocks, or wait"));
  }
  if (now > info.not_after) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " expired on ", FormatUtc(info.not_after), ": replace it"));
  }
  return absl::OkStatus();
}

absl::Status CheckCaCertificate(const X509* cert, absl::Time now, absl::string_view what) {
  ASSIGN_OR_RETURN(CertificateInfo info, InspectCertificate(cert));
  if (!info.is_ca) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " (", info.subject, ") is not a CA certificate (no basicConstraints CA:TRUE)"));
  }
  return CheckValidAt(info, now, what);
}

absl::Status VerifyChain(const X509* leaf, const std::vector<const X509*>& intermediates,
                         const std::vector<const X509*>& roots, absl::Time at,
                         Purpose purpose) {
  if (roots.empty()) return absl::InvalidArgumentError("no root certificate to verify against");
  UniquePtr<X509_STORE> store(X509_STORE_new());
  if (!store) return SslError(absl::StatusCode::kInternal, "creating a certificate store");
  for (const X509* root : roots) {
    if (X509_STORE_add_cert(store.get(), const_cast<X509*>(root)) != 1) {
      ClearSslErrors();  // A duplicate root is harmless.
    }
  }
  UniquePtr<STACK_OF(X509)> untrusted = StackOf(intermediates);
  UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (!untrusted || !ctx ||
      X509_STORE_CTX_init(ctx.get(), store.get(), const_cast<X509*>(leaf), untrusted.get()) != 1) {
    return SslError(absl::StatusCode::kInternal, "setting up certificate verification");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(at));
  if (purpose != Purpose::kAny) {
    X509_STORE_CTX_set_purpose(ctx.get(), purpose == Purpose::kServerAuth
                                              ? X509_PURPOSE_SSL_SERVER
                                              : X509_PURPOSE_SSL_CLIENT);
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int error = X509_STORE_CTX_get_error(ctx.get());
    X509* culprit = X509_STORE_CTX_get_current_cert(ctx.get());
    ClearSslErrors();
    // Out of its validity is not "does not chain": say when, and by how much the clocks
    // would have to differ, since a clock that is behind is the usual cause.
    if (culprit != nullptr &&
        (error == X509_V_ERR_CERT_NOT_YET_VALID || error == X509_V_ERR_CERT_HAS_EXPIRED)) {
      std::string subject = NameToString(X509_get_subject_name(culprit));
      if (error == X509_V_ERR_CERT_NOT_YET_VALID) {
        absl::StatusOr<absl::Time> starts = Asn1TimeToTime(X509_get0_notBefore(culprit));
        if (starts.ok()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "certificate \"", subject, "\" is not yet valid: it starts at ", FormatUtc(*starts), ", ",
              absl::ToInt64Seconds(*starts - at), " s after this machine's clock (", FormatUtc(at),
              "): the clocks differ by about ", absl::ToInt64Seconds(*starts - at),
              " s; set both clocks right (NTP)"));
        }
      } else {
        absl::StatusOr<absl::Time> ended = Asn1TimeToTime(X509_get0_notAfter(culprit));
        if (ended.ok()) {
          return absl::FailedPreconditionError(absl::StrCat("certificate \"", subject, "\" expired at ",
                                                            FormatUtc(*ended), " (now ", FormatUtc(at), ")"));
        }
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("certificate chain does not verify against the root: ",
                     X509_verify_cert_error_string(error)));
  }
  return absl::OkStatus();
}

absl::Status CheckHost(const X509* cert, absl::string_view host) {
  std::string host_string(host);
  int matched;
  if (UniquePtr<ASN1_OCTET_STRING> ip{a2i_IPADDRESS(host_string.c_str())}) {
    matched = X509_check_ip(const_cast<X509*>(cert), ASN1_STRING_get0_data(ip.get()),
                            static_cast<size_t>(ASN1_STRING_length(ip.get())), 0);
  } else {
    // BoringSSL needs the real length here, not 0.
    matched = X509_check_host(const_cast<X509*>(cert), host_string.data(), host_string.size(),
                              0, nullptr);
  }
  ClearSslErrors();
  if (matched == 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "certificate is not valid for \"", host, "\": it names none of its subject alternative names"));
}

bool IsIssuedBy(const X509* issuer, const X509* cert) {
  bool issued = X509_check_issued(const_cast<X509*>(issuer), const_cast<X509*>(cert)) == X509_V_OK;
  if (issued) {
    UniquePtr<EVP_PKEY> key(X509_get_pubkey(const_cast<X509*>(issuer)));
    issued = key && X509_verify(const_cast<X509*>(cert), key.get()) == 1;
  }
  ClearSslErrors();
  return issued;
}

bool SameIssuer(const X509* a, const X509* b) {
  if (X509_NAME_cmp(X509_get_issuer_name(a), X509_get_issuer_name(b)) != 0) return false;
  auto key_id = [](const X509* cert) {
    UniquePtr<AUTHORITY_KEYID> aki(static_cast<AUTHORITY_KEYID*>(
        X509_get_ext_d2i(cert, NID_authority_key_identifier, nullptr, nullptr)));
    if (!aki || aki->keyid == nullptr) return std::string();
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(aki->keyid)),
                       static_cast<size_t>(ASN1_STRING_length(aki->keyid)));
  };
  return key_id(a) == key_id(b);
}

bool SameSubjectAndKey(const X509* a, const X509* b) {
  if (X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) != 0) return false;
  auto der = [](const X509* cert) {
    unsigned char* bytes = nullptr;
    const int length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &bytes);
    std::string out = length > 0 ? std::string(reinterpret_cast<char*>(bytes), static_cast<size_t>(length)) : "";
    OPENSSL_free(bytes);
    return out;
  };
  const std::string key_a = der(a);
  return !key_a.empty() && key_a == der(b);
}

absl::StatusOr<LeafSummary> SummarizeLeafPem(absl::string_view pem) {
  UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long length = 0;
  int read = bio ? PEM_read_bio(bio.get(), &name, &header, &data, &length) : 0;
  OpensslPtr<char> owned_name(name), owned_header(header);
  OpensslPtr<unsigned char> owned_data(data);
  if (read != 1) return SslError(absl::StatusCode::kInvalidArgument, "not a PEM certificate");
  std::string der(reinterpret_cast<const char*>(data), static_cast<size_t>(length));
  bool is_certificate = std::string(name) == "CERTIFICATE";
  if (!is_certificate) return absl::InvalidArgumentError("PEM block is not a CERTIFICATE");
  ASSIGN_OR_RETURN(internal::CertificateParts parts, internal::SplitCertificate(der));

  LeafSummary summary;
  summary.serial_hex = IntegerHex(parts.serial.get());
  if (summary.serial_hex.empty()) return absl::InvalidArgumentError("unreadable serial number");
  ASSIGN_OR_RETURN(summary.not_before, Asn1TimeToTime(parts.not_before.get()));
  ASSIGN_OR_RETURN(summary.not_after, Asn1TimeToTime(parts.not_after.get()));
  summary.issuer_der = std::string(parts.issuer);
  for (int i = 0; parts.extensions && i < sk_X509_EXTENSION_num(parts.extensions.get()); ++i) {
    X509_EXTENSION* extension = sk_X509_EXTENSION_value(parts.extensions.get(), i);
    switch (OBJ_obj2nid(X509_EXTENSION_get_object(extension))) {
      case NID_subject_alt_name: {
        UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(extension)));
        if (!names) return SslError(absl::StatusCode::kInvalidArgument, "unreadable subjectAltName");
        for (int j = 0; j < sk_GENERAL_NAME_num(names.get()); ++j) {
          const GENERAL_NAME* general = sk_GENERAL_NAME_value(names.get(), j);
          if (general->type != GEN_DNS) continue;
          summary.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(general->d.dNSName)),
                                         static_cast<size_t>(ASN1_STRING_length(general->d.dNSName)));
        }
        break;
      }
      case NID_ext_key_usage: {
        UniquePtr<EXTENDED_KEY_USAGE> usages(static_cast<EXTENDED_KEY_USAGE*>(X509V3_EXT_d2i(extension)));
        if (!usages) return SslError(absl::StatusCode::kInvalidArgument, "unreadable extKeyUsage");
        for (int j = 0; j < sk_ASN1_OBJECT_num(usages.get()); ++j) {
          if (OBJ_obj2nid(sk_ASN1_OBJECT_value(usages.get(), j)) == NID_client_auth) summary.client_auth = true;
        }
        break;
      }
      case NID_authority_key_identifier: {
        UniquePtr<AUTHORITY_KEYID> key_id(static_cast<AUTHORITY_KEYID*>(X509V3_EXT_d2i(extension)));
        if (!key_id) return SslError(absl::StatusCode::kInvalidArgument, "unreadable authorityKeyIdentifier");
        if (key_id->keyid != nullptr) {
          summary.authority_key_id.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(key_id->keyid)),
                                          static_cast<size_t>(ASN1_STRING_length(key_id->keyid)));
        }
        break;
      }
      default:
        break;
    }
  }
  ClearSslErrors();
  return summary;
}

bool NamesIssuer(const X509* issuer, const LeafSummary& leaf) {
  const unsigned char* subject_der = nullptr;
  size_t subject_length = 0;
  if (X509_NAME_get0_der(X509_get_subject_name(issuer), &subject_der, &subject_length) != 1) {
    ClearSslErrors();
    return false;
  }
  if (absl::string_view(reinterpret_cast<const char*>(subject_der), subject_length) != leaf.issuer_der) {
    return false;
  }
  // Both key identifiers present: they must agree. Otherwise the name decides.
  const ASN1_OCTET_STRING* subject_key_id = X509_get0_subject_key_id(const_cast<X509*>(issuer));
  if (subject_key_id == nullptr || leaf.authority_key_id.empty()) return true;
  return absl::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(subject_key_id)),
                           static_cast<size_t>(ASN1_STRING_length(subject_key_id))) == leaf.authority_key_id;
}

std::vector<const X509*> Borrow(const std::vector<UniquePtr<X509>>& certs) {
  std::vector<const X509*> out;
  out.reserve(certs.size());
  for (const auto& cert : certs) out.push_back(cert.get());
  return out;
}

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

}  // namespace relay::pki

#ifndef RELAY_PKI_CERTIFICATE_H_
#define RELAY_PKI_CERTIFICATE_H_

#include <string>
#include <vector>

#include <openssl/x509.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pki/ssl_types.h"

namespace relay::pki {

// What an operator (and the rotator) needs to know about a certificate.
struct CertificateInfo {
  std::string subject;  // RFC 2253, e.g. "CN=cluster-1"
  std::string issuer;
  std::string common_name;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::string serial_hex;  // uppercase hex, no leading zeros
  absl::Time not_before;
  absl::Time not_after;
  bool is_ca = false;

  absl::Duration Lifetime() const { return not_after - not_before; }
  // Share of the lifetime left at `now`, in [0, 1].
  double FractionRemaining(absl::Time now) const;
};

absl::StatusOr<CertificateInfo> InspectCertificate(const X509* cert);

absl::StatusOr<absl::Time> Asn1TimeToTime(const ASN1_TIME* time);

// OK when `now` is inside [notBefore, notAfter]; otherwise FAILED_PRECONDITION naming
// `what` and the date that was missed.
absl::Status CheckValidAt(const CertificateInfo& info, absl::Time now, absl::string_view what);

// OK when `cert` is a CA certificate (basicConstraints CA:TRUE) valid at `now`.
absl::Status CheckCaCertificate(const X509* cert, absl::Time now, absl::string_view what);

enum class Purpose { kAny, kServerAuth, kClientAuth };

// Verifies `leaf` up to one of `roots` through `intermediates`, at time `at`, for
// `purpose`. INVALID_ARGUMENT with the verifier's reason when it does not verify.
absl::Status VerifyChain(const X509* leaf, const std::vector<const X509*>& intermediates,
                         const std::vector<const X509*>& roots, absl::Time at,
                         Purpose purpose = Purpose::kAny);

// OK when `host` matches one of `cert`'s DNS SANs (or an IP SAN when it is an address).
absl::Status CheckHost(const X509* cert, absl::string_view host);

// True when `issuer` issued `cert`: names and key identifiers agree and `cert`'s
// signature verifies with `issuer`'s key.
bool IsIssuedBy(const X509* issuer, const X509* cert);

// True when `a` and `b` name the same subject with the same public key (a root and its
// cross-certificate).
bool SameSubjectAndKey(const X509* a, const X509* b);

// True when `a` and `b` name the same issuer (name and authority key identifier).
bool SameIssuer(const X509* a, const X509* b);

// What a leaf certificate says about whom it names and who issued it, read from its
// PEM without decoding its public key (the costly part of parsing a certificate with
// OpenSSL 3: ~100 us of the ~2.7 ms of server CPU an agent's connect took). Only for
// certificates whose chain is verified elsewhere, such as a peer's leaf after the TLS
// handshake: nothing here checks a signature.
struct LeafSummary {
  std::string serial_hex;  // as SerialHex
  absl::Time not_before;
  absl::Time not_after;
  std::vector<std::string> dns_names;
  bool client_auth = false;  // extKeyUsage lists clientAuth
  std::string issuer_der;    // DER of the issuer Name
  std::string authority_key_id;
};
absl::StatusOr<LeafSummary> SummarizeLeafPem(absl::string_view pem);

// True when `leaf` names `issuer` as its issuer: the issuer Name matches `issuer`'s
// subject and the authority key identifier its subject key identifier.
bool NamesIssuer(const X509* issuer, const LeafSummary& leaf);

// Borrowed views for the verify functions.
std::vector<const X509*> Borrow(const std::vector<UniquePtr<X509>>& certs);

// Lowercase hex of the SHA-256 of `bytes` (a trust bundle's digest).
std::string Sha256Hex(absl::string_view bytes);

// Uppercase hex of the serial number.
std::string SerialHex(const X509* cert);

std::string FormatUtc(absl::Time time);

}  // namespace relay::pki

#endif  // RELAY_PKI_CERTIFICATE_H_

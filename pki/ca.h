#ifndef RELAY_PKI_CA_H_
#define RELAY_PKI_CA_H_

#include <memory>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pki/client_assembly.h"
#include "pki/csr.h"
#include "pki/ssl_types.h"

namespace relay::pki {
namespace internal {
struct ClientCertificateTemplate;  // der.h
}  // namespace internal

enum class CertificateUsage {
  kCa,      // CA:TRUE, keyCertSign + cRLSign
  kServer,  // CA:FALSE, digitalSignature (+ keyEncipherment for RSA), serverAuth
  kClient,  // CA:FALSE, digitalSignature, clientAuth
};

struct CertificateSpec {
  CertificateUsage usage = CertificateUsage::kClient;
  std::string common_name;
  std::string organization;  // optional
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // textual IPv4 or IPv6
  int path_length = -1;                   // for CAs; -1 leaves it unlimited
  absl::Time now;                         // issuance time
  absl::Duration lifetime;
};

// How far notBefore is set back from `now`: min(5 min, lifetime / 10), so a machine
// whose clock is minutes behind the server's still accepts a new certificate (and a new
// root, at a rotation); short lifetimes stay sane. Kubernetes' CSR signer backdates by
// 5 minutes for the same reason.
absl::Duration Backdate(absl::Duration lifetime);

CertificateSpec RootCaSpec(absl::string_view common_name, absl::Time now, absl::Duration lifetime);
CertificateSpec IntermediateCaSpec(absl::string_view common_name, absl::Time now,
                                   absl::Duration lifetime);
CertificateSpec ServerSpec(absl::string_view common_name, std::vector<std::string> dns_names,
                           std::vector<std::string> ip_addresses, absl::Time now,
                           absl::Duration lifetime);
// DNS SAN = CN = cluster.
CertificateSpec ClientSpec(absl::string_view cluster, absl::Time now, absl::Duration lifetime);

// A self-signed certificate for `key` (the root CA).
absl::StatusOr<UniquePtr<X509>> CreateSelfSignedCertificate(const EVP_PKEY* key,
                                                            const CertificateSpec& spec);

class Issuer;

// A cross-certificate: `ca`'s subject name and public key, signed by `issuer`, a CA
// certificate with no path-length limit, valid from `now` for `lifetime` (never past
// the issuer). A verifier that trusts the issuer then trusts what `ca` signed, which
// lets a root rotation reach holders of the old root only. `ca`'s subject must be one
// this package makes (organization and common name).
absl::StatusOr<UniquePtr<X509>> CrossCertify(const Issuer& issuer, const X509* ca, absl::Time now,
                                             absl::Duration lifetime);

// A CA certificate and its key, ready to sign. Immutable once created; safe to share
// between threads.
class Issuer {
 public:
  // Checks that `cert` is a CA certificate valid at `now` and that `key` is its key.
  static absl::StatusOr<std::unique_ptr<Issuer>> Create(UniquePtr<X509> cert,
                                                        UniquePtr<EVP_PKEY> key, absl::Time now);

  // Every certificate it issues expires at the latest when this CA does; at or after
  // that moment it issues none (FAILED_PRECONDITION).
  //
  // A certificate for `subject_key` (only its public half is used) signed by this CA.
  absl::StatusOr<UniquePtr<X509>> Issue(const EVP_PKEY* subject_key,
                                        const CertificateSpec& spec) const;

  // The same for a key given as SubjectPublicKeyInfo DER (as a verified CSR holds it):
  // the key bytes are copied, never decoded.
  absl::StatusOr<UniquePtr<X509>> IssueForPublicKeyInfo(absl::string_view public_key_info,
                                                        const CertificateSpec& spec) const;

  // The whole registration path: parse and verify a CSR (csr.h), issue a client
  // certificate for the cluster it names, and return it as PEM. When
  // `expected_cluster` is not empty the CSR must name exactly that cluster.
  struct IssuedPem {
    std::string cluster;
    std::string certificate_pem;
    std::string serial_hex;
    absl::Time not_after;
  };
  absl::StatusOr<IssuedPem> IssueClientFromCsrPem(absl::string_view csr_pem,
                                                  absl::string_view expected_cluster,
                                                  absl::Time now,
                                                  absl::Duration lifetime) const;

  // A client certificate for a CSR that already passed VerifyCsr.
  absl::StatusOr<IssuedPem> IssueClient(const VerifiedCsr& csr, absl::Time now,
                                        absl::Duration lifetime) const;

  const X509* certificate() const { return cert_.get(); }
  const EVP_PKEY* key() const { return key_.get(); }
  const std::string& certificate_pem() const { return cert_pem_; }

 private:
  Issuer(UniquePtr<X509> cert, UniquePtr<EVP_PKEY> key, std::string key_id, std::string cert_pem,
         absl::Time not_after)
      : cert_(std::move(cert)),
        key_(std::move(key)),
        key_id_(std::move(key_id)),
        cert_pem_(std::move(cert_pem)),
        not_after_(not_after) {}

  UniquePtr<X509> cert_;
  UniquePtr<EVP_PKEY> key_;
  std::string key_id_;    // the CA's subject key identifier, for AKI
  std::string cert_pem_;  // appended to each leaf as its chain
  absl::Time not_after_;  // no certificate it issues outlives it
  // IssueClient's path (client_assembly.h): certificates from DER pieces, with the
  // constant parts cut at creation from one built through X509 objects.
  std::unique_ptr<const internal::ClientCertificateAssembler> assembler_;
};

}  // namespace relay::pki

#endif  // RELAY_PKI_CA_H_

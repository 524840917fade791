#ifndef RELAY_PKI_ROTATION_H_
#define RELAY_PKI_ROTATION_H_

#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pki/certificate.h"

namespace relay::pki {

// Returns a number in [0, 1) for a certificate. It must give the same answer for the
// same certificate, so its rotation time does not move when the rotator restarts.
using JitterSource = std::function<double(const CertificateInfo&)>;

// Default source: derived from a hash of the certificate's serial, which the CA drew
// at random, so certificates spread evenly and each keeps its own draw.
double SerialJitter(const CertificateInfo& info);

// DESIGN.md "Rotation time": renew_at = notAfter - ratio * lifetime - jitter, jitter
// uniform in [0, 0.1 * ratio * lifetime]. `ratio` is the share of the lifetime left
// when rotation starts and must be in (0, 1).
absl::StatusOr<absl::Time> RenewAt(const CertificateInfo& info, double ratio,
                                   const JitterSource& jitter = SerialJitter);

}  // namespace relay::pki

#endif  // RELAY_PKI_ROTATION_H_

#include "pki/rotation.h"

#include <openssl/sha.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace relay::pki {

double SerialJitter(const CertificateInfo& info) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(info.serial_hex.data()), info.serial_hex.size(),
         digest);
  uint64_t bits;
  std::memcpy(&bits, digest, sizeof(bits));
  return static_cast<double>(bits >> 11) / static_cast<double>(uint64_t{1} << 53);
}

absl::StatusOr<absl::Time> RenewAt(const CertificateInfo& info, double ratio,
                                   const JitterSource& jitter) {
  if (!(ratio > 0 && ratio < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rotation grace period ratio ", ratio, " is out of range: use a value in (0, 1), e.g. 0.5"));
  }
  absl::Duration lifetime = info.Lifetime();
  if (lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("certificate's notAfter is not after its notBefore");
  }
  double draw = jitter(info);
  if (!(draw >= 0 && draw < 1)) draw = 0;  // A broken source must not move renewal past expiry.
  absl::Duration grace = lifetime * ratio;
  return info.not_after - grace - grace * (0.1 * draw);
}

}  // namespace relay::pki

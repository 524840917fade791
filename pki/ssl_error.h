#ifndef RELAY_PKI_SSL_ERROR_H_
#define RELAY_PKI_SSL_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace relay::pki {

// Builds a status from `what` plus the drained OpenSSL/BoringSSL error queue (as Envoy's
// logSslErrorChain does), so the library's own reason reaches the operator. Always
// drains the queue, so a stale error never leaks into a later call.
absl::Status SslError(absl::StatusCode code, absl::string_view what);

// Empties the error queue without reporting it (after an expected failure).
void ClearSslErrors();

}  // namespace relay::pki

#endif  // RELAY_PKI_SSL_ERROR_H_

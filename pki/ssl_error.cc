#include "pki/ssl_error.h"

#include <openssl/err.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace relay::pki {

absl::Status SslError(absl::StatusCode code, absl::string_view what) {
  std::string message(what);
  const char* separator = " (";
  bool any = false;
  for (int n = 0; n < 8; ++n) {
    unsigned long error = ERR_get_error();
    if (error == 0) break;
    char buffer[256];
    ERR_error_string_n(error, buffer, sizeof(buffer));
    absl::StrAppend(&message, separator, buffer);
    separator = "; ";
    any = true;
  }
  if (any) message += ")";
  ClearSslErrors();
  return absl::Status(code, message);
}

void ClearSslErrors() { ERR_clear_error(); }

}  // namespace relay::pki

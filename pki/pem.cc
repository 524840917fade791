#include "pki/pem.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "pki/ssl_error.h"

namespace relay::pki {
namespace {

absl::Status CheckSize(absl::string_view pem, size_t limit, absl::string_view what) {
  if (pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty: expected PEM text"));
  }
  if (pem.size() > limit) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", pem.size(),
                                                   " bytes, over the limit of ", limit,
                                                   ": is this the right file?"));
  }
  return absl::OkStatus();
}

UniquePtr<BIO> ReadOnlyBio(absl::string_view pem) {
  return UniquePtr<BIO>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// True when only whitespace is left in `bio`.
bool OnlyWhitespaceLeft(BIO* bio) {
  char c;
  while (BIO_read(bio, &c, 1) == 1) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return false;
  }
  return true;
}

absl::StatusOr<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  if (length < 0 || data == nullptr) {
    return SslError(absl::StatusCode::kInternal, "reading PEM buffer");
  }
  return std::string(data, static_cast<size_t>(length));
}

template <typename Writer>
absl::StatusOr<std::string> WritePem(absl::string_view what, Writer write) {
  UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || !write(bio.get())) {
    return SslError(absl::StatusCode::kInternal, absl::StrCat("encoding ", what, " as PEM"));
  }
  return BioContents(bio.get());
}

}  // namespace

absl::StatusOr<UniquePtr<EVP_PKEY>> ParsePrivateKeyPem(absl::string_view pem) {
  RETURN_IF_ERROR(CheckSize(pem, kMaxPemObjectBytes, "private key"));
  // Every label OpenSSL reads as a key ends in "PRIVATE KEY". Text without one (a
  // certificate given as tls.key) is refused here with what is missing; OpenSSL 3 would
  // first build its whole decoder set (three quarters of the pem fuzzer's time).
  if (!absl::StrContains(pem, "PRIVATE KEY-----")) {
    return absl::InvalidArgumentError(
        "private key is not a valid unencrypted PEM key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY): "
        "there is no -----BEGIN ... PRIVATE KEY----- line");
  }
  UniquePtr<BIO> bio = ReadOnlyBio(pem);
  // A null password callback with an empty password makes an encrypted key fail
  // instead of prompting on the terminal.
  UniquePtr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>("")));
  if (!key) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "private key is not a valid unencrypted PEM key (PRIVATE KEY, EC PRIVATE "
                    "KEY or RSA PRIVATE KEY)");
  }
  return key;
}

absl::StatusOr<std::string> PrivateKeyToPem(const EVP_PKEY* key) {
  return WritePem("private key", [key](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, const_cast<EVP_PKEY*>(key), nullptr, nullptr, 0,
                                    nullptr, nullptr) == 1;
  });
}

absl::StatusOr<UniquePtr<X509>> ParseCertificatePem(absl::string_view pem) {
  RETURN_IF_ERROR(CheckSize(pem, kMaxPemObjectBytes, "certificate"));
  UniquePtr<BIO> bio = ReadOnlyBio(pem);
  UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "certificate is not valid PEM (expected a BEGIN CERTIFICATE block)");
  }
  if (!OnlyWhitespaceLeft(bio.get())) {
    return absl::InvalidArgumentError(
        "expected exactly one certificate but found more text after it (a chain where a "
        "single certificate belongs?)");
  }
  return cert;
}

absl::StatusOr<std::string> CertificateToPem(const X509* cert) {
  return WritePem("certificate",
                  [cert](BIO* bio) { return PEM_write_bio_X509(bio, const_cast<X509*>(cert)) == 1; });
}

absl::StatusOr<std::vector<UniquePtr<X509>>> ParseCertificateChainPem(absl::string_view pem) {
  RETURN_IF_ERROR(CheckSize(pem, kMaxPemBundleBytes, "certificate chain"));
  UniquePtr<BIO> bio = ReadOnlyBio(pem);
  std::vector<UniquePtr<X509>> chain;
  while (true) {
    UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    if (chain.size() == kMaxBundleCertificates) {
      return absl::InvalidArgumentError(absl::StrCat(
          "certificate chain holds more than ", kMaxBundleCertificates, " certificates"));
    }
    chain.push_back(std::move(cert));
  }
  if (chain.empty()) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "certificate chain holds no valid PEM certificate (expected BEGIN "
                    "CERTIFICATE blocks)");
  }
  // Reading stops at the end of the input (no further BEGIN line) or at a broken block;
  // only the former is a clean end.
  unsigned long last_error = ERR_peek_last_error();
  if (ERR_GET_LIB(last_error) != ERR_LIB_PEM ||
      ERR_GET_REASON(last_error) != PEM_R_NO_START_LINE) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("certificate chain: the block after certificate ",
                                 chain.size(), " is not a valid certificate"));
  }
  ClearSslErrors();
  return chain;
}

absl::StatusOr<std::string> CertificateChainToPem(const std::vector<const X509*>& chain) {
  std::string out;
  for (const X509* cert : chain) {
    ASSIGN_OR_RETURN(std::string pem, CertificateToPem(cert));
    out += pem;
  }
  return out;
}

absl::StatusOr<std::string> PemBlockToDer(absl::string_view pem, absl::string_view label) {
  RETURN_IF_ERROR(CheckSize(pem, kMaxPemObjectBytes, absl::AsciiStrToLower(label)));
  UniquePtr<BIO> bio = ReadOnlyBio(pem);
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long length = 0;
  int ok = PEM_read_bio(bio.get(), &name, &header, &data, &length);
  OpensslPtr<char> owned_name(name), owned_header(header);
  OpensslPtr<unsigned char> owned_data(data);
  if (ok != 1) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat(absl::AsciiStrToLower(label), " is not valid PEM (expected a BEGIN ",
                                 label, " block)"));
  }
  absl::string_view found = name;
  bool label_ok = found == label || (label == "CERTIFICATE REQUEST" && found == "NEW CERTIFICATE REQUEST");
  if (!label_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a BEGIN ", label, " block but found BEGIN ", found.substr(0, 40)));
  }
  if (!OnlyWhitespaceLeft(bio.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected exactly one ", label, " block but found more text after it"));
  }
  return std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(length));
}

absl::StatusOr<UniquePtr<X509_REQ>> ParseCsrPem(absl::string_view pem) {
  RETURN_IF_ERROR(CheckSize(pem, kMaxPemObjectBytes, "certificate signing request"));
  UniquePtr<BIO> bio = ReadOnlyBio(pem);
  UniquePtr<X509_REQ> csr(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!csr) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "certificate signing request is not valid PEM (expected a BEGIN "
                    "CERTIFICATE REQUEST block)");
  }
  return csr;
}

absl::StatusOr<std::string> CsrToPem(const X509_REQ* csr) {
  return WritePem("certificate signing request", [csr](BIO* bio) {
    return PEM_write_bio_X509_REQ(bio, const_cast<X509_REQ*>(csr)) == 1;
  });
}

}  // namespace relay::pki

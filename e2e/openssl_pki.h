#ifndef RELAY_E2E_OPENSSL_PKI_H_
#define RELAY_E2E_OPENSSL_PKI_H_

// Certificates made with the `openssl` command line, as an operator who brings their
// own PKI would make them: a chain nobody in this repository wrote.

#include <string>

#include "absl/strings/str_cat.h"
#include "e2e/harness.h"

namespace relay::e2e {

class OpensslPki {
 public:
  explicit OpensslPki(std::string dir) : dir_(std::move(dir)) {}

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string Pem(const std::string& name) const { return ReadFileOrEmpty(Path(name)); }

  // Root CA `name`.crt / `name`.key.
  bool MakeRoot(const std::string& name, std::string* error) {
    return Ok(RunCommand({"openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout", Path(name + ".key"), "-out",
                          Path(name + ".crt"), "-subj", "/O=byo/CN=" + name, "-days", "30", "-addext",
                          "basicConstraints=critical,CA:TRUE", "-addext",
                          "keyUsage=critical,keyCertSign,cRLSign"}),
              error);
  }

  // `name` signed by `issuer`; `extensions` in openssl's extfile syntax.
  bool Issue(const std::string& name, const std::string& issuer, const std::string& extensions,
             std::string* error) {
    WriteFile(Path(name + ".ext"), extensions);
    if (!Ok(RunCommand({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".csr"), "-subj",
                        "/O=byo/CN=" + name}),
            error)) {
      return false;
    }
    return Ok(RunCommand({"openssl", "x509", "-req", "-in", Path(name + ".csr"), "-CA",
                          Path(issuer + ".crt"), "-CAkey", Path(issuer + ".key"), "-CAcreateserial",
                          "-CAserial", Path(issuer + ".srl"), "-out", Path(name + ".crt"), "-days", "20",
                          "-extfile", Path(name + ".ext")}),
              error);
  }

  bool MakeIntermediate(const std::string& name, const std::string& root, std::string* error) {
    return Issue(name, root,
                 "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                 "keyUsage=critical,keyCertSign,cRLSign\n"
                 "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
                 error);
  }

  bool MakeServer(const std::string& name, const std::string& issuer, const std::string& dns,
                  std::string* error) {
    return Issue(name, issuer,
                 absl::StrCat("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                              "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:", dns, "\n"),
                 error);
  }

  bool MakeClient(const std::string& name, const std::string& issuer, const std::string& cluster,
                  std::string* error) {
    return Issue(name, issuer,
                 absl::StrCat("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                              "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:", cluster, "\n"),
                 error);
  }

 private:
  static bool Ok(const CommandResult& result, std::string* error) {
    if (result.exit_code == 0) return true;
    if (error) *error = result.output;
    return false;
  }

  std::string dir_;
};

}  // namespace relay::e2e

#endif  // RELAY_E2E_OPENSSL_PKI_H_

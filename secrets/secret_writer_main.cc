// Test helper: writes versions of one secret in a loop until killed. Every key of
// version N holds "N" (padded), so a reader can tell a mixed read from a whole one.
// Prints each version on stdout once it is written, so a test knows when to aim.
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "secrets/directory_store.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: secret_writer ROOT FIRST_VERSION\n";
    return 2;
  }
  auto store = relay::secrets::DirectorySecretStore::Create(argv[1]);
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    return 1;
  }
  for (long version = std::atol(argv[2]);; ++version) {
    std::string value = absl::StrCat(version, ":", std::string(32 * 1024, 'x'));
    relay::secrets::SecretData data = {{"ca.crt", value}, {"tls.crt", value}, {"tls.key", value}};
    if (absl::Status status = (*store)->Put("gloo-mesh", "relay-client-tls-secret", data);
        !status.ok()) {
      std::cerr << status << "\n";
      return 1;
    }
    std::cout << version << std::endl;
  }
}

#ifndef RELAY_MGMT_SECRET_MIRROR_H_
#define RELAY_MGMT_SECRET_MIRROR_H_

// Keeps local copies of some secrets of a shared store. With the state in etcd the relay
// port still reads its key, certificate and trust bundle from files (gRPC's file
// watcher, which swaps them without a restart); the mirror writes those files from etcd
// at start and again whenever another replica changes them (the server certificate
// one replica renews is served by all).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "secrets/secret_store.h"

namespace relay::mgmt {

class SecretMirror {
 public:
  struct Copied {
    std::string ns;
    std::string name;
    std::vector<std::string> keys;  // the keys copied; empty: all
  };

  // Copies each secret now (an error when one cannot be read), then on every change.
  static absl::StatusOr<std::unique_ptr<SecretMirror>> Start(secrets::SecretStore& source,
                                                             secrets::SecretStore& target,
                                                             std::vector<Copied> secrets);
  ~SecretMirror();

 private:
  SecretMirror(secrets::SecretStore& source, secrets::SecretStore& target) : source_(source), target_(target) {}
  absl::Status Copy(const Copied& secret);

  secrets::SecretStore& source_;
  secrets::SecretStore& target_;
  absl::Mutex mu_;  // one copy at a time, so an older read never overwrites a newer one
  std::vector<std::unique_ptr<secrets::SecretWatch>> watches_;
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_SECRET_MIRROR_H_

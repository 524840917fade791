#ifndef RELAY_STATE_ETCD_STATE_STORE_H_
#define RELAY_STATE_ETCD_STATE_STORE_H_

// The state seam on etcd (v3 API over gRPC, etcd's own protos), for several management
// servers on one store. Every key lives under one prefix:
//
//   <prefix>r/<key>                 records (the value as it is)
//   <prefix>s/<namespace>/<name>    secrets (StoredSecret, etcd_value.proto; sealed
//                                   with AES-256-GCM when a key is given)
//
// A record's revision is its etcd mod_revision. Compare-and-set is one etcd
// transaction: compare mod_revision (or create_revision == 0 for create-if-absent),
// then put or delete, else read the key to say why it was refused, so every outcome is
// linearizable across replicas. One watch stream on the prefix feeds the record and
// secret watchers, including changes other replicas make; it reconnects by itself and
// resumes from the last revision it saw.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "state/secret_cipher.h"
#include "state/state_store.h"

namespace relay::state {

struct EtcdOptions {
  // host:port of the members; calls go to one and move to the next when it fails.
  std::vector<std::string> endpoints;
  // TLS to etcd when `ca_file` is set; `cert_file` and `key_file` for client auth.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // Under which every key lives; ends with '/'. One per installation and namespace.
  std::string prefix = "/relay/gloo-mesh/";
  // How long a call may take before it fails UNAVAILABLE.
  absl::Duration timeout = absl::Seconds(5);
  // Secrets are sealed with it (secret_cipher.h) when set; records hold no secrets
  // (cluster records, and bootstrap tokens as their SHA-256). Without it secrets are
  // stored as they are, and a sealed one reads as FAILED_PRECONDITION.
  std::optional<SecretCipher> cipher;
};

// The key prefix of a namespace's state: /relay/<namespace>/ (the server's and
// `relayctl state migrate`'s, which must agree).
std::string EtcdPrefixFor(const std::string& ns);

// Connects and checks that etcd answers (UNAVAILABLE naming the endpoints when it does
// not), then starts watching the prefix.
absl::StatusOr<std::unique_ptr<StateStore>> OpenEtcdStateStore(EtcdOptions options);

}  // namespace relay::state

#endif  // RELAY_STATE_ETCD_STATE_STORE_H_

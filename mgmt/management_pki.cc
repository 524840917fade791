#include "mgmt/management_pki.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "tokens/identity_token.h"

namespace relay::mgmt {
namespace {

using secrets::SecretData;

// Prefixes an error with the secret (and key) it is about; keeps the code.
absl::Status InSecret(const std::string& ns, const std::string& name, absl::string_view key,
                      const absl::Status& status) {
  std::string where = absl::StrCat("secret ", ns, "/", name);
  if (!key.empty()) absl::StrAppend(&where, " key ", key);
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

// Reads a secret; nullopt when it does not exist.
absl::StatusOr<std::optional<SecretData>> Find(secrets::SecretStore& store, const std::string& ns,
                                               const std::string& name) {
  absl::StatusOr<SecretData> data = store.Get(ns, name);
  if (absl::IsNotFound(data.status())) return std::nullopt;
  if (!data.ok()) return InSecret(ns, name, "", data.status());
  return std::optional<SecretData>(*std::move(data));
}

absl::StatusOr<std::string> Key(const SecretData& data, const std::string& ns,
                                const std::string& name, const std::string& key) {
  return secrets::GetKey(data, ns, name, key);
}

struct KeyPair {
  std::vector<pki::UniquePtr<X509>> chain;
  pki::UniquePtr<EVP_PKEY> key;
};

// tls.crt (+ tls.key when `need_key`) of a secret, checked to belong together.
absl::StatusOr<KeyPair> LoadPair(const SecretData& data, const std::string& ns,
                                 const std::string& name, bool need_key) {
  KeyPair pair;
  ASSIGN_OR_RETURN(std::string chain_pem, Key(data, ns, name, "tls.crt"));
  absl::StatusOr<std::vector<pki::UniquePtr<X509>>> chain = pki::ParseCertificateChainPem(chain_pem);
  if (!chain.ok()) return InSecret(ns, name, "tls.crt", chain.status());
  pair.chain = *std::move(chain);
  if (!need_key) return pair;
  ASSIGN_OR_RETURN(std::string key_pem, Key(data, ns, name, "tls.key"));
  absl::StatusOr<pki::UniquePtr<EVP_PKEY>> key = pki::ParsePrivateKeyPem(key_pem);
  if (!key.ok()) return InSecret(ns, name, "tls.key", key.status());
  pair.key = *std::move(key);
  absl::Status match = pki::CheckKeyMatchesCertificate(pair.chain[0].get(), pair.key.get());
  if (!match.ok()) return InSecret(ns, name, "tls.key", match);
  return pair;
}

// A secret that EnsureManagementPki will write once every check has passed.
struct PlannedWrite {
  std::string ns;
  std::string name;
  SecretData data;
  bool created;                 // made by this call (reported in ManagementPki::created)
  bool only_if_absent = false;  // a new secret: written only if still absent
};

// The signing secret's retired intermediates that have not expired at `now`.
absl::StatusOr<std::vector<pki::UniquePtr<X509>>> UnexpiredRetired(const SecretData& signing_secret,
                                                                    const std::string& ns, const std::string& name,
                                                                    absl::Time now) {
  std::vector<pki::UniquePtr<X509>> live;
  auto retired = signing_secret.find(kRetiredIntermediatesKey);
  if (retired == signing_secret.end()) return live;
  absl::StatusOr<std::vector<pki::UniquePtr<X509>>> certs = pki::ParseCertificateChainPem(retired->second);
  if (!certs.ok()) return InSecret(ns, name, kRetiredIntermediatesKey, certs.status());
  for (auto& cert : *certs) {
    absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(cert.get());
    if (info.ok() && now < info->not_after) live.push_back(std::move(cert));
  }
  return live;
}

// A new intermediate signed by `root` (the signer it becomes), as the signing secret
// holds it: tls.crt, tls.key and the trust bundle in ca.crt.
absl::StatusOr<NewIntermediate> IssueIntermediate(const pki::Issuer& root, const std::string& root_bundle_pem,
                                                  const ManagementPkiOptions& options, absl::Time now) {
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::GenerateKey(options.key_type));
  ASSIGN_OR_RETURN(pki::UniquePtr<X509> cert,
                   root.Issue(key.get(), pki::IntermediateCaSpec("relay-signing-ca", now, options.intermediate_lifetime)));
  NewIntermediate made;
  ASSIGN_OR_RETURN(std::string cert_pem, pki::CertificateToPem(cert.get()));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key.get()));
  made.secret = {{"tls.crt", cert_pem}, {"tls.key", key_pem}, {"ca.crt", root_bundle_pem}};
  ASSIGN_OR_RETURN(made.issuer, pki::Issuer::Create(std::move(cert), std::move(key), now));
  return made;
}

absl::Status MissingSecret(const std::string& ns, const std::string& name, absl::string_view why,
                           absl::string_view keys) {
  return absl::FailedPreconditionError(absl::StrCat(
      "secret ", ns, "/", name, " does not exist and ", why, ": create it with keys ", keys));
}

}  // namespace

std::string LiveCrossCertificates(const SecretData& root_secret, absl::Time now) {
  auto cross = root_secret.find(kCrossCertificatesKey);
  if (cross == root_secret.end()) return "";
  absl::StatusOr<std::vector<pki::UniquePtr<X509>>> certs = pki::ParseCertificateChainPem(cross->second);
  if (!certs.ok()) return "";
  std::string live;
  for (const auto& cert : *certs) {
    absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(cert.get());
    absl::StatusOr<std::string> pem = pki::CertificateToPem(cert.get());
    if (info.ok() && pem.ok() && now < info->not_after) live += *pem;
  }
  return live;
}

std::string TokenNamespace(const config::MgmtServerValues& values, const std::string& ns) {
  return values.token_secret.Namespace(ns);
}

namespace {

struct IssuedServerCertificate {
  SecretData data;
  pki::CertificateInfo info;
};

absl::StatusOr<IssuedServerCertificate> IssueServerCertificate(const ManagementPkiOptions& options,
                                                               const pki::Issuer& signer,
                                                               const std::string& root_bundle_pem,
                                                               const std::string& cross_certificates_pem,
                                                               absl::Time now) {
  std::vector<std::string> dns_names = {options.authority};
  for (const std::string& name : options.extra_dns_names) {
    if (name != options.authority) dns_names.push_back(name);
  }
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::GenerateKey(options.key_type));
  ASSIGN_OR_RETURN(pki::UniquePtr<X509> cert,
                   signer.Issue(key.get(), pki::ServerSpec(options.authority, dns_names,
                                                           options.extra_ip_addresses, now,
                                                           options.server_lifetime)));
  IssuedServerCertificate issued;
  ASSIGN_OR_RETURN(std::string cert_pem, pki::CertificateToPem(cert.get()));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key.get()));
  ASSIGN_OR_RETURN(issued.info, pki::InspectCertificate(cert.get()));
  issued.data = {{"tls.crt", cert_pem + signer.certificate_pem() + cross_certificates_pem},
                 {"tls.key", key_pem},
                 {"ca.crt", root_bundle_pem}};
  return issued;
}

}  // namespace

absl::StatusOr<pki::CertificateInfo> WriteServerCertificate(secrets::SecretStore& store,
                                                            const ManagementPkiOptions& options,
                                                            const pki::Issuer& signer,
                                                            const std::string& root_bundle_pem,
                                                            const std::string& cross_certificates_pem,
                                                            absl::Time now) {
  ASSIGN_OR_RETURN(IssuedServerCertificate issued,
                   IssueServerCertificate(options, signer, root_bundle_pem, cross_certificates_pem, now));
  const std::string& name = options.values.tls_secret;
  absl::Status status = store.Put(options.ns, name, issued.data);
  if (!status.ok()) return InSecret(options.ns, name, "", status);
  LogInfo("server_certificate_issued",
          {{"secret", absl::StrCat(options.ns, "/", name)}, {"serial", issued.info.serial_hex}});
  return issued.info;
}

namespace {

// Every secret is read and checked, and what is missing is made in memory, before
// anything is written: a check that fails leaves the store as it was.
// A secret that does not chain to the root this server is about to create may have
// been made, with its root, by another server starting at the same moment, between our
// read of the root and our read of it: ALREADY_EXISTS (read everything again) when the
// root exists now.
absl::Status RootCreatedMeanwhile(secrets::SecretStore& store, const std::string& ns, const std::string& root_name,
                                  bool root_was_read) {
  if (root_was_read) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<SecretData> root_now, Find(store, ns, root_name));
  if (!root_now) return absl::OkStatus();
  return absl::AlreadyExistsError(absl::StrCat("secret ", ns, "/", root_name, " was created by another server"));
}

absl::StatusOr<ManagementPki> EnsureOnce(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                         absl::Time now) {
  const config::MgmtServerValues& values = options.values;
  const std::string& ns = options.ns;
  const bool may_generate = !values.disable_ca_cert_generation;
  ManagementPki result;
  std::vector<PlannedWrite> writes;

  // 1. Root CA.
  const std::string& root_name = values.root_tls_secret;
  pki::UniquePtr<EVP_PKEY> root_key;
  std::vector<pki::UniquePtr<X509>> roots;
  ASSIGN_OR_RETURN(std::optional<SecretData> root_secret, Find(store, ns, root_name));
  if (root_secret) {
    ASSIGN_OR_RETURN(result.root_bundle_pem, Key(*root_secret, ns, root_name, "ca.crt"));
    absl::StatusOr<std::vector<pki::UniquePtr<X509>>> bundle =
        pki::ParseCertificateChainPem(result.root_bundle_pem);
    if (!bundle.ok()) return InSecret(ns, root_name, "ca.crt", bundle.status());
    roots = *std::move(bundle);
    for (const auto& root : roots) {
      if (absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(root.get());
          info.ok() && now >= info->not_after) {
        return InSecret(ns, root_name, "ca.crt",
                        absl::FailedPreconditionError(absl::StrCat(
                            "the root CA expired at ", pki::FormatUtc(info->not_after),
                            ": nothing under it is valid and agents cannot verify this server. Recovery (README "
                            "\"Expired root\"): stop the server; move ", root_name, ", ", values.signing_tls_secret,
                            " and ", values.tls_secret,
                            " aside (keep the token secret); start the server, which creates a new root; give each "
                            "workload cluster the new root (relayctl secrets export or register); their agents "
                            "register again with the token")));
      }
      absl::Status ca = pki::CheckCaCertificate(root.get(), now, "root certificate");
      if (!ca.ok()) return InSecret(ns, root_name, "ca.crt", ca);
    }
    result.cross_certificates_pem = LiveCrossCertificates(*root_secret, now);
    if (root_secret->count("tls.key")) {
      SecretData pair_view = {{"tls.crt", root_secret->count("tls.crt") ? root_secret->at("tls.crt")
                                                                         : result.root_bundle_pem},
                              {"tls.key", root_secret->at("tls.key")}};
      ASSIGN_OR_RETURN(KeyPair pair, LoadPair(pair_view, ns, root_name, true));
      root_key = std::move(pair.key);
    }
  } else {
    if (!may_generate) {
      return MissingSecret(ns, root_name, "disableCaCertGeneration is set (bring your own root)",
                           "ca.crt (and tls.crt, tls.key to let the server create the intermediate)");
    }
    ASSIGN_OR_RETURN(root_key, pki::GenerateKey(options.key_type));
    ASSIGN_OR_RETURN(pki::UniquePtr<X509> root,
                     pki::CreateSelfSignedCertificate(
                         root_key.get(), pki::RootCaSpec("relay-root-ca", now, options.root_lifetime)));
    ASSIGN_OR_RETURN(result.root_bundle_pem, pki::CertificateToPem(root.get()));
    ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(root_key.get()));
    writes.push_back({ns, root_name,
                      {{"ca.crt", result.root_bundle_pem}, {"tls.crt", result.root_bundle_pem}, {"tls.key", key_pem}},
                      true, true});
    roots.push_back(std::move(root));
  }

  // 2. Intermediate signing CA (also used for the server certificate).
  const std::string& signing_name = values.signing_tls_secret;
  ASSIGN_OR_RETURN(std::optional<SecretData> signing_secret, Find(store, ns, signing_name));
  bool replace_expired_intermediate = false;
  std::optional<KeyPair> signing_pair;
  if (signing_secret) {
    ASSIGN_OR_RETURN(signing_pair, LoadPair(*signing_secret, ns, signing_name, true));
    if (absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(signing_pair->chain[0].get());
        info.ok() && now >= info->not_after && !values.disable_ca) {
      // Down past the intermediate's expiry: its leaves have all expired too, so a new
      // one under the (still valid) root takes its place.
      if (!may_generate || !root_key) {
        return InSecret(ns, signing_name, "tls.crt",
                        absl::FailedPreconditionError(absl::StrCat(
                            "the intermediate expired at ", pki::FormatUtc(info->not_after),
                            !may_generate ? " and disableCaCertGeneration is set: put a new intermediate under the "
                                            "root in this secret (tls.crt, tls.key, ca.crt)"
                                          : " and the root secret has no tls.key to sign a new one: put a new "
                                            "intermediate in this secret, or the root key in the root secret")));
      }
      LogWarning("intermediate_expired", {{"secret", absl::StrCat(ns, "/", signing_name)},
                                          {"not_after", pki::FormatUtc(info->not_after)},
                                          {"action", "issuing a new intermediate under the root"}});
      replace_expired_intermediate = true;
    }
  }
  if (signing_secret && !replace_expired_intermediate) {
    KeyPair& pair = *signing_pair;
    absl::Status chains = pki::VerifyChain(pair.chain[0].get(),
                                           pki::Borrow(pair.chain), pki::Borrow(roots), now);
    if (!chains.ok()) {
      RETURN_IF_ERROR(RootCreatedMeanwhile(store, ns, root_name, root_secret.has_value()));
      std::string root_note = root_secret ? absl::StrCat("the root in ", ns, "/", root_name, " ca.crt")
                                          : absl::StrCat(ns, "/", root_name,
                                                         " does not exist, and a new root would not be "
                                                         "its issuer: restore the root secret");
      return InSecret(ns, signing_name, "tls.crt",
                      absl::Status(chains.code(), absl::StrCat(chains.message(), " (", root_note, ")")));
    }
    absl::StatusOr<std::unique_ptr<pki::Issuer>> signer =
        pki::Issuer::Create(std::move(pair.chain[0]), std::move(pair.key), now);
    if (!signer.ok()) return InSecret(ns, signing_name, "tls.crt", signer.status());
    result.signer = *std::move(signer);
    ASSIGN_OR_RETURN(result.retired_intermediates, UnexpiredRetired(*signing_secret, ns, signing_name, now));
  } else if (!values.disable_ca) {
    if (!may_generate) {
      return MissingSecret(ns, signing_name, "disableCaCertGeneration is set (bring your own intermediate)",
                           "tls.crt, tls.key (the intermediate CA) and ca.crt");
    }
    if (!root_key) {
      return absl::FailedPreconditionError(absl::StrCat(
          "secret ", ns, "/", signing_name, " does not exist and cannot be created: secret ", ns, "/",
          root_name, " has no tls.key to sign it. Create the intermediate yourself, or add the "
          "root key"));
    }
    X509_up_ref(roots[0].get());
    EVP_PKEY_up_ref(root_key.get());
    ASSIGN_OR_RETURN(std::unique_ptr<pki::Issuer> root_issuer,
                     pki::Issuer::Create(pki::UniquePtr<X509>(roots[0].get()),
                                         pki::UniquePtr<EVP_PKEY>(root_key.get()), now));
    ASSIGN_OR_RETURN(NewIntermediate made, IssueIntermediate(*root_issuer, result.root_bundle_pem, options, now));
    writes.push_back({ns, signing_name, std::move(made.secret), !replace_expired_intermediate,
                      !replace_expired_intermediate});
    result.signer = std::move(made.issuer);
  }

  // 3. Server certificate. One that has expired is replaced when the server holds the
  // signing CA (it would renew it anyway); without one it stops start-up.
  const std::string& server_name = values.tls_secret;
  ASSIGN_OR_RETURN(std::optional<SecretData> server_secret, Find(store, ns, server_name));
  bool issue_server_certificate = !server_secret || replace_expired_intermediate;
  if (server_secret && !replace_expired_intermediate) {
    ASSIGN_OR_RETURN(KeyPair pair, LoadPair(*server_secret, ns, server_name, true));
    ASSIGN_OR_RETURN(result.server_certificate, pki::InspectCertificate(pair.chain[0].get()));
    if (now >= result.server_certificate.not_after && result.signer) {
      LogWarning("server_certificate_expired",
                 {{"secret", absl::StrCat(ns, "/", server_name)},
                  {"not_after", pki::FormatUtc(result.server_certificate.not_after)},
                  {"action", "issuing a new one with the signing CA"}});
      issue_server_certificate = true;
    } else {
      std::vector<const X509*> intermediates = pki::Borrow(pair.chain);
      absl::Status chains = pki::VerifyChain(pair.chain[0].get(), intermediates, pki::Borrow(roots),
                                             now, pki::Purpose::kServerAuth);
      if (!chains.ok()) {
        RETURN_IF_ERROR(RootCreatedMeanwhile(store, ns, root_name, root_secret.has_value()));
        return InSecret(ns, server_name, "tls.crt", chains);
      }
      // Clients verify against the root bundle: keep ca.crt in step with it.
      if (server_secret->count("ca.crt") == 0 || server_secret->at("ca.crt") != result.root_bundle_pem) {
        SecretData updated = *server_secret;
        updated["ca.crt"] = result.root_bundle_pem;
        writes.push_back({ns, server_name, std::move(updated), false});
      }
    }
  }
  if (issue_server_certificate) {
    if (!result.signer) {
      return MissingSecret(ns, server_name,
                           "there is no signing CA to issue it (disableCa is set)",
                           "tls.crt (server certificate + intermediates), tls.key and ca.crt");
    }
    ASSIGN_OR_RETURN(IssuedServerCertificate issued,
                     IssueServerCertificate(options, *result.signer, result.root_bundle_pem,
                                            result.cross_certificates_pem, now));
    result.server_certificate = issued.info;
    // A new secret, or the replacement of an expired one.
    writes.push_back({ns, server_name, std::move(issued.data), true, !server_secret});
  }

  // 4. Identity token (not needed when the server signs nothing).
  if (!values.disable_ca) {
    std::string token_ns = TokenNamespace(values, ns);
    const std::string& token_name = values.token_secret.name;
    const std::string& token_key = values.token_secret.key;
    ASSIGN_OR_RETURN(std::optional<SecretData> token_secret, Find(store, token_ns, token_name));
    if (token_secret) {
      ASSIGN_OR_RETURN(result.token, tokens::LoadToken(store, token_ns, token_name, token_key));
      RETURN_IF_ERROR(tokens::CheckSharedTokenStrength(result.token, token_ns, token_name, token_key));
    } else if (values.disable_token_generation) {
      return MissingSecret(token_ns, token_name, "disableTokenGeneration is set",
                           absl::StrCat(token_key, " (the shared identity token)"));
    } else {
      ASSIGN_OR_RETURN(result.token, tokens::GenerateToken());
      writes.push_back({token_ns, token_name, {{token_key, result.token}}, true, true});
    }
  }

  // Every check passed: write what was made. A new secret is created only if it is
  // still absent: another server starting at the same moment may have made it first.
  for (PlannedWrite& write : writes) {
    absl::Status status = write.only_if_absent ? store.Create(write.ns, write.name, write.data)
                                               : store.Put(write.ns, write.name, write.data);
    if (absl::IsAlreadyExists(status)) return status;  // EnsureManagementPki reads again
    if (!status.ok()) return InSecret(write.ns, write.name, "", status);
    std::string full_name = absl::StrCat(write.ns, "/", write.name);
    if (write.created) {
      result.created.push_back(full_name);
      LogInfo("secret_created", {{"secret", full_name}});
    } else {
      LogInfo("secret_updated", {{"secret", full_name}});
    }
  }
  return result;
}

}  // namespace

absl::StatusOr<ManagementPki> EnsureManagementPki(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                                  absl::Time now) {
  // A secret another server created between our read and our write: read everything
  // again, and take what it made.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<ManagementPki> pki = EnsureOnce(store, options, now);
    if (!absl::IsAlreadyExists(pki.status()) || attempt == 3) return pki;
  }
}

absl::StatusOr<NewIntermediate> MakeIntermediate(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                                 const std::string& retired_pem, absl::Time now) {
  const std::string& ns = options.ns;
  const std::string& root_name = options.values.root_tls_secret;
  ASSIGN_OR_RETURN(SecretData root_secret, store.Get(ns, root_name));
  if (!root_secret.count("tls.key")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secret ", ns, "/", root_name, " has no tls.key, so the server cannot sign a new intermediate: put one "
        "signed by your root in ", ns, "/", options.values.signing_tls_secret, " (tls.crt, tls.key, ca.crt)"));
  }
  ASSIGN_OR_RETURN(std::string root_bundle_pem, Key(root_secret, ns, root_name, "ca.crt"));
  SecretData pair_view = {{"tls.crt", root_secret.count("tls.crt") ? root_secret.at("tls.crt") : root_bundle_pem},
                          {"tls.key", root_secret.at("tls.key")}};
  ASSIGN_OR_RETURN(KeyPair root, LoadPair(pair_view, ns, root_name, true));
  ASSIGN_OR_RETURN(std::unique_ptr<pki::Issuer> root_issuer,
                   pki::Issuer::Create(std::move(root.chain[0]), std::move(root.key), now));
  ASSIGN_OR_RETURN(NewIntermediate made, IssueIntermediate(*root_issuer, root_bundle_pem, options, now));
  if (!retired_pem.empty()) made.secret[kRetiredIntermediatesKey] = retired_pem;
  return made;
}

absl::StatusOr<StoredSigningCa> ReadSigningCa(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                              absl::Time now) {
  const std::string& ns = options.ns;
  const std::string& name = options.values.signing_tls_secret;
  ASSIGN_OR_RETURN(SecretData secret, store.Get(ns, name));
  ASSIGN_OR_RETURN(KeyPair pair, LoadPair(secret, ns, name, true));
  StoredSigningCa stored;
  absl::StatusOr<std::unique_ptr<pki::Issuer>> issuer = pki::Issuer::Create(std::move(pair.chain[0]), std::move(pair.key), now);
  if (!issuer.ok()) return InSecret(ns, name, "tls.crt", issuer.status());
  stored.issuer = *std::move(issuer);
  ASSIGN_OR_RETURN(stored.retired, UnexpiredRetired(secret, ns, name, now));
  return stored;
}

}  // namespace relay::mgmt

#!/usr/bin/env bash
# Writes the seed inputs of fuzz/corpus/ (run from the workspace; the output is kept in
# the tree, so this runs only when a seed should change). Seeds are what the tests and
# a real deployment feed each parser: CSRs, certificates and bundles made with
# OpenSSL's CLI, the shipped values file, journals in both formats. libFuzzer adds to
# them; inputs that once crashed a target are kept beside them as crash-<what>.
set -euo pipefail
cd "$(dirname "$0")/corpus"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ossl() { openssl "$@" 2>/dev/null; }

# A root, an intermediate and a client leaf, as relay's CA makes them.
ossl ecparam -name prime256v1 -genkey -noout -out "$work/root.key"
ossl req -x509 -new -key "$work/root.key" -subj "/CN=relay-root-ca" -days 3650 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out "$work/root.crt"
ossl ecparam -name prime256v1 -genkey -noout -out "$work/inter.key"
ossl req -new -key "$work/inter.key" -subj "/CN=relay-intermediate-ca" -out "$work/inter.csr"
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$work/ca.ext"
ossl x509 -req -in "$work/inter.csr" -CA "$work/root.crt" -CAkey "$work/root.key" -CAcreateserial -days 365 \
  -extfile "$work/ca.ext" -out "$work/inter.crt"
ossl ecparam -name prime256v1 -genkey -noout -out "$work/leaf.key"
ossl req -new -key "$work/leaf.key" -subj "/CN=cluster-1" -addext subjectAltName=DNS:cluster-1 -out "$work/leaf.csr"
printf 'subjectAltName=DNS:cluster-1\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' > "$work/leaf.ext"
ossl x509 -req -in "$work/leaf.csr" -CA "$work/inter.crt" -CAkey "$work/inter.key" -CAcreateserial -days 1 \
  -extfile "$work/leaf.ext" -out "$work/leaf.crt"

# pem: bundles, chains, keys, CSRs as PEM.
cat "$work/root.crt" > pem/root.pem
cat "$work/leaf.crt" "$work/inter.crt" "$work/root.crt" > pem/chain.pem
{ echo "comment before"; cat "$work/root.crt"; echo; echo "between"; cat "$work/inter.crt"; } > pem/bundle-with-text.pem
cat "$work/leaf.key" > pem/ec-key.pem
cat "$work/leaf.csr" > pem/csr.pem

# csr: DER requests: EC, RSA, Ed25519; a CA:TRUE request; two names; no SAN.
ossl req -in "$work/leaf.csr" -outform DER -out csr/ec-p256.der
ossl genrsa -out "$work/rsa.key" 2048
ossl req -new -key "$work/rsa.key" -subj "/CN=cluster-2" -addext subjectAltName=DNS:cluster-2 -outform DER -out csr/rsa-2048.der
ossl genpkey -algorithm ed25519 -out "$work/ed.key"
ossl req -new -key "$work/ed.key" -subj "/CN=cluster-3" -addext subjectAltName=DNS:cluster-3 -outform DER -out csr/ed25519.der
ossl req -new -key "$work/leaf.key" -subj "/CN=cluster-4" -addext subjectAltName=DNS:cluster-4 \
  -addext basicConstraints=critical,CA:TRUE -outform DER -out csr/asks-ca.der
ossl req -new -key "$work/leaf.key" -subj "/CN=cluster-5" -addext subjectAltName=DNS:cluster-5,DNS:other \
  -outform DER -out csr/two-names.der
ossl req -new -key "$work/leaf.key" -subj "/CN=cluster-6/O=relay" -outform DER -out csr/no-san.der

# certificate: DER certificates.
for c in root inter leaf; do ossl x509 -in "$work/$c.crt" -outform DER -out "certificate/$c.der"; done

# values: the shipped values file, and both sides' keys.
cp ../../deploy/values.yaml values/deploy-values.yaml
cat > values/agent.yaml <<'YAML'
glooAgent:
  relay:
    serverAddress: mgmt.example.com:9900
    cluster: cluster-1
    clientTlsSecretRotationGracePeriodRatio: 0.25
    tokenSecret:
      name: relay-identity-token-secret
      namespace: gloo-mesh
      key: token
YAML
cat > values/mgmt.yaml <<'YAML'
glooMgmtServer:
  relay:
    disableCaCertGeneration: false
    disableTokenGeneration: false
    clientCertTtl: 720h
    tlsSecret:
      name: relay-server-tls-secret
    signingTlsSecret:
      name: relay-tls-signing-secret
YAML

# journal: the current format (header, checksums) and the older one.
python3 - <<'PY'
import zlib
def line(record):
    return "%08x %s\n" % (zlib.crc32(record.encode()), record)
records = [
    "put\tclusters/cluster-1\tstate=registered;current_serial=0A1B;pending_serials=0C2D;not_after=1900000000;"
    "issued_at=1800000000;registered_at=1800000000;snapshot_version=3;acked_version=2;admitted=0;"
    "trust_bundle=" + "ab" * 32 + ";issued_at_ms=1800000000123",
    "put\tclusters/cluster-2\tstate=deregistered;current_serial=;pending_serials=;not_after=0;issued_at=0;"
    "registered_at=0;snapshot_version=0;acked_version=0;admitted=1",
    "put\tbootstrap-tokens/" + "cd" * 32 + "\tcluster=cluster-3;expires=1900000000;uses=2",
    "put\tca/root-rotation\tphase=add;previous=01;next=02;started_ms=1800000000000",
    "del\tclusters/cluster-2",
]
with open("journal/current.log", "w") as f:
    f.write("# relay journal v2: <crc32> <record> per line\n")
    for r in records: f.write(line(r))
with open("journal/torn-tail.log", "w") as f:
    f.write("# relay journal v2: <crc32> <record> per line\n")
    f.write(line(records[0]))
    f.write(line(records[2])[:-9])
with open("journal/older-format.log", "w") as f:
    f.write("cluster-1\tstate=registered;current_serial=0A1B;pending_serials=;not_after=1900000000;"
            "issued_at=1800000000;registered_at=1800000000;snapshot_version=0;acked_version=0\n")
PY

# resource_names: names an operator pushes, good and bad.
printf 'config.yaml\nroutes.json\nREADME\n.hidden\n../escape\na/b\n..data\n' > resource_names/mixed.txt
printf 'policy-1.yaml\npolicy_2.json\n' > resource_names/plain.txt

# bootstrap_token: token, cluster, stored record.
printf 'relay-bootstrap.0123456789abcdef0123456789abcdef\ncluster-1\ncluster=cluster-1;expires=1900000000;uses=1' \
  > bootstrap_token/single-use.txt
printf 'relay-bootstrap.0123456789abcdef0123456789abcdef\ncluster-2\ncluster=cluster-1;expires=1900000000;uses=3' \
  > bootstrap_token/other-cluster.txt
printf 'relay-bootstrap.x\ncluster-1\ncluster=cluster-1;expires=1700000000;uses=1' > bootstrap_token/expired.txt
printf 'shared-token\ncluster-1\ncluster=cluster-1;expires=1900000000;uses=1' > bootstrap_token/not-bootstrap.txt

# secrets_directory: a written secret (even first byte) and trees (odd first byte).
printf '0ca.crt\t-----BEGIN CERTIFICATE-----\ntls.key\tkey\ntoken\tabc\n' > secrets_directory/round-trip.txt
printf '1d ..2026_01_01_00_00_00.1\nf ..2026_01_01_00_00_00.1/ca.crt\tCA\nl ..data\t..2026_01_01_00_00_00.1\nl ca.crt\t..data/ca.crt\n' \
  > secrets_directory/kubelet-layout.txt
printf '1f ca.crt\tCA\nf token\tT\np tls.key\n' > secrets_directory/plain-with-fifo.txt
printf '1l ..data\t../outside\nl ca.crt\t..data/canary\n' > secrets_directory/data-link-escapes.txt
printf '1d ..v\nl ..v/ca.crt\t../../outside/canary\nl ..data\t..v\n' > secrets_directory/key-link-escapes.txt
echo "seeds written under fuzz/corpus/"

"""Shared build definitions for relay."""

# Use on every target that links gRPC (directly or through a dependency), or needs
# OpenSSL's own API: skipped under --config=boringssl (one TLS library per process).
# (--config=tsan skips what links gRPC through @system//:grpc itself.)
GRPC_COMPATIBLE = select({
    "//bazel:use_boringssl": ["//bazel:incompatible"],
    "//conditions:default": [],
})

RELAY_COPTS = [
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]

# pki and tokens keep to the API that OpenSSL 3 and BoringSSL share; deprecated OpenSSL
# calls are compile errors, so nothing slips in by accident.
SSL_COPTS = RELAY_COPTS + [
    "-DOPENSSL_API_COMPAT=30000",
    "-DOPENSSL_NO_DEPRECATED",
]

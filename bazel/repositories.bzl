"""Repository rules that make Debian's packages usable from Bazel 4.2.3, offline."""

_RULES_CC_SOURCE = "/usr/share/bazel/rules/cc"

# Debian ships a rules_cc newer than Bazel 4.2.3: two files call use_cpp_toolchain(),
# which this Bazel lacks. Copy the tree and replace the call with the toolchain type.
_RULES_CC_PATCHED = [
    "cc/private/rules_impl/compiler_flag.bzl",
    "cc/private/rules_impl/cc_flags_supplier.bzl",
]

def _debian_rules_cc_impl(ctx):
    result = ctx.execute(["cp", "-r", _RULES_CC_SOURCE + "/.", "."])
    if result.return_code != 0:
        fail("copying %s failed (is bazel-rules-cc installed? run tools/bazel): %s" %
             (_RULES_CC_SOURCE, result.stderr))
    for path in _RULES_CC_PATCHED:
        text = ctx.read(path)
        text = text.replace(", \"use_cpp_toolchain\")", ")")
        text = text.replace("use_cpp_toolchain()", "[\"@bazel_tools//tools/cpp:toolchain_type\"]")
        ctx.file(path, text)

debian_rules_cc = repository_rule(implementation = _debian_rules_cc_impl, local = True)

def _empty_coverage_tools_impl(ctx):
    # `bazel test` wants these two labels even when coverage is never collected.
    ctx.file("WORKSPACE", "workspace(name = \"remote_coverage_tools\")\n")
    ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])
filegroup(name = "coverage_report_generator", srcs = [])
filegroup(name = "lcov_merger", srcs = [])
""")

empty_coverage_tools = repository_rule(implementation = _empty_coverage_tools_impl)

_LIB_DIR = "/usr/lib/x86_64-linux-gnu"
_BORINGSSL_LIB_DIR = _LIB_DIR + "/android"

# (target, header directories under /usr/include symlinked into <target>/include)
_HEADER_TREES = {
    "absl": ["absl"],
    "grpc": ["grpc", "grpcpp", "grpc++"],
    "protobuf": ["google/protobuf"],
    "gtest": ["gtest", "gmock"],
    "benchmark": ["benchmark"],
    "yaml_cpp": ["yaml-cpp"],
    "nlohmann_json": ["nlohmann"],
}

def _system_libraries_impl(ctx):
    for target, dirs in _HEADER_TREES.items():
        for d in dirs:
            src = ctx.path("/usr/include/" + d)
            if not src.exists:
                fail("/usr/include/%s is missing: run tools/bazel, which installs the Debian packages" % d)
            ctx.symlink(src, "%s/include/%s" % (target, d))

    # BoringSSL's headers share the name openssl/ with OpenSSL's; keeping them in their
    # own tree puts them first on the include path of the targets that ask for them.
    ctx.symlink("/usr/include/android/openssl", "boringssl/include/openssl")

    # Every Abseil shared library; --as-needed keeps only those a binary really uses.
    listing = ctx.execute(["sh", "-c", "cd %s && ls libabsl_*.so" % _LIB_DIR])
    if listing.return_code != 0:
        fail("no Abseil libraries in %s: run tools/bazel, which installs libabsl-dev" % _LIB_DIR)
    absl_libs = ["-l" + f[len("lib"):-len(".so")] for f in listing.stdout.strip().split("\n")]

    ctx.file("WORKSPACE", "workspace(name = \"system\")\n")
    ctx.template("BUILD", ctx.attr._build_template, {
        "%{absl_linkopts}": repr(["-Wl,--as-needed"] + absl_libs + ["-Wl,--no-as-needed"]),
        "%{boringssl_lib_dir}": _BORINGSSL_LIB_DIR,
    })

system_libraries = repository_rule(
    implementation = _system_libraries_impl,
    local = True,
    attrs = {"_build_template": attr.label(default = "//bazel:system.BUILD.tpl")},
)

# etcd's v3 API as Debian ships it (golang-etcd-server-dev): the gRPC service and its
# messages, compiled like our own protos. The files carry gogoproto options (Go code
# generation) and google.api.http annotations (the JSON gateway); neither means
# anything to C++, and their imports are not installed, so they are stripped here.
_ETCD_SOURCE = "/usr/share/gocode/src/go.etcd.io/etcd"
_ETCD_PROTOS = [
    "mvcc/mvccpb/kv.proto",
    "auth/authpb/auth.proto",
    "etcdserver/etcdserverpb/rpc.proto",
]

def _strip_go_annotations(path, text):
    out = []
    depth = 0
    for line in text.split("\n"):
        s = line.strip()
        if depth > 0:  # inside an `option (google.api.http) = {...};` block
            depth += s.count("{") - s.count("}")
            continue
        if s.startswith("import \"gogoproto/") or s.startswith("import \"google/api/"):
            continue
        if s.startswith("option (gogoproto."):
            continue
        if s.startswith("option (google.api.http)"):
            depth = s.count("{") - s.count("}")
            continue
        if "(gogoproto." in line or "(google.api." in line:
            fail("%s: an annotation this rule does not strip: %s" % (path, s))
        out.append(line)
    return "\n".join(out)

def _etcd_api_impl(ctx):
    for proto in _ETCD_PROTOS:
        source = ctx.path("%s/%s" % (_ETCD_SOURCE, proto))
        if not source.exists:
            fail("%s is missing: run tools/bazel, which installs golang-etcd-server-dev" % source)
        ctx.file("etcd/" + proto, _strip_go_annotations(proto, ctx.read(source)))
    bases = ["etcd/" + p[:-len(".proto")] for p in _ETCD_PROTOS]
    outs = [b + ext for b in bases for ext in [".pb.h", ".pb.cc", ".grpc.pb.h", ".grpc.pb.cc"]]
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)
    ctx.file("BUILD", """
genrule(
    name = "codegen",
    srcs = {srcs},
    outs = {outs},
    cmd = " ".join([
        "/usr/bin/protoc",
        "--proto_path=external/{name}",
        "--cpp_out=$(RULEDIR)",
        "--grpc_out=$(RULEDIR)",
        "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
        "$(SRCS)",
    ]),
)

# etcd's KV, Watch and Lease services (etcdserverpb) with mvccpb and authpb.
cc_library(
    name = "etcd_cc_grpc",
    srcs = [f for f in {outs} if f.endswith(".cc")],
    hdrs = [f for f in {outs} if f.endswith(".h")],
    deps = ["@system//:grpc", "@system//:protobuf"],
    visibility = ["//visibility:public"],
)
""".format(
        name = ctx.name,
        srcs = repr(["etcd/" + p for p in _ETCD_PROTOS]),
        outs = repr(outs),
    ))

etcd_api = repository_rule(implementation = _etcd_api_impl, local = True)

# A Debian source package as Debian builds it: the upstream tarball with the patches in
# debian/patches/series applied, both files checked against the SHA-256 in the .dsc.
# Then `shims`: text replacements this Bazel needs (each must match, or the fetch fails),
# and `overlay` copied in as relay/BUILD.bazel. Fetched only when a build asks for it.
# deb.debian.org's pool keeps only the versions a release still carries: when bookworm
# moves on, take version, checksums and tarball prefix from the new .dsc.
def _debian_source_impl(ctx):
    package = ctx.attr.package
    pool_dir = package[:4] if package.startswith("lib") else package[0]
    pool = "https://deb.debian.org/debian/pool/main/%s/%s/" % (pool_dir, package)
    upstream_version = ctx.attr.version.split("-")[0]
    ctx.download_and_extract(
        url = pool + "%s_%s.orig.tar.gz" % (package, upstream_version),
        sha256 = ctx.attr.orig_sha256,
        stripPrefix = ctx.attr.strip_prefix,
    )
    ctx.download_and_extract(
        url = pool + "%s_%s.debian.tar.xz" % (package, ctx.attr.version),
        sha256 = ctx.attr.debian_sha256,
        output = "debian-source",
    )
    for line in ctx.read("debian-source/debian/patches/series").split("\n"):
        patch = line.split("#")[0].strip()
        if patch:
            # GNU patch, as quilt applies them (Bazel's own patcher allows no offsets).
            result = ctx.execute(["patch", "-p1", "--forward", "--batch", "-i",
                                  "debian-source/debian/patches/" + patch])
            if result.return_code != 0:
                fail("%s: debian/patches/%s did not apply (is `patch` installed? run tools/bazel): %s" %
                     (package, patch, result.stdout + result.stderr))
    for path, pairs in ctx.attr.shims.items():
        if len(pairs) % 2:
            fail("shims[%s]: pairs of (old, new) text expected" % path)
        text = ctx.read(path)
        for i in range(0, len(pairs), 2):
            if pairs[i] not in text:
                fail("%s %s: shim target %r not found (a new version? revisit the shims)" %
                     (package, path, pairs[i]))
            text = text.replace(pairs[i], pairs[i + 1])
        ctx.file(path, text)
    ctx.file("relay/BUILD.bazel", ctx.read(ctx.attr.overlay))

debian_source = repository_rule(
    implementation = _debian_source_impl,
    attrs = {
        "package": attr.string(mandatory = True),
        "version": attr.string(mandatory = True),
        "orig_sha256": attr.string(mandatory = True),
        "debian_sha256": attr.string(mandatory = True),
        "strip_prefix": attr.string(),
        "shims": attr.string_list_dict(),
        "overlay": attr.label(mandatory = True),
    },
)

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

"""Protobuf + gRPC C++ code generation with Debian's protoc and grpc_cpp_plugin."""

load("//bazel:defs.bzl", "GRPC_COMPATIBLE")

def relay_cc_grpc_library(name, src, deps = [], visibility = None):
    """Generates <src>.pb.{h,cc} and <src>.grpc.pb.{h,cc} and wraps them in a cc_library.

    Args:
      name: name of the cc_library.
      src: one .proto file in this package; imports are resolved from the workspace root.
      deps: cc_library targets generated from the protos that `src` imports.
      visibility: as for cc_library.
    """
    base = src[:-len(".proto")]
    pkg = native.package_name()
    outs = [base + ext for ext in [".pb.h", ".pb.cc", ".grpc.pb.h", ".grpc.pb.cc"]]
    native.genrule(
        name = name + "_codegen",
        srcs = [src],
        outs = outs,
        cmd = " ".join([
            "/usr/bin/protoc",
            "--proto_path=.",
            "--cpp_out=$(GENDIR)",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            (pkg + "/" + src) if pkg else src,
        ]),
        target_compatible_with = GRPC_COMPATIBLE,
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc", base + ".grpc.pb.cc"],
        hdrs = [base + ".pb.h", base + ".grpc.pb.h"],
        deps = deps + ["@system//:grpc", "@system//:protobuf"],
        target_compatible_with = GRPC_COMPATIBLE,
        visibility = visibility,
    )

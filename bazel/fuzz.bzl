"""Fuzz targets: a libFuzzer binary under --config=fuzz, a corpus replay otherwise."""

load("//bazel:defs.bzl", "SSL_COPTS")

def relay_fuzzer(name, srcs, deps = [], tags = [], data = []):
    """`<name>_fuzzer`, a fuzz target binary, and `<name>_fuzz_test`, which runs it.

    The corpus is fuzz/corpus/<name>/ (kept in the tree). Outside --config=fuzz the
    binary runs each corpus input once (fuzz/replay_main.cc) and the test is a
    regression test; with --config=fuzz it is libFuzzer (ASan + UBSan) and the test
    fuzzes for RELAY_FUZZ_SECONDS.
    """
    native.cc_binary(
        name = name + "_fuzzer",
        srcs = srcs,
        copts = SSL_COPTS,
        linkopts = select({
            "//bazel:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        deps = deps + select({
            "//bazel:fuzzing": [],
            "//conditions:default": ["//fuzz:replay_main"],
        }),
        data = data,
        testonly = True,
    )
    native.filegroup(
        name = name + "_corpus",
        srcs = native.glob(["corpus/" + name + "/**"]),
        testonly = True,
    )
    native.sh_test(
        name = name + "_fuzz_test",
        srcs = ["run_fuzzer.sh"],
        args = select({
            "//bazel:fuzzing": ["fuzz"],
            "//conditions:default": ["replay"],
        }) + [
            "$(rootpath :%s_fuzzer)" % name,
            "fuzz/corpus/" + name,
        ],
        data = [":" + name + "_fuzzer", ":" + name + "_corpus"] + data,
        tags = tags,
        size = "medium",
    )

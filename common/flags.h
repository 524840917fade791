#ifndef RELAY_COMMON_FLAGS_H_
#define RELAY_COMMON_FLAGS_H_

// Small helpers shared by the binaries' main(): repeated list flags, default state
// directories, SAN lists and signal handling.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace relay {

// Sets the --help text and makes --help list this binary's own flags (Abseil's
// default lists only flags from a file named after the binary), and --version print
// "<program> <version>". Also turns off Abseil's mutex deadlock detector, which
// Debian's Abseil build runs in production binaries (tests keep it).
void SetUsage(const char* program, const char* message);

// Parses the command line (flags removed, arguments kept, argv[0] first). --help,
// --helpfull and --version print to stdout and exit 0: the user asked for them.
// An unknown or malformed flag prints why and exits 1.
std::vector<char*> ParseFlags(int argc, char** argv);

// True when --<name> was given on the command line, not only defaulted: a flag that
// has a Helm value overrides it only then, so its --help can show its real default.
bool FlagGiven(const char* name);

// The flag's value when given on the command line, else T() ("" or 0): "not set", so
// that a Helm value or a computed default applies.
template <typename T>
T GivenFlag(const absl::Flag<T>& flag, const char* name) {
  return FlagGiven(name) ? absl::GetFlag(flag) : T();
}

// The flag's value when given on the command line, else `otherwise` (its Helm value).
template <typename T>
T FlagOr(const absl::Flag<T>& flag, const char* name, T otherwise) {
  return FlagGiven(name) ? absl::GetFlag(flag) : std::move(otherwise);
}

// OK when `address` is host:port with a port number (0 picks a free one), or empty when
// `may_be_empty`; otherwise an error naming --<name>.
absl::Status CheckListenAddress(const char* name, const std::string& address, bool may_be_empty);

// Abseil list flags take one comma-separated value and a repeat replaces it; this
// merges `--name=a --name=b` into `--name=a,b` for each name in `names`. The returned
// pointers stay valid for the life of the process.
std::vector<char*> MergeRepeatedListFlags(int argc, char** argv,
                                          const std::vector<std::string>& names);

// `flag_value` when set; otherwise <workspace>/.relay/<component> when run through
// `bazel run` (BUILD_WORKSPACE_DIRECTORY), else ./.relay/<component>, made absolute.
std::string DefaultStateDir(const std::string& flag_value, const std::string& component);

// For main(): print "<program>: <message>" on stderr and exit with status 2.
[[noreturn]] void ExitWithError(const std::string& program, const std::string& message);

// `value` of duration flag --<name>, which must be positive; exits otherwise.
absl::Duration PositiveDurationOrExit(const std::string& program, const std::string& name, absl::Duration value);

// Applies --log_level=<text>; exits when it is not debug, info, warning or error.
void SetLogLevelOrExit(const std::string& program, const std::string& text);

// Sorts SAN entries into DNS names and IP addresses; anything else is an error.
absl::Status SplitSans(const std::vector<std::string>& sans, std::vector<std::string>* dns_names,
                       std::vector<std::string>* ip_addresses);

// Raises the open-file soft limit to the hard limit (a server holds one descriptor per
// agent connection; the usual soft limit of 1024 would cap the fleet). Returns it.
uint64_t RaiseOpenFileLimit();

// Call before starting threads: SIGINT and SIGTERM are then delivered only to
// WaitForTerminationSignal(), which returns when one arrives.
void BlockTerminationSignals();
void WaitForTerminationSignal();

}  // namespace relay

#endif  // RELAY_COMMON_FLAGS_H_

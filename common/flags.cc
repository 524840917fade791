#include "common/flags.h"

#include <arpa/inet.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>

#include "absl/flags/internal/parse.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/names.h"
#include "common/version.h"

namespace relay {

void SetUsage(const char* program, const char* message) {
  absl::SetProgramUsageMessage(message);
  absl::FlagsUsageConfig config;
  auto ours = [](absl::string_view file) { return !absl::StrContains(file, "absl/"); };
  config.contains_help_flags = ours;
  config.contains_helpshort_flags = ours;
  std::string program_name = program;
  config.version_string = [program_name] { return absl::StrCat(program_name, " ", kVersion, "\n"); };
  absl::SetFlagsUsageConfig(config);
  // Debian builds Abseil with the mutex deadlock detector on: every new Mutex that is
  // held with another enters a global graph (GraphCycles), which cost the fleet
  // benchmark's load process ~10% of its CPU and the server ~2%. Tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

std::vector<char*> ParseFlags(int argc, char** argv) {
  using namespace absl::flags_internal;  // NOLINT: Abseil's own parser, minus its exit codes
  // Abseil exits 1 after --help; parse without its usage handling, then answer the
  // usage flags here and exit 0.
  std::vector<char*> rest = ParseCommandLineImpl(argc, argv, ArgvListAction::kRemoveParsedArgs,
                                                 UsageFlagsAction::kIgnoreUsage,
                                                 OnUndefinedFlag::kAbortIfUndefined);
  if (HandleUsageFlags(std::cout, absl::ProgramUsageMessage()) != -1) {
    std::cout.flush();
    std::exit(0);
  }
  return rest;
}

bool FlagGiven(const char* name) { return absl::flags_internal::WasPresentOnCommandLine(name); }

std::vector<char*> MergeRepeatedListFlags(int argc, char** argv,
                                          const std::vector<std::string>& names) {
  static std::vector<std::string>* storage = new std::vector<std::string>();
  std::map<std::string, std::vector<std::string>> values;
  std::vector<char*> out;
  for (int i = 0; i < argc; ++i) {
    absl::string_view arg = argv[i];
    bool merged = false;
    for (const std::string& name : names) {
      for (const std::string& prefix : {absl::StrCat("--", name, "="), absl::StrCat("-", name, "=")}) {
        if (i > 0 && absl::StartsWith(arg, prefix)) {
          values[name].emplace_back(arg.substr(prefix.size()));
          merged = true;
        }
      }
    }
    if (!merged) out.push_back(argv[i]);
  }
  storage->reserve(storage->size() + values.size());
  for (const auto& [name, list] : values) {
    storage->push_back(absl::StrCat("--", name, "=", absl::StrJoin(list, ",")));
    out.push_back(storage->back().data());
  }
  return out;
}

std::string DefaultStateDir(const std::string& flag_value, const std::string& component) {
  std::string dir = flag_value;
  if (dir.empty()) {
    const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
    dir = workspace != nullptr ? absl::StrCat(workspace, "/.relay/", component) : absl::StrCat(".relay/", component);
  }
  if (!dir.empty() && dir[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) != nullptr) dir = absl::StrCat(cwd, "/", dir);
  }
  return dir;
}

void ExitWithError(const std::string& program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program.c_str(), message.c_str());
  std::exit(2);
}

absl::Duration PositiveDurationOrExit(const std::string& program, const std::string& name, absl::Duration value) {
  if (value <= absl::ZeroDuration()) {
    ExitWithError(program, absl::StrCat("--", name, "=", absl::FormatDuration(value),
                                        " is not a positive duration (e.g. 720h, 30m, 45s)"));
  }
  return value;
}

void SetLogLevelOrExit(const std::string& program, const std::string& text) {
  LogLevel level;
  if (!ParseLogLevel(text, &level)) {
    ExitWithError(program, "--log_level must be debug, info, warning or error");
  }
  SetLogLevel(level);
}

absl::Status SplitSans(const std::vector<std::string>& sans, std::vector<std::string>* dns_names,
                       std::vector<std::string>* ip_addresses) {
  for (const std::string& san : sans) {
    if (san.empty()) continue;
    unsigned char buffer[16];
    if (inet_pton(AF_INET, san.c_str(), buffer) == 1 || inet_pton(AF_INET6, san.c_str(), buffer) == 1) {
      ip_addresses->push_back(san);
    } else if (IsDnsName(san)) {
      dns_names->push_back(san);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--server_san \"", san, "\" is neither an IP address nor a lowercase DNS name"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckListenAddress(const char* name, const std::string& address, bool may_be_empty) {
  if (address.empty() && may_be_empty) return absl::OkStatus();
  size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, "=", address, " is not host:port (e.g. 0.0.0.0:9091, 127.0.0.1:0 for any free port",
        may_be_empty ? ", or empty for none)" : ")"));
  }
  return absl::OkStatus();
}

uint64_t RaiseOpenFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

namespace {
sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void WaitForTerminationSignal() {
  sigset_t set = TerminationSignals();
  int signal_number = 0;
  sigwait(&set, &signal_number);
}

}  // namespace relay

// Issue 12.15 and 12.16: every binary answers --help and --version with exit 0, shows
// its real defaults, and follows one flag convention (README "Flags").
#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Binary {
  std::string path;
  std::string program;
  bool long_running;
};

std::vector<Binary> Binaries() {
  return {{ServerBinary(), "relay-mgmt-server", true},
          {AgentBinary(), "relay-agent", true},
          {RotatorBinary(), "relay-rotator", true},
          {RelayctlBinary(), "relayctl", false}};
}

TEST(CliTest, HelpAndVersionExitZero) {
  for (const Binary& binary : Binaries()) {
    CommandResult help = RunCommand({binary.path, "--help"});
    EXPECT_EQ(help.exit_code, 0) << binary.path << "\n" << help.output;
    EXPECT_THAT(help.output, HasSubstr("--log_level")) << binary.path;
    EXPECT_THAT(help.output, HasSubstr("--namespace")) << binary.path;
    CommandResult version = RunCommand({binary.path, "--version"});
    EXPECT_EQ(version.exit_code, 0) << binary.path;
    EXPECT_EQ(version.output, absl::StrCat(binary.program, " ", kVersion, "\n"));
    CommandResult unknown = RunCommand({binary.path, "--no_such_flag=1"});
    EXPECT_NE(unknown.exit_code, 0) << binary.path;
    EXPECT_THAT(unknown.output, HasSubstr("no_such_flag")) << binary.path;
  }
}

TEST(CliTest, OneConventionForEndpointsValuesAndDefaults) {
  for (const Binary& binary : Binaries()) {
    std::string help = RunCommand({binary.path, "--help"}).output;
    EXPECT_THAT(help, HasSubstr("--values")) << binary.path;
    if (binary.long_running) {
      EXPECT_THAT(help, HasSubstr("--metrics_address")) << binary.path;
      EXPECT_THAT(help, HasSubstr("--health_address")) << binary.path;
      EXPECT_THAT(help, HasSubstr("--ready_file")) << binary.path;
    }
  }
  // A flag that has a real default shows it, not a 0 or "" that stands for it.
  std::string rotator = RunCommand({RotatorBinary(), "--help"}).output;
  EXPECT_THAT(rotator, HasSubstr("default: 0.5"));
  EXPECT_THAT(rotator, HasSubstr("default: \"127.0.0.1:9900\""));
  EXPECT_THAT(rotator, Not(HasSubstr("refused_pause")));
  std::string agent = RunCommand({AgentBinary(), "--help"}).output;
  EXPECT_THAT(agent, HasSubstr("default: \"gloo-mesh-mgmt-server.gloo-mesh\""));
  std::string server = RunCommand({ServerBinary(), "--help"}).output;
  EXPECT_THAT(server, HasSubstr("--client_cert_ttl"));
  EXPECT_THAT(server, HasSubstr("default: 720h;"));  // a duration, not a string
}

// A flag given on the command line wins over the values file; one not given does not.
TEST(CliTest, GivenFlagsOverrideValuesAndDefaultsDoNot) {
  std::string dir = MakeTempDir("cli");
  WriteFile(dir + "/values.yaml",
            "glooAgent:\n  relay:\n    serverAddress: 127.0.0.1:1\n    cluster: from-values\n");
  // The server address from the values file is used (the flag's default is not).
  CommandResult from_values = RunCommand({AgentBinary(), "--values=" + dir + "/values.yaml", "--secrets_dir=" + dir + "/a"});
  EXPECT_THAT(from_values.output, HasSubstr("server=127.0.0.1:1 "));
  EXPECT_THAT(from_values.output, HasSubstr("cluster=from-values"));
  CommandResult from_flag = RunCommand({AgentBinary(), "--values=" + dir + "/values.yaml", "--secrets_dir=" + dir + "/a",
                                        "--server_address=127.0.0.1:2", "--cluster=from-flag"});
  EXPECT_THAT(from_flag.output, HasSubstr("server=127.0.0.1:2 "));
  EXPECT_THAT(from_flag.output, HasSubstr("cluster=from-flag"));
}

}  // namespace
}  // namespace relay::e2e

#include "common/log.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

// Everything after "event=" of a line.
std::string Tail(LogFields fields) {
  std::string line = FormatLogLine(LogLevel::kWarning, "register_refused", fields);
  return line.substr(line.find(" level="));
}

TEST(LogTest, PlainValuesStayPlain) {
  EXPECT_EQ(Tail({{"cluster", "east-1"}, {"serial", "4F00AB"}}),
            " level=warning event=register_refused cluster=east-1 serial=4F00AB\n");
}

TEST(LogTest, SpacesQuotesAndEqualsAreQuoted) {
  EXPECT_EQ(Tail({{"error", "a \"b\" c=d"}}),
            " level=warning event=register_refused error=\"a \\\"b\\\" c=d\"\n");
  EXPECT_EQ(Tail({{"empty", ""}}), " level=warning event=register_refused empty=\"\"\n");
}

// A cluster name from an unauthenticated request can hold CR, LF, ESC and NUL: none of
// them reaches the log raw, so nobody can forge a line or drive an operator's terminal.
TEST(LogTest, ControlAndNonAsciiBytesAreEscaped) {
  static constexpr char kHostile[] =
      "ok\r\nts=2026 level=info event=cluster_registered cluster=victim\x1b[2J\x00x\x7f\xc3\xa9\x9b";
  std::string hostile(kHostile, sizeof(kHostile) - 1);
  std::string line = FormatLogLine(LogLevel::kWarning, "register_refused", {{"cluster", hostile}});
  for (char c : line.substr(0, line.size() - 1)) {
    unsigned char byte = static_cast<unsigned char>(c);
    EXPECT_TRUE(byte >= 0x20 && byte < 0x7f) << "raw byte " << static_cast<int>(byte) << " in " << line;
  }
  EXPECT_THAT(line, EndsWith("\n"));
  EXPECT_THAT(line, HasSubstr("cluster=\"ok\\r\\nts=2026 level=info event=cluster_registered "
                              "cluster=victim\\x1b[2J\\x00x\\x7f\\xc3\\xa9\\x9b\""));
}

TEST(LogTest, BackslashesAreEscapedSoEscapesCannotBeForged) {
  EXPECT_EQ(Tail({{"message", "a\\nb"}}), " level=warning event=register_refused message=\"a\\\\nb\"\n");
  EXPECT_THAT(Tail({{"message", "a\\nb"}}), Not(HasSubstr("a\\nb\"")));
}

}  // namespace
}  // namespace relay

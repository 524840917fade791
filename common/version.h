#ifndef RELAY_COMMON_VERSION_H_
#define RELAY_COMMON_VERSION_H_

// relay's version, in one place: every binary prints it for --version, the agent sends
// it in Hello ("relay-agent/<version>"), and the server refuses agents of another major
// version. Change it here for a release.

namespace relay {

inline constexpr int kVersionMajor = 0;
inline constexpr int kVersionMinor = 3;
inline constexpr int kVersionPatch = 0;
inline constexpr char kVersion[] = "0.3.0";

}  // namespace relay

#endif  // RELAY_COMMON_VERSION_H_

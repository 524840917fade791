#ifndef RELAY_MGMT_ACCEPT_GUARD_H_
#define RELAY_MGMT_ACCEPT_GUARD_H_

// Keeps the management server's listening ports alive when descriptors run out.
//
// Why: gRPC 1.51 (Debian's) stops accepting on a listening socket for good after one
// accept4() fails with EMFILE (CVE-2023-4785, fixed upstream after 1.51): about 20,000
// idle TCP connections, no TLS needed, and the relay port never accepted again. gRPC
// offers no hook on its accept loop, so accept_guard.cc defines accept4 in the server
// binary (as ssl_release_buffers.cc defines SSL_new): the dynamic linker binds gRPC's
// and libmicrohttpd's calls to it, and it calls the C library's.
//
// What it does:
//  - On the relay port, a connection that would leave fewer than the reserve of free
//    descriptors is closed at once ("shed"), so the server keeps descriptors for its
//    files, admin socket, health probes and existing streams.
//  - On every port, EMFILE/ENFILE never reaches the caller: a reserve descriptor is
//    given up to accept the waiting connection and close it (the libuv/nginx technique),
//    and the caller sees EAGAIN, so its listener stays armed.
//  - On the relay port, while a bound of connections are still in their TLS handshake
//    (counted by tls_handshake_count.cc through HandshakeStarted/HandshakeEnded), a new
//    connection is closed at once: idle or slow connections cannot hold the server's
//    handshake work hostage, and a reconnecting fleet is admitted at the pace the
//    server finishes handshakes (the rest retry with backoff).

#include <cstdint>

#include "absl/time/time.h"

namespace relay::mgmt::accept_guard {

// Guards the listener bound to `port` (the relay), keeping `reserve` descriptors below
// the open-file limit for everything else.
void Protect(int port, int reserve);

// True while the relay port would shed a new connection (too few descriptors are free)
// or shed one within the last `window`: what /readyz reports.
bool Overloaded(absl::Duration window = absl::Seconds(2));

// Connections closed unserved so far because descriptors ran short.
uint64_t ShedConnections();

// Relay connections are shed while `max` connections are in their TLS handshake
// (0: no bound).
void SetMaxPendingHandshakes(int max);
int PendingHandshakes();
// Connections closed unserved so far because the handshake bound was reached.
uint64_t ShedForHandshakes();

// Called by the TLS hooks of the server binary: a server-side handshake began; it
// finished or its connection went.
void HandshakeStarted();
void HandshakeEnded();

}  // namespace relay::mgmt::accept_guard

#endif  // RELAY_MGMT_ACCEPT_GUARD_H_

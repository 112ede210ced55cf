// Passing fds over unix sockets (SCM_RIGHTS): the plain calls spawn.cc uses for a console
// socket, beside fdpass.cc's N-API sendFds/recvFds. No N-API here.
#pragma once
#include <cstddef>

#include "msg.h"

namespace nsbox {

// A unix stream socket (non-blocking, close-on-exec) connected to `path`: the fd, or -errno
// with `e` filled (step `step`). Never blocks: a listener whose backlog is full gives EAGAIN,
// as Node's net.connect does.
int UnixConnect(const char* path, const char* step, Err* e);

// One sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of `data` (at least one byte: a stream socket
// carries fds with data only) with `fds` as SCM_RIGHTS when nfds > 0: the bytes sent, or
// -errno (EAGAIN when it would block) with `e` filled.
long SendFdsOnce(int sock, const int* fds, size_t nfds, const void* data, size_t len, const char* step, Err* e);

// OCI --console-socket, as runc does it: connects to `path`, sends the terminal's `master`
// in one message with the name "/dev/ptmx", closes the connection. 0 or -errno (step
// "console-socket", the path).
int SendConsole(const char* path, int master, Err* e);

}  // namespace nsbox

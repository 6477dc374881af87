// chsync-sink HTTP(S) server: Beast async, one shared_from_this session per connection on a
// strand, N io threads. Routes and fault handling are described in tools/sink/README.md.
// Blocks until SIGINT/SIGTERM or POST /shutdown. Errors: throws std::exception on bind,
// TLS-setup or port-file failures (startup only).
#pragma once

#include <cstdint>
#include <string>

#include "tools/sink/sink_state.h"

namespace chsync::sink {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: the kernel picks a free port
  std::string port_file;   // written atomically (temp + rename) once bound
  unsigned threads = 2;
  std::string tls_cert;  // PEM; with tls_key → HTTPS
  std::string tls_key;
};

// Returns the process exit code (0 on a clean stop).
int run_sink_server(const ServerOptions& opts, SinkState& state);

}  // namespace chsync::sink

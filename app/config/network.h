// The network exporters of a sync (otlp, langfuse, phoenix, langfuse-legacy) built from a
// resolved BackendSpec (app/config/backend_options.h): endpoint resolution (design Contracts:
// the given URL as is, else OTEL_* variables, else http://127.0.0.1:4318/v1/traces; Langfuse
// and Phoenix take a base URL and add their paths), credentials, TLS and retry settings.
// Errors: ConfigError (exit 2) for a missing credential, an unknown type or a TLS setting the
// client refuses. Called once per instance at start-up, on the main thread. The exporter logs
// (failures, rejections, the --insecure warning) through `logger`.
#pragma once

#include <memory>

#include "app/sync/sync.h"
#include "backends/exporter.h"
#include "pipeline/log.h"

namespace chsync {

std::unique_ptr<Exporter> make_network_exporter(const BackendSpec& spec, const log::Logger& logger);

}  // namespace chsync

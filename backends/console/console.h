// Console, file and null exporters: synchronous backends that "deliver" by writing (or dropping).
//
// console: spans to stdout, one per line, as JSON (--format json / --json: the 19 seed keys) or
// text (--format text: one readable line per span). file: the same JSON lines appended to a path.
// null: maps and discards (for measuring). Each acknowledges a batch as delivered as soon as it is
// written; a write error (EPIPE, ENOSPC) makes the exporter fatal.
// Thread: send() from one thread. Output is buffered and flushed per batch. Lines may be made
// ahead by map workers (make_encoder; not for null), then send_encoded only writes them.
#pragma once

#include <memory>
#include <string>

#include "backends/exporter.h"

namespace chsync {

enum class ConsoleFormat { kText, kJson };

std::unique_ptr<Exporter> make_console_exporter(std::string instance, ConsoleFormat format,
                                                int fd = 1);
std::unique_ptr<Exporter> make_file_exporter(std::string instance, const std::string& path);
std::unique_ptr<Exporter> make_null_exporter(std::string instance);

// One text line for a span (console --format text).
std::string format_span_text(const Span& span);

}  // namespace chsync

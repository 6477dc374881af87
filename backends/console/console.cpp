#include "backends/console/console.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "backends/console/json_writer.h"

namespace chsync {
namespace {

class WritingExporter : public Exporter {
 public:
  WritingExporter(std::string instance, ConsoleFormat format, int fd, bool own_fd, bool discard)
      : instance_(std::move(instance)), format_(format), fd_(fd), own_fd_(own_fd),
        discard_(discard) {}
  ~WritingExporter() override {
    if (own_fd_ && fd_ >= 0) ::close(fd_);
  }

  std::string_view instance() const noexcept override { return instance_; }

  bool send(std::vector<Span>&& spans) override {
    if (fatal()) return false;
    std::vector<SpanRef> refs;
    refs.reserve(spans.size());
    for (const auto& s : spans) refs.push_back({s.span_key(), s.bundle_seq});
    if (before_send_ && !refs.empty() && !before_send_(refs)) {
      // Refused (work sharing: the unit changed hands): nothing printed, the run carries on.
      Ack ack;
      ack.outcome = Ack::Outcome::kFailed;
      ack.spans = std::move(refs);
      ack.reason = "not sent: the work unit changed hands";
      if (ack_) ack_(std::move(ack));
      return true;
    }
    if (!discard_) {
      buf_.clear();
      for (const auto& s : spans) {
        if (format_ == ConsoleFormat::kJson)
          append_span_json(buf_, s);
        else
          buf_ += format_span_text(s);
        buf_.push_back('\n');
      }
      if (!write_all(buf_)) {
        Ack ack;
        ack.outcome = Ack::Outcome::kFailed;
        ack.spans = std::move(refs);
        ack.reason = fatal_reason();
        if (ack_) ack_(std::move(ack));
        return false;
      }
    }
    {
      // The progress thread reads the stats while this (dispatcher) thread writes them.
      std::lock_guard lock(mu_);
      if (!discard_) {
        stats_.bytes_raw += buf_.size();
        stats_.bytes_wire += buf_.size();
      }
      stats_.spans_delivered += spans.size();
      if (!spans.empty()) {
        ++stats_.requests;
        ++stats_.requests_ok;
      }
    }
    Ack ack;
    ack.outcome = Ack::Outcome::kDelivered;
    ack.spans = std::move(refs);
    if (ack_ && !ack.spans.empty()) ack_(std::move(ack));
    return true;
  }

  bool stop(std::chrono::milliseconds) noexcept override { return true; }
  bool fatal() const noexcept override {
    std::lock_guard lock(mu_);
    return fatal_;
  }
  std::string fatal_reason() const override {
    std::lock_guard lock(mu_);
    return fatal_reason_;
  }
  ExporterStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  bool write_all(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd_, data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::string why = std::string("write failed: ") + std::strerror(errno);
        std::lock_guard lock(mu_);
        fatal_ = true;
        fatal_reason_ = std::move(why);
        return false;
      }
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  std::string instance_;
  ConsoleFormat format_;
  int fd_;
  bool own_fd_;
  bool discard_;
  std::string buf_;
  mutable std::mutex mu_;  // guards the three below
  bool fatal_ = false;
  std::string fatal_reason_;
  ExporterStats stats_;
};

std::string short_text(const std::optional<std::string>& s, std::size_t n) {
  if (!s) return "";
  std::string out;
  for (char c : s->substr(0, n)) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  // Do not cut inside a UTF-8 sequence.
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
  if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
  if (s->size() > n) out += "…";
  return out;
}

}  // namespace

std::string format_span_text(const Span& s) {
  std::string line = format_rfc3339_ms(s.start_ms);
  line += "  ";
  line += to_string(s.kind);
  line.append(12 - std::min<std::size_t>(12, to_string(s.kind).size()), ' ');
  line += to_hex(s.trace_id).substr(0, 8);
  line += "/";
  line += to_hex(s.span_id);
  line += "  ";
  line += s.name;
  if (s.kind == SpanKind::kGeneration)
    line += "  tokens " + std::to_string(s.tokens_in) + "→" + std::to_string(s.tokens_out);
  if (s.is_error) line += "  ERROR";
  if (s.kind == SpanKind::kTrace && s.input) line += "  \"" + short_text(s.input, 60) + "\"";
  line += "  (" + s.source_file + ":" + std::to_string(s.source_line) + ")";
  return line;
}

std::unique_ptr<Exporter> make_console_exporter(std::string instance, ConsoleFormat format,
                                                int fd) {
  return std::make_unique<WritingExporter>(std::move(instance), format, fd, false, false);
}

std::unique_ptr<Exporter> make_file_exporter(std::string instance, const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  return std::make_unique<WritingExporter>(std::move(instance), ConsoleFormat::kJson, fd, true,
                                           false);
}

std::unique_ptr<Exporter> make_null_exporter(std::string instance) {
  return std::make_unique<WritingExporter>(std::move(instance), ConsoleFormat::kJson, -1, false,
                                           true);
}

}  // namespace chsync

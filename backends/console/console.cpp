#include "backends/console/console.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "backends/console/span_json.h"
#include "pipeline/text.h"

namespace chsync {
namespace {

// One span's output line, '\n' included (also made ahead by map workers: stateless).
void append_line(ConsoleFormat format, const Span& s, std::string& out) {
  if (format == ConsoleFormat::kJson) append_span_json(out, s);
  else out += format_span_text(s);
  out.push_back('\n');
}

class LineEncoder final : public SpanBytesEncoder {
 public:
  explicit LineEncoder(ConsoleFormat format) : format_(format) {}
  void encode(const Span& span, std::string& out) override { append_line(format_, span, out); }

 private:
  ConsoleFormat format_;
};

class WritingExporter : public Exporter {
 public:
  WritingExporter(std::string instance, ConsoleFormat format, int fd, bool own_fd, bool discard)
      : instance_(std::move(instance)),
        format_(format),
        fd_(fd),
        own_fd_(own_fd),
        discard_(discard) {}
  ~WritingExporter() override {
    if (own_fd_ && fd_ >= 0) ::close(fd_);
  }
  // A copy would close fd_ twice.
  WritingExporter(const WritingExporter&) = delete;
  WritingExporter& operator=(const WritingExporter&) = delete;

  std::string_view instance() const noexcept override { return instance_; }

  bool send(std::vector<Span>&& spans) override { return write_spans(spans, nullptr); }
  std::unique_ptr<SpanBytesEncoder> make_encoder() const override {
    if (discard_) return nullptr;  // null: nothing to format
    return std::make_unique<LineEncoder>(format_);
  }
  bool send_encoded(std::vector<Span>&& spans,
                    const std::vector<std::string_view>& encoded) override {
    if (encoded.size() != spans.size())
      throw std::logic_error("send_encoded: " + std::to_string(encoded.size()) + " lines for " +
                             std::to_string(spans.size()) + " spans");
    return write_spans(spans, &encoded);
  }

 private:
  // encoded: null, or each span's line made by a LineEncoder.
  bool write_spans(const std::vector<Span>& spans, const std::vector<std::string_view>* encoded) {
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
      if (encoded) {
        for (auto line : *encoded) buf_ += line;
      } else {
        for (const auto& s : spans) append_line(format_, s, buf_);
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

 public:
  bool stop(std::chrono::milliseconds /*drain_timeout*/) noexcept override { return true; }
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
        std::string why = std::string("write failed: ") + errno_text(errno);
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

// Text for one line: control characters (newlines, tabs, escape sequences) become spaces, so a
// span is always one line and nothing reaches the terminal as a control sequence.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

// At most n bytes of s on one line, cut at a UTF-8 character boundary ("…" marks a cut).
std::string short_text(const std::optional<std::string>& s, std::size_t n) {
  if (!s) return "";
  if (s->size() <= n) return one_line(*s);
  return one_line(std::string_view(*s).substr(0, utf8_cut(*s, n))) + "…";
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
  line += one_line(s.name);
  if (s.kind == SpanKind::kGeneration)
    line += "  tokens " + std::to_string(s.tokens_in) + "→" + std::to_string(s.tokens_out);
  if (s.is_error) line += "  ERROR";
  if (s.kind == SpanKind::kTrace && s.input) line += "  \"" + short_text(s.input, 60) + "\"";
  line += "  (" + one_line(s.source_file) + ":" + std::to_string(s.source_line) + ")";
  return line;
}

std::unique_ptr<Exporter> make_console_exporter(std::string instance, ConsoleFormat format,
                                                int fd) {
  return std::make_unique<WritingExporter>(std::move(instance), format, fd, false, false);
}

std::unique_ptr<Exporter> make_file_exporter(std::string instance, const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + errno_text(errno));
  return std::make_unique<WritingExporter>(std::move(instance), ConsoleFormat::kJson, fd, true,
                                           false);
}

std::unique_ptr<Exporter> make_null_exporter(std::string instance) {
  return std::make_unique<WritingExporter>(std::move(instance), ConsoleFormat::kJson, -1, false,
                                           true);
}

}  // namespace chsync

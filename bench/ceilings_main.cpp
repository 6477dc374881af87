// chsync-ceilings: what this machine can do on the same files, measured in one run, as the
// yardstick for `chsync sync` (bench/e2e, BENCHMARKS.md).
//
//   chsync-ceilings DIR [--sink URL] [--threads N] [--in-flight 4]
//
// Passes (all over the files chsync's discover finds under DIR, page cache warm):
//   read      open + read() of every file into a 1 MiB buffer
//   parse     simdjson On-Demand over every line, touching every field (raw tokens, no copies)
//   chained   read + split + parse + map (BundleMapper) + encode (otlp SpanEncoder, ~1 MiB
//             request bodies), in memory, no queues; 1..N threads each take whole bundles
//   upload    loopback HTTP POST of pre-encoded ~1 MiB bodies (backends/http client, 4 in flight)
//             to URL (chsync-sink --no-decode); responses discarded
// Output: one line per pass: `ceiling NAME THREADS BYTES SECONDS MB/s [extra]`.
#include <fcntl.h>
#include <unistd.h>

#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/http/http_client.h"
#include "backends/otlp/otlp_proto.h"
#include "stages/discover/discover.h"
#include "stages/mapper/mapper.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace chsync;

double secs_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void report(const char* name, int threads, std::uint64_t bytes, double s,
            const std::string& extra = "") {
  std::printf("ceiling %s %d %llu %.4f %.1f %s\n", name, threads,
              static_cast<unsigned long long>(bytes), s, static_cast<double>(bytes) / 1e6 / s,
              extra.c_str());
  std::fflush(stdout);
}

// Whole file into buf (with simdjson padding); false if unreadable.
bool slurp(const std::string& path, std::string& buf) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  buf.clear();
  std::size_t n = 0;
  for (;;) {
    if (buf.size() < n + (1 << 20)) buf.resize(n + (1 << 20));
    ssize_t r = ::read(fd, buf.data() + n, 1 << 20);
    if (r <= 0) break;
    n += static_cast<std::size_t>(r);
  }
  ::close(fd);
  buf.resize(n + simdjson::SIMDJSON_PADDING);
  buf.resize(n);  // capacity keeps the padding
  return true;
}

template <class Fn>
double run_threads(int threads, Fn fn) {
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  ts.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) ts.emplace_back(fn);
  for (auto& t : ts) t.join();
  return secs_since(t0);
}

std::uint64_t touch(simdjson::ondemand::value v);

std::uint64_t touch_object(simdjson::ondemand::object o) {
  std::uint64_t n = 0;
  for (auto field : o) {
    n += field.unescaped_key().value_unsafe().size();
    n += touch(field.value().value_unsafe());
  }
  return n;
}

std::uint64_t touch(simdjson::ondemand::value v) {
  switch (v.type().value_unsafe()) {
    case simdjson::ondemand::json_type::object: return touch_object(v.get_object().value_unsafe());
    case simdjson::ondemand::json_type::array: {
      std::uint64_t n = 0;
      for (auto e : v.get_array().value_unsafe()) n += touch(e.value_unsafe());
      return n;
    }
    case simdjson::ondemand::json_type::string:
      return v.get_raw_json_string().value_unsafe().raw() != nullptr ? 1 : 0;
    default: return v.raw_json_token().size();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: chsync-ceilings DIR [--sink URL] [--threads N] [--in-flight K]\n");
    return 2;
  }
  std::string dir = argv[1], sink;
  int max_threads = 2, in_flight = 4;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--sink") sink = argv[i + 1];
    else if (a == "--threads") max_threads = std::atoi(argv[i + 1]);
    else if (a == "--in-flight") in_flight = std::atoi(argv[i + 1]);
  }
  DiscoverResult d = discover({dir}, DiscoverOptions{});
  const auto& bundles = d.bundles;
  std::vector<std::string> paths;
  for (const auto& b : bundles)
    for (const auto& f : b.files) paths.push_back(f.path);
  std::printf("# %zu bundles, %zu files, %llu bytes\n", bundles.size(), paths.size(),
              static_cast<unsigned long long>(d.bytes));

  // ---- read ----
  for (int th = 1; th <= max_threads; ++th) {
    std::atomic<std::size_t> next{0};
    std::atomic<std::uint64_t> total{0};
    double s = run_threads(th, [&] {
      std::vector<char> buf(1 << 20);
      std::uint64_t n = 0;
      for (std::size_t i = 0; (i = next.fetch_add(1)) < paths.size();) {
        int fd = ::open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        for (ssize_t r = 0; (r = ::read(fd, buf.data(), buf.size())) > 0;)
          n += static_cast<std::size_t>(r);
        ::close(fd);
      }
      total += n;
    });
    report("read", th, total.load(), s);
  }

  // ---- parse-only ----
  for (int th = 1; th <= max_threads; ++th) {
    std::atomic<std::size_t> next{0};
    std::atomic<std::uint64_t> total{0}, lines{0}, chk{0};
    double s = run_threads(th, [&] {
      simdjson::ondemand::parser parser;
      std::string buf;
      std::uint64_t n = 0, l = 0, c = 0;
      for (std::size_t i = 0; (i = next.fetch_add(1)) < paths.size();) {
        if (!slurp(paths[i], buf)) continue;
        n += buf.size();
        const char* p = buf.data();
        const char* end = p + buf.size();
        while (p < end) {
          const char* nl =
              static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
          if (!nl) nl = end;
          if (nl > p) {
            ++l;
            const std::size_t cap = buf.capacity() - static_cast<std::size_t>(p - buf.data());
            auto doc = parser.iterate(p, static_cast<std::size_t>(nl - p), cap);
            simdjson::ondemand::object o;
            if (!doc.error() && !doc.get_object().get(o)) c += touch_object(o);
          }
          p = nl + 1;
        }
      }
      total += n;
      lines += l;
      chk += c;
    });
    report("parse", th, total.load(), s, "lines=" + std::to_string(lines.load()));
  }

  // ---- chained: read + parse + map + encode ----
  const std::string resource = otlp::encode_resource({{"service.name", "claude-code"}});
  const std::string scope = otlp::encode_scope("chsync", "bench");
  std::vector<std::shared_ptr<const std::string>> bodies;  // kept for the upload pass (<= 256 MiB)
  std::uint64_t kept_bytes = 0;
  std::mutex bodies_mu;
  MapOptions mo;
  mo.settle_ms = 0;
  mo.now_ms = 4102444800000;
  for (int th = 1; th <= max_threads; ++th) {
    std::atomic<std::size_t> next{0};
    std::atomic<std::uint64_t> total{0}, spans_n{0}, out_bytes{0};
    double s = run_threads(th, [&] {
      otlp::SpanEncoder enc;
      std::string buf, blob, body;
      std::vector<Span> spans;
      std::uint64_t n = 0, sp = 0, ob = 0;
      auto flush = [&] {
        if (blob.empty()) return;
        otlp::build_request(resource, scope, blob, body);
        ob += body.size();
        blob.clear();
        std::lock_guard lock(bodies_mu);
        if (kept_bytes < (256u << 20)) {
          kept_bytes += body.size();
          bodies.push_back(std::make_shared<const std::string>(body));
        }
      };
      for (std::size_t b = 0; (b = next.fetch_add(1)) < bundles.size();) {
        BundleMapper m(mo, bundles[b], nullptr);
        for (std::size_t fi = 0; fi < bundles[b].files.size(); ++fi) {
          if (!slurp(bundles[b].files[fi].path, buf)) continue;
          n += buf.size();
          const char* p = buf.data();
          const char* end = p + buf.size();
          std::uint64_t ln = 0;
          while (p < end) {
            const char* nl =
                static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
            if (!nl) nl = end;
            ++ln;
            if (nl > p) {
              const auto off = static_cast<std::size_t>(p - buf.data());
              m.add_line(fi, std::string_view(p, static_cast<std::size_t>(nl - p)),
                         buf.capacity() - off, ln, off);
            }
            p = nl + 1;
          }
        }
        spans.clear();
        m.finish(spans);
        sp += spans.size();
        for (const auto& sp1 : spans) {
          enc.append_span(sp1, blob);
          if (blob.size() >= (1u << 20)) flush();
        }
      }
      flush();
      total += n;
      spans_n += sp;
      out_bytes += ob;
    });
    report("chained", th, total.load(), s,
           "spans=" + std::to_string(spans_n.load()) +
               " encoded=" + std::to_string(out_bytes.load()) + " spans_per_s=" +
               std::to_string(static_cast<std::uint64_t>(static_cast<double>(spans_n.load()) / s)));
  }

  // ---- upload ----
  if (!sink.empty() && !bodies.empty()) {
    auto url = http::parse_url(sink);
    if (!url) {
      std::fprintf(stderr, "bad --sink URL\n");
      return 2;
    }
    auto client = http::make_http_client(http::ClientOptions{});
    std::mutex mu;
    std::condition_variable cv;
    int outstanding = 0;
    std::uint64_t sent = 0, failures = 0;
    auto t0 = Clock::now();
    for (const auto& b : bodies) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return outstanding < in_flight; });
        ++outstanding;
      }
      http::Request req;
      req.url = *url;
      req.headers = {{"Content-Type", "application/x-protobuf"}};
      req.body = b;
      const std::size_t sz = b->size();
      client->post(std::move(req), [&, sz](http::Response&& r) {
        std::lock_guard lock(mu);
        if (r.error == http::TransportError::kNone && r.status / 100 == 2) sent += sz;
        else ++failures;
        --outstanding;
        cv.notify_all();
      });
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return outstanding == 0; });
    }
    const double s = secs_since(t0);
    client->shutdown();
    report("upload", 1, sent, s,
           "requests=" + std::to_string(bodies.size()) + " failures=" + std::to_string(failures) +
               " in_flight=" + std::to_string(in_flight));
  }
  return 0;
}

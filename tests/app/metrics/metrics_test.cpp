// MetricsServer (app/metrics): a scrape over loopback, and stop(deadline) bounded by its deadline
// even while a scrape is stuck in the sampler.
#include "app/metrics/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "tests/support/loopback.h"

namespace chsync {
namespace {

using Clock = std::chrono::steady_clock;

// Connects to 127.0.0.1:port and sends one GET /metrics; returns the socket (-1 on failure).
int send_scrape(std::uint16_t port) {
  const int fd = test::connect_loopback(port);
  if (fd < 0) return -1;
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string read_all(int fd) {
  timeval tv{5, 0};  // bounded: a test never hangs on a socket
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

TEST(MetricsServerTest, ServesAScrapeAndStopsInTime) {
  MetricsRegistry registry;
  registry.set_sampler([](std::vector<MetricSample>& out) {
    out.push_back({"chsync_files_done", "", 7});
  });
  MetricsServer server(registry, "127.0.0.1:0");
  ASSERT_NE(server.port(), 0);
  const int fd = send_scrape(server.port());
  ASSERT_GE(fd, 0);
  const std::string answer = read_all(fd);
  ::close(fd);
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("chsync_files_done 7"), std::string::npos) << answer;
  const auto t0 = Clock::now();
  EXPECT_TRUE(server.stop(t0 + std::chrono::seconds(5)));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
  EXPECT_TRUE(server.stop(Clock::now()));  // idempotent: already stopped
}

// A scrape whose sampler cannot go on (it waits for a lock the run holds) keeps the io thread
// busy. Before, stop() ignored its deadline and waited for that scrape, here 5 s past it.
TEST(MetricsServerTest, StopReturnsAtItsDeadlineWhileAScrapeIsStuck) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<bool> entered{false};
  MetricsRegistry registry;
  registry.set_sampler([&](std::vector<MetricSample>&) {
    entered = true;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
  });
  auto server = std::make_unique<MetricsServer>(registry, "127.0.0.1:0");
  const int fd = send_scrape(server->port());
  ASSERT_GE(fd, 0);
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (!entered.load() && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(entered.load());
  std::thread releaser([&] {  // the old stop() would have returned only after this
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::lock_guard lock(mu);
    release = true;
    cv.notify_all();
  });
  const auto t0 = Clock::now();
  EXPECT_FALSE(server->stop(t0 + std::chrono::milliseconds(200)));
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(190));
  EXPECT_LT(took, std::chrono::milliseconds(2500));
  releaser.join();
  EXPECT_TRUE(server->stop(Clock::now() + std::chrono::seconds(10)));  // the scrape returned
  server.reset();
  ::close(fd);
}

}  // namespace
}  // namespace chsync

#include "pipeline/ids.h"

#include <openssl/evp.h>

#include <cstring>
#include <stdexcept>

namespace chsync {

struct IdHasher::Impl {
  EVP_MD* md = nullptr;
  EVP_MD_CTX* ctx = nullptr;
  Impl() : md(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx(EVP_MD_CTX_new()) {
    if (!md || !ctx) throw std::runtime_error("OpenSSL: cannot fetch SHA256");
  }
  ~Impl() {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  std::array<std::uint8_t, 32> digest(std::initializer_list<std::string_view> parts) const {
    std::array<std::uint8_t, 32> out{};
    EVP_DigestInit_ex2(ctx, md, nullptr);
    for (auto p : parts) EVP_DigestUpdate(ctx, p.data(), p.size());
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, out.data(), &n);
    return out;
  }
};

IdHasher::IdHasher() : impl_(std::make_unique<Impl>()) {}
IdHasher::~IdHasher() = default;

namespace {
template <std::size_t N>
std::array<std::uint8_t, N> first_nonzero(const std::array<std::uint8_t, 32>& d) {
  std::array<std::uint8_t, N> out{};
  for (std::size_t start = 0; start + N <= d.size(); start += N) {
    std::memcpy(out.data(), d.data() + start, N);
    for (auto b : out)
      if (b != 0) return out;
  }
  out[N - 1] = 1;  // all 32 bytes zero: astronomically unlikely, still never an invalid id
  return out;
}
}  // namespace

TraceId IdHasher::turn_trace(std::string_view session_id, std::string_view prompt_uuid) {
  return first_nonzero<16>(impl_->digest({"cc:turn:", session_id, ":", prompt_uuid}));
}

TraceId IdHasher::session_trace(std::string_view session_id) {
  return first_nonzero<16>(impl_->digest({"cc:session:", session_id}));
}

SpanId IdHasher::span(std::string_view kind, std::string_view key) {
  return first_nonzero<8>(impl_->digest({"cc:", kind, ":", key}));
}

std::array<std::uint8_t, 32> IdHasher::sha256(std::initializer_list<std::string_view> parts) {
  return impl_->digest(parts);
}

std::string sha256_hex(std::string_view data) {
  thread_local IdHasher hasher;
  auto d = hasher.sha256({data});
  return to_hex(d.data(), d.size());
}

}  // namespace chsync

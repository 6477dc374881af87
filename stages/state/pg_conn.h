// libpq helpers of the PostgreSQL state store (pg_state.cpp, pg_work.cpp): RAII results,
// connections and transactions, array literals for bigint[] / text[] parameters, and the
// error that marks a broken connection (worth reconnecting) apart from a server error.
// Internal to stages/state; not thread-safe (one Conn per thread at a time).
#pragma once

#include <fmt/format.h>
#include <libpq-fe.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stages/state/state_store.h"

namespace chsync::pg {

using Code = StateError::Code;

// The connection itself failed (server gone, restarting, network): worth reconnecting and
// retrying, unlike an error the server reported on a live connection.
class PgTransient : public StateError {
 public:
  explicit PgTransient(const std::string& message) : StateError(Code::kUnavailable, message) {}
};

inline std::string redact_url(std::string url) {
  // postgres://user:secret@host -> postgres://user:***@host
  const auto scheme = url.find("://");
  const auto at = url.find('@', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme != std::string::npos && at != std::string::npos) {
    const auto colon = url.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) url.replace(colon + 1, at - colon - 1, "***");
  }
  const auto pw = url.find("password=");
  if (pw != std::string::npos) {
    auto end = url.find_first_of("& ", pw);
    url.replace(pw + 9, (end == std::string::npos ? url.size() : end) - pw - 9, "***");
  }
  return url;
}

inline std::int64_t to_db(std::uint64_t k) { return static_cast<std::int64_t>(k); }

inline std::string int_array(const std::vector<std::uint64_t>& keys) {
  std::string a = "{";
  a.reserve(keys.size() * 21 + 2);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i) a += ',';
    fmt::format_to(std::back_inserter(a), "{}", to_db(keys[i]));
  }
  a += '}';
  return a;
}

inline std::string text_array(const std::vector<std::string>& v) {
  std::string a = "{";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) a += ',';
    a += '"';
    for (char c : v[i]) {
      if (c == '"' || c == '\\') a += '\\';
      a += c;
    }
    a += '"';
  }
  a += '}';
  return a;
}

// Parses a bigint[] value in text form ("{1,-2,3}").
inline void parse_int_array(const char* s, std::vector<std::uint64_t>& out) {
  if (!s) return;
  const char* p = s;
  while (*p) {
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
      char* end = nullptr;
      out.push_back(static_cast<std::uint64_t>(std::strtoll(p, &end, 10)));
      p = end;
    } else {
      ++p;
    }
  }
}

class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result& operator=(Result&&) = delete;
  ~Result() { PQclear(r_); }
  int rows() const { return PQntuples(r_); }
  const char* get(int row, int col) const { return PQgetvalue(r_, row, col); }
  bool null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  std::int64_t i64(int row, int col) const { return std::strtoll(get(row, col), nullptr, 10); }
  std::uint64_t u64(int row, int col) const { return static_cast<std::uint64_t>(i64(row, col)); }
  std::string str(int row, int col) const { return null(row, col) ? std::string() : get(row, col); }
  // Reads the columns of a row, from column 0 on, into the fields by their types: std::string
  // (NULL gives ""), std::int64_t, std::uint64_t, bool (PostgreSQL's 't').
  template <class... T>
  void read(int row, T&... fields) const {
    int col = 0;
    (read_one(row, col++, fields), ...);
  }
  std::uint64_t affected() const {
    const char* n = PQcmdTuples(r_);
    return n && *n ? std::strtoull(n, nullptr, 10) : 0;
  }

 private:
  void read_one(int row, int col, std::string& v) const { v = str(row, col); }
  void read_one(int row, int col, std::int64_t& v) const { v = i64(row, col); }
  void read_one(int row, int col, std::uint64_t& v) const { v = u64(row, col); }
  void read_one(int row, int col, bool& v) const { v = get(row, col)[0] == 't'; }

  PGresult* r_;
};

class Conn {
 public:
  Conn(const std::string& url, std::string shown)
      : shown_(std::move(shown)), c_(PQconnectdb(url.c_str())) {
    if (PQstatus(c_) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(c_);
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      PQfinish(c_);
      c_ = nullptr;
      throw PgTransient(fmt::format("cannot connect to PostgreSQL state {}: {}", shown_, msg));
    }
    // Quiet NOTICEs (CREATE ... IF NOT EXISTS) instead of libpq's default print to stderr.
    PQsetNoticeProcessor(
        c_, [](void*, const char*) {}, nullptr);
  }
  ~Conn() {
    if (c_) PQfinish(c_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool ok() const { return c_ && PQstatus(c_) == CONNECTION_OK; }

  Result exec(std::string_view what, const std::string& sql,
              std::initializer_list<std::optional<std::string>> params = {}) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    PGresult* r = PQexecParams(c_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
    check(r, what);
    return Result(r);
  }
  // Without parameters (PQexec): may hold several statements (migrations).
  void run(std::string_view what, const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    check(r, what);
    PQclear(r);
  }

 private:
  // Throws (after freeing r) unless r is a success.
  void check(PGresult* r, std::string_view what) {
    const auto st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return;
    std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    PQclear(r);
    msg = fmt::format("PostgreSQL state {}: {}: {}", shown_, what, msg);
    if (PQstatus(c_) != CONNECTION_OK) throw PgTransient(msg);
    throw StateError(Code::kIo, msg);
  }

  std::string shown_;
  PGconn* c_ = nullptr;
};

// A transaction on one connection: rolled back unless committed (also on exceptions).
class Tx {
 public:
  explicit Tx(Conn& c) : c_(c) { c_.run("begin", "BEGIN"); }
  ~Tx() {
    if (!done_ && c_.ok()) {
      try {
        c_.run("rollback", "ROLLBACK");
      } catch (...) {
      }
    }
  }
  void commit() {
    c_.run("commit", "COMMIT");
    done_ = true;
  }
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;

 private:
  Conn& c_;
  bool done_ = false;
};

inline std::string i64s(std::int64_t v) { return std::to_string(v); }

}  // namespace chsync::pg

// Checks of user-given HTTP settings (headers, endpoint and proxy URLs) and their masking for
// display. Small pure functions, so that every source of a setting (flags, CHSYNC_* and OTEL_*
// environment, TOML) and --print-config can call them.
//
// Contract:
// * header_error: "" when a header may go on the wire; else why not. CR, LF and NUL in a name or
//   value would let a setting write its own header lines (x-env: a\r\nX-Injected: 1); an empty
//   name or one with a space or colon is not a header. The message names the header, never its
//   value (it may be a secret).
// * mask_url: the URL with the password of its userinfo and every query value replaced by "****"
//   (user names and the rest kept), for --print-config and error messages.
// * split_userinfo: removes user[:password]@ from an http(s) URL; user and password come back
//   percent-decoded. Returns false when the URL has none.
// * proxy_scheme_error: "" for an http:// proxy (or none); else why the proxy URL is refused:
//   an https:// proxy would need TLS to the proxy, which the client does not speak, so its
//   password would travel in clear.
// * insecure_warning: what `who` (a backend, a command) says every time --insecure turns off
//   what keeps an API key from a man in the middle.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chsync::http {

std::string header_error(std::string_view name, std::string_view value);
std::string mask_url(std::string_view url);
bool split_userinfo(std::string& url, std::string& user, std::string& password);
std::string proxy_scheme_error(std::string_view proxy_url);
std::string insecure_warning(std::string_view who);

// The checks every HTTP exporter factory runs on its settings, in one place: header_error for
// each header; endpoint userinfo moved into an "Authorization: Basic" header (refused when an
// Authorization header is given too); an https:// proxy from the environment that would carry
// requests to this endpoint refused. On success `endpoint` has no userinfo left. Returns "" or
// the error (never a secret in it).
std::string check_http_settings(std::string& endpoint,
                                std::vector<std::pair<std::string, std::string>>& headers);

}  // namespace chsync::http

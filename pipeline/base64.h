// Base64 (RFC 4648, standard alphabet, '=' padding) for the dead-letter bodies and HTTP Basic
// credentials: the one encoder of chsync (OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock).
#pragma once

#include <string>
#include <string_view>

namespace chsync {

std::string base64_encode(std::string_view in);
// False when `in` is not base64 (out is then unspecified).
bool base64_decode(std::string_view in, std::string& out);

}  // namespace chsync

// UTF-8 <-> UTF-16 conversion. Invalid input (lone surrogates, bad UTF-8 sequences) becomes U+FFFD.
#pragma once

#include <string>

namespace hbws {

std::u16string utf8_to_utf16(const std::string& in);
std::string utf16_to_utf8(const char16_t* in, std::size_t length);
std::string utf16z_to_utf8(const char16_t* in);  // NUL-terminated

}  // namespace hbws

// A refused WebSocket upgrade as the core sees it: its status, its Retry-After and the message, the same for
// both transports.
#include <string>

#include "transport.hpp"

namespace hbws {

int parse_retry_after_ms(bool has_header, const std::string& value) {
    if (!has_header) return -1;
    std::size_t at = 0;
    std::size_t end = value.size();
    while (at < end && (value[at] == ' ' || value[at] == '\t')) ++at;
    while (end > at && (value[end - 1] == ' ' || value[end - 1] == '\t')) --end;
    long long seconds = 0;
    const std::size_t digits_from = at;
    while (at < end && value[at] >= '0' && value[at] <= '9') {
        seconds = seconds * 10 + (value[at] - '0');
        if (seconds > kRetryAfterMaxS) return -1;
        ++at;
    }
    if (at == digits_from) return -1;  // no number of seconds (an HTTP date, a word, a sign)
    long long millis = seconds * 1000;
    if (at < end && value[at] == '.') {
        ++at;
        const std::size_t fraction_from = at;
        long long scale = 100;
        bool rest = false;  // a digit past the milliseconds that is not 0: round up, never wait less
        while (at < end && value[at] >= '0' && value[at] <= '9') {
            if (scale > 0) {
                millis += (value[at] - '0') * scale;
                scale /= 10;
            } else if (value[at] != '0') {
                rest = true;
            }
            ++at;
        }
        if (at == fraction_from) return -1;
        if (rest) ++millis;
    }
    if (at != end || millis > kRetryAfterMaxS * 1000LL) return -1;
    return static_cast<int>(millis);
}

SessionResult refused_upgrade(int status, int retry_after, const std::string& body) {
    std::string text = body.substr(0, 300);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    SessionResult result;
    result.http_status = status;
    result.retry_after_ms = retry_after;
    std::string why = "HTTP " + std::to_string(status);
    if (retry_after >= 0) why += ", Retry-After " + std::to_string(retry_after) + " ms";
    if (status == 401) {
        result.error = kUnauthorized;
        result.message = "the gateway refused the token (" + why + "): " + text;
    } else {
        result.error = kHandshakeRefused;
        result.message = "the WebSocket upgrade was refused with " + why + ": " + text;
    }
    return result;
}

}  // namespace hbws

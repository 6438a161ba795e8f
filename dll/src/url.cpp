#include <cctype>
#include <string>

#include "transport.hpp"

namespace hbws {

std::string Endpoint::host_header() const {
    const bool v6 = host.find(':') != std::string::npos;
    std::string h = v6 ? "[" + host + "]" : host;
    const bool default_port = (secure && port == 443) || (!secure && port == 80);
    if (!default_port) h += ":" + std::to_string(port);
    return h;
}

bool parse_url(const std::string& url, Endpoint& out, std::string& reason) {
    std::string rest;
    auto starts = [&](const char* prefix) {
        const std::string p(prefix);
        if (url.size() < p.size()) return false;
        for (std::size_t i = 0; i < p.size(); ++i) {
            if (std::tolower(static_cast<unsigned char>(url[i])) != p[i]) return false;
        }
        rest = url.substr(p.size());
        return true;
    };
    Endpoint ep;
    if (starts("wss://")) {
        ep.secure = true;
        ep.port = 443;
    } else if (starts("ws://")) {
        ep.port = 80;
    } else {
        reason = "the URL must start with ws:// or wss://";
        return false;
    }
    for (char c : url) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7F) {
            reason = "the URL contains spaces or control characters";
            return false;
        }
    }
    const std::size_t slash = rest.find_first_of("/?#");
    std::string authority = rest.substr(0, slash);
    std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
    if (!target.empty() && target[0] != '/') target = "/" + target;
    const std::size_t hash = target.find('#');
    if (hash != std::string::npos) target.erase(hash);
    if (authority.find('@') != std::string::npos) {
        reason = "credentials in the URL are not supported; pass the token separately";
        return false;
    }
    std::string host;
    std::string port;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string::npos) {
            reason = "unterminated IPv6 address in the URL";
            return false;
        }
        host = authority.substr(1, close - 1);
        std::string after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') {
                reason = "unexpected text after the IPv6 address";
                return false;
            }
            port = after.substr(1);
            has_port = true;
        }
    } else {
        const std::size_t colon = authority.rfind(':');
        if (colon != std::string::npos) {
            host = authority.substr(0, colon);
            port = authority.substr(colon + 1);
            has_port = true;
        } else {
            host = authority;
        }
    }
    if (host.empty()) {
        reason = "the URL has no host";
        return false;
    }
    if (has_port) {
        if (port.empty() || port.size() > 5) {
            reason = "the URL's port is not a number between 1 and 65535";
            return false;
        }
        unsigned long value = 0;
        for (char c : port) {
            if (!std::isdigit(static_cast<unsigned char>(c))) {
                reason = "the URL's port is not a number between 1 and 65535";
                return false;
            }
            value = value * 10 + static_cast<unsigned long>(c - '0');
        }
        if (value == 0 || value > 65535) {
            reason = "the URL's port is not a number between 1 and 65535";
            return false;
        }
        ep.port = static_cast<std::uint16_t>(value);
    }
    ep.host = host;
    ep.target = target;
    out = ep;
    return true;
}

}  // namespace hbws

// The reconnect delays of the core (pure code, but for the random draw from the OS's generator).
//
// "Decorrelated jitter": a random delay between reconnect_min_ms and three times the previous delay (the
// first: three times reconnect_min_ms), capped at reconnect_max_ms. Terminals that lost the gateway together
// spread out instead of reconnecting in lockstep.
//
// A refusal with a Retry-After (the gateway is busy: HTTP 503) is waited out as the Python terminals do
// (libs/common/hedgebridge/common/backoff.py): at least that long, plus a random share of up to as long again,
// so the refused do not all come back in the same second; the longer of that and the jittered delay. The
// Retry-After honoured is at most kRetryAfterMaxS (transport.hpp), so no wait is longer than twice that.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>

#include "platform.hpp"

namespace hbws {

// One random number in [0, n), from the OS's generator; only for the reconnect jitter, so a clock value will
// do when there is no generator.
inline long long random_below(long long n) {
    if (n <= 1) return 0;
    std::uint64_t value = 0;
    try {
        os_random(&value, sizeof(value));
    } catch (const std::exception&) {
        value = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    return static_cast<long long>(value % static_cast<std::uint64_t>(n));
}

// The delay after `previous` (0: none yet), between min_ms and max_ms (reconnect_min_ms, reconnect_max_ms).
inline int decorrelated_jitter_ms(int previous, int min_ms, int max_ms) {
    const long long lo = min_ms;
    const long long cap = std::max<long long>(max_ms, lo);
    const long long hi = std::min(cap, 3LL * std::max<long long>(previous, lo));
    return static_cast<int>(lo + random_below(hi - lo + 1));
}

// The delay after a refusal: the jittered one, or when the refusal named a Retry-After (`retry_after_ms`,
// -1 when none) at least that plus a random share of up to as long again, whichever is longer.
inline int reconnect_delay_ms(int jittered_ms, int retry_after_ms) {
    if (retry_after_ms < 0) return jittered_ms;
    const long long waited = retry_after_ms + random_below(static_cast<long long>(retry_after_ms) + 1);
    return static_cast<int>(std::max<long long>(jittered_ms, waited));
}

}  // namespace hbws

// The exported C API: thin wrappers around the connection manager (connection.hpp).
#include <chrono>
#include <exception>
#include <string>

#include "connection.hpp"
#include "hedgebridge_ws.h"
#include "utf.hpp"

namespace hbws {

// Never destroyed: a static destructor would run at unload/exit, possibly under the loader lock, while
// background threads (retired ones too) may still run. DisconnectWebSocket is the orderly way to stop.
Connection& connection() {
    static Connection* instance = new Connection();
    return *instance;
}

void Connection::connection_at_exit() { connection().abort_all(std::chrono::milliseconds(2000)); }

namespace {

const char16_t* as_u16(const WCHAR16* text) { return reinterpret_cast<const char16_t*>(text); }

std::u16string to_u16(const std::string& s) { return utf8_to_utf16(s); }
std::string same(const std::string& s) { return s; }

template <typename F>
auto guarded(F&& f, decltype(f()) on_failure) -> decltype(f()) {
    try {
        return f();
    } catch (const std::exception& exc) {
        connection().fail(kInternal, std::string("internal error: ") + exc.what());
    } catch (...) {
        connection().fail(kInternal, "internal error");
    }
    return on_failure;
}

}  // namespace
}  // namespace hbws

using hbws::connection;
using hbws::guarded;

static_assert(sizeof(WCHAR16) == 2, "WCHAR16 must be a UTF-16 code unit");

extern "C" {

HBWS_API int HBWS_CALL ConnectWebSocket(const char* url, const char* token) {
    return guarded(
        [&] {
            if (url == nullptr || token == nullptr) return connection().fail(hbws::kInvalidArgument, "url or token is NULL");
            return connection().connect(url, token);
        },
        0);
}

HBWS_API int HBWS_CALL ConnectWebSocketW(const WCHAR16* url, const WCHAR16* token) {
    return guarded(
        [&] {
            if (url == nullptr || token == nullptr) return connection().fail(hbws::kInvalidArgument, "url or token is NULL");
            return connection().connect(hbws::utf16z_to_utf8(hbws::as_u16(url)),
                                        hbws::utf16z_to_utf8(hbws::as_u16(token)));
        },
        0);
}

HBWS_API int HBWS_CALL WsSend(const char* utf8_message) {
    return guarded(
        [&] {
            if (utf8_message == nullptr) return connection().fail(hbws::kInvalidArgument, "the message is NULL");
            return connection().send(std::string(utf8_message));
        },
        0);
}

HBWS_API int HBWS_CALL WsSendW(const WCHAR16* message) {
    return guarded(
        [&] {
            if (message == nullptr) return connection().fail(hbws::kInvalidArgument, "the message is NULL");
            return connection().send(hbws::utf16z_to_utf8(hbws::as_u16(message)));
        },
        0);
}

HBWS_API int HBWS_CALL ReceiveMessage(char* buffer, int bufferSize) {
    return guarded([&] { return connection().receive(buffer, bufferSize, hbws::same); }, 0);
}

HBWS_API int HBWS_CALL ReceiveMessageW(WCHAR16* buffer, int bufferSize) {
    return guarded(
        [&] {
            return connection().receive(reinterpret_cast<char16_t*>(buffer), bufferSize, hbws::to_u16);
        },
        0);
}

HBWS_API int HBWS_CALL IsConnected(void) {
    return guarded([] { return connection().is_connected(); }, 0);
}

HBWS_API void HBWS_CALL DisconnectWebSocket(void) {
    guarded(
        [] {
            connection().disconnect();
            return 0;
        },
        0);
}

HBWS_API int HBWS_CALL WsGetLastError(void) {
    return guarded([] { return connection().last_error(); }, hbws::kInternal);
}

HBWS_API int HBWS_CALL WsGetLastErrorMessage(char* buffer, int bufferSize) {
    return guarded([&] { return connection().error_message(buffer, bufferSize, hbws::same); }, 0);
}

HBWS_API int HBWS_CALL WsGetLastErrorMessageW(WCHAR16* buffer, int bufferSize) {
    return guarded(
        [&] {
            return connection().error_message(reinterpret_cast<char16_t*>(buffer), bufferSize, hbws::to_u16);
        },
        0);
}

HBWS_API int HBWS_CALL WsGetCloseCode(void) {
    return guarded([] { return connection().close_code(); }, 0);
}

HBWS_API int HBWS_CALL WsSetOption(const char* name, const char* value) {
    return guarded(
        [&] {
            if (name == nullptr) return connection().fail(hbws::kInvalidArgument, "the option name is NULL");
            return connection().set_option(name, value);
        },
        0);
}

HBWS_API int HBWS_CALL WsSetOptionW(const WCHAR16* name, const WCHAR16* value) {
    return guarded(
        [&] {
            if (name == nullptr) return connection().fail(hbws::kInvalidArgument, "the option name is NULL");
            if (value == nullptr) return connection().set_option(hbws::utf16z_to_utf8(hbws::as_u16(name)), nullptr);
            const std::string narrow_value = hbws::utf16z_to_utf8(hbws::as_u16(value));
            return connection().set_option(hbws::utf16z_to_utf8(hbws::as_u16(name)), narrow_value.c_str());
        },
        0);
}

HBWS_API int HBWS_CALL WsGetState(void) {
    return guarded([] { return connection().state(); }, 0);
}

HBWS_API int HBWS_CALL WsPendingMessages(void) {
    return guarded([] { return connection().pending(); }, 0);
}

HBWS_API int HBWS_CALL WsGetReconnectCount(void) {
    return guarded([] { return connection().reconnects(); }, 0);
}

HBWS_API int HBWS_CALL WsGetReconnectDelayMs(void) {
    return guarded([] { return connection().last_delay_ms(); }, 0);
}

HBWS_API int HBWS_CALL WsGetHttpStatus(void) {
    return guarded([] { return connection().http_status(); }, 0);
}

HBWS_API int HBWS_CALL WsGetRetryAfterMs(void) {
    return guarded([] { return connection().retry_after_ms(); }, -1);
}

}  // extern "C"

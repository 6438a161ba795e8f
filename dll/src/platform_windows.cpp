// Platform services of the Windows build (platform.hpp).
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <bcrypt.h>

#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>

#include "platform.hpp"
#include "utf.hpp"

namespace hbws {

namespace {

std::wstring widen(const std::string& utf8) {
    const std::u16string u16 = utf8_to_utf16(utf8);
    return std::wstring(u16.begin(), u16.end());
}

}  // namespace

bool read_file(const std::string& utf8_path, std::string& content) {
    std::FILE* file = _wfopen(widen(utf8_path).c_str(), L"rb");
    if (file == nullptr) return false;
    content.clear();
    char chunk[4096];
    std::size_t got;
    while ((got = std::fread(chunk, 1, sizeof(chunk), file)) > 0) content.append(chunk, got);
    const bool ok = std::ferror(file) == 0;
    std::fclose(file);
    return ok;
}

namespace {

struct ThreadStart {
    std::function<void()> task;
    HMODULE module;
};

DWORD WINAPI thread_main(LPVOID param) {
    auto* start = static_cast<ThreadStart*>(param);
    const HMODULE module = start->module;
    try {
        start->task();
    } catch (...) {
    }
    delete start;
    FreeLibraryAndExitThread(module, 0);
}

}  // namespace

// The thread holds a reference on this module from its start, released as its very last act: a FreeLibrary
// by the host (MetaTrader unloading the EA) cannot unmap code the thread is still running, and once the
// thread has ended the DLL unloads normally.
bool spawn_detached(std::function<void()> task, std::string& why) {
    HMODULE module = nullptr;
    if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, reinterpret_cast<LPCWSTR>(&thread_main),
                            &module)) {
        why = "cannot reference the DLL: error " + std::to_string(GetLastError());
        return false;
    }
    auto* start = new ThreadStart{std::move(task), module};
    HANDLE thread = CreateThread(nullptr, 0, &thread_main, start, 0, nullptr);
    if (thread == nullptr) {
        why = "CreateThread failed: error " + std::to_string(GetLastError());
        delete start;
        FreeLibrary(module);
        return false;
    }
    CloseHandle(thread);
    return true;
}

void os_random(void* out, std::size_t size) {
    auto* at = static_cast<unsigned char*>(out);
    while (size > 0) {
        const ULONG chunk = size > 0x10000000 ? 0x10000000UL : static_cast<ULONG>(size);
        const NTSTATUS status = BCryptGenRandom(nullptr, at, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
        if (status < 0) throw std::runtime_error("BCryptGenRandom failed: " + std::to_string(static_cast<long>(status)));
        at += chunk;
        size -= chunk;
    }
}

// ExitProcess ends every other thread before a library hears of it: nothing is left to stop.
void on_process_exit(void (*)()) {}

}  // namespace hbws

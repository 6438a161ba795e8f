// Platform services of the Linux build (platform.hpp).
#include <openssl/ssl.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "platform.hpp"

namespace hbws {

bool spawn_detached(std::function<void()> task, std::string& why) {
    try {
        std::thread(std::move(task)).detach();
        return true;
    } catch (const std::system_error& exc) {
        why = exc.what();
        return false;
    }
}

void os_random(void* out, std::size_t size) {
    auto* at = static_cast<unsigned char*>(out);
    while (size > 0) {
        const ssize_t got = getrandom(at, size, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
        }
        at += got;
        size -= static_cast<std::size_t>(got);
    }
}

void on_process_exit(void (*hook)()) {
    // OpenSSL registers its cleanup with atexit when it initialises: initialise it first, so that our
    // handler, registered after it, runs before it
    OPENSSL_init_ssl(0, nullptr);
    std::atexit(hook);
}

bool read_file(const std::string& utf8_path, std::string& content) {
    std::FILE* file = std::fopen(utf8_path.c_str(), "rb");
    if (file == nullptr) return false;
    content.clear();
    char chunk[4096];
    std::size_t got;
    while ((got = std::fread(chunk, 1, sizeof(chunk), file)) > 0) content.append(chunk, got);
    const bool ok = std::ferror(file) == 0;
    std::fclose(file);
    return ok;
}

}  // namespace hbws

// Platform services for the core: background threads that keep the library loaded while they run, random
// bytes from the operating system's cryptographic generator, the hook run at process exit, and reading files
// by UTF-8 path.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace hbws {

// Runs task on a new detached thread. While it runs, the library cannot be unmapped under it: Windows takes a
// reference on the module that the thread itself releases as its last act (FreeLibraryAndExitThread); the
// Linux build is linked with -z nodelete, so dlclose never unmaps it. Returns false (and says why) when the
// thread cannot be started; task is then not run.
bool spawn_detached(std::function<void()> task, std::string& why);

// Fills out with bytes from the OS's cryptographic random generator (Linux: getrandom; Windows:
// BCryptGenRandom with the system-preferred RNG). Throws std::runtime_error when there is none.
void os_random(void* out, std::size_t size);

// Registers hook to run when the process exits normally, before the TLS library cleans up (Linux: atexit,
// after OpenSSL's own exit handler was registered, so that ours runs first). Windows: nothing to do, since
// ExitProcess ends every other thread before any library is told.
void on_process_exit(void (*hook)());

// Reads a whole file named by a UTF-8 path (Windows: through the wide-character API, so any path works).
bool read_file(const std::string& utf8_path, std::string& content);

}  // namespace hbws

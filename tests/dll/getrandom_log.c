/* A preloaded getrandom() for tests/dll: it asks the kernel as glibc's does, and appends what it returned, as
 * one line of hex per call, to the file named by HB_GETRANDOM_LOG. Only short requests (up to 64 bytes) are
 * written: the library's are 4 bytes each, the interpreter's own are longer.
 *
 *   gcc -shared -fPIC -o getrandom_log.so getrandom_log.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t getrandom(void *buffer, size_t length, unsigned int flags) {
    const long got = syscall(SYS_getrandom, buffer, length, flags);
    const char *path = getenv("HB_GETRANDOM_LOG");
    if (got > 0 && got <= 64 && path != NULL) {
        static const char digits[] = "0123456789abcdef";
        char line[2 * 64 + 1];
        const unsigned char *bytes = buffer;
        for (long i = 0; i < got; i++) {
            line[2 * i] = digits[bytes[i] >> 4];
            line[2 * i + 1] = digits[bytes[i] & 15];
        }
        line[2 * got] = '\n';
        const int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            ssize_t ignored = write(fd, line, (size_t)(2 * got + 1));
            (void)ignored;
            close(fd);
        }
    }
    return (ssize_t)got;
}

// io.hpp - files (sandboxed to the terminal's MQL5/Files), CryptEncode, sockets over real TCP, the terminal's
// and the program's properties, and the binding of #import'ed DLL functions, for the test runtime.
#pragma once
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <fstream>
#include <map>
#include <memory>

#include "core.hpp"

namespace mqlrt::io {

struct Options {
    std::string files_dir = ".";
    bool allow_dll = false;
    std::string dll_path;
    std::vector<std::string> allowed_hosts;  // "host:port" or "host"; the terminal's "Allow WebRequest" list
};
inline Options &options() {
    static Options o;
    return o;
}

}  // namespace mqlrt::io

// --- the terminal and the program ----------------------------------------------------------------------------
enum ENUM_TERMINAL_INFO_INTEGER { TERMINAL_BUILD = 5, TERMINAL_CONNECTED = 6, TERMINAL_DLLS_ALLOWED = 7, TERMINAL_TRADE_ALLOWED = 8 };
enum ENUM_MQL_INFO_INTEGER { MQL_DLLS_ALLOWED = 5, MQL_TRADE_ALLOWED = 6, MQL_TESTER = 8 };
namespace mqlrt::trade { inline bool terminal_connected(); inline bool terminal_trade_allowed(); }
MQL_BUILTIN int TerminalInfoInteger(int property_id) {
    switch (property_id) {
        case TERMINAL_BUILD: return 4755;
        case TERMINAL_CONNECTED: return mqlrt::trade::terminal_connected();
        case TERMINAL_DLLS_ALLOWED: return mqlrt::io::options().allow_dll;
        case TERMINAL_TRADE_ALLOWED: return mqlrt::trade::terminal_trade_allowed();
    }
    return 0;
}
MQL_BUILTIN int MQLInfoInteger(int property_id) {
    switch (property_id) {
        case MQL_DLLS_ALLOWED: return mqlrt::io::options().allow_dll;
        case MQL_TRADE_ALLOWED: return 1;
        case MQL_TESTER: return 0;
    }
    return 0;
}

// --- files ----------------------------------------------------------------------------------------------------
#define FILE_READ 1
#define FILE_WRITE 2
#define FILE_BIN 4
#define FILE_CSV 8
#define FILE_TXT 16
#define FILE_ANSI 32
#define FILE_UNICODE 64
#define FILE_SHARE_READ 128
#define FILE_SHARE_WRITE 256
#define FILE_REWRITE 512
#define FILE_COMMON 4096
#undef SEEK_SET
#undef SEEK_CUR
#undef SEEK_END
enum ENUM_FILE_POSITION { SEEK_SET = 0, SEEK_CUR = 1, SEEK_END = 2 };
#define ERR_FILE_CANNOT_OPEN 5004
#define ERR_WRONG_FILENAME 5002
#define ERR_DIRECTORY_NOT_EXIST 5019

namespace mqlrt::io {
struct File {
    std::string path;
    int flags;
    uint codepage;
    std::string data;  // the whole file; text files in the file's encoding
    size_t pos = 0;
    bool dirty = false;
};
inline std::map<int, File> &files() {
    static std::map<int, File> open;
    return open;
}
// the sandboxed path of an MQL5 file name ("HedgeBridge\\book.jsonl"), or "" when it leaves the sandbox
inline std::string sandboxed(const std::string &name) {
    std::string rel = name;
    std::replace(rel.begin(), rel.end(), '\\', '/');
    if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos || rel.find(':') != std::string::npos) return "";
    return options().files_dir + "/" + rel;
}
inline void flush(File &f) {
    if (!f.dirty) return;
    std::ofstream out(f.path, std::ios::binary | std::ios::trunc);
    out << f.data;
    f.dirty = false;
}
}  // namespace mqlrt::io

MQL_BUILTIN int FileOpen(const string &file_name, int open_flags, short delimiter = '\t', uint codepage = CP_ACP) {
    (void)delimiter;
    std::string path = mqlrt::io::sandboxed(file_name.utf8());
    if (path.empty()) {
        mqlrt::set_last_error(ERR_WRONG_FILENAME);
        return INVALID_HANDLE;
    }
    if (!(open_flags & FILE_ANSI) && (open_flags & (FILE_TXT | FILE_CSV)))
        throw mqlrt::critical_error("FileOpen: UNICODE text files are not supported yet by the test runtime");
    using mqlrt::io::options;
    mqlrt::io::File f{path, open_flags, codepage, "", 0, false};
    std::ifstream in(path, std::ios::binary);
    if (in) {
        f.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } else if (!(open_flags & FILE_WRITE)) {
        mqlrt::set_last_error(ERR_FILE_CANNOT_OPEN);
        return INVALID_HANDLE;
    }
    if ((open_flags & FILE_WRITE) && !(open_flags & FILE_READ)) {
        f.data.clear();  // write only: the file starts empty
        f.dirty = true;
    }
    if (open_flags & FILE_WRITE) {  // the terminal creates the folders a file name names
        for (size_t at = path.find('/', options().files_dir.size() + 1); at != std::string::npos; at = path.find('/', at + 1))
            mkdir(path.substr(0, at).c_str(), 0755);
        std::ofstream touch(path, std::ios::binary | std::ios::app);
        if (!touch) {
            mqlrt::set_last_error(ERR_FILE_CANNOT_OPEN);
            return INVALID_HANDLE;
        }
    }
    static int next = 1;
    int h = next++;
    mqlrt::io::files()[h] = f;
    return h;
}
namespace mqlrt::io {
inline File *file(int h) {
    auto it = files().find(h);
    if (it == files().end()) {
        set_last_error(5008);  // ERR_INVALID_FILEHANDLE
        return nullptr;
    }
    return &it->second;
}
}  // namespace mqlrt::io
MQL_BUILTIN void FileClose(int file_handle) {
    auto *f = mqlrt::io::file(file_handle);
    if (!f) return;
    mqlrt::io::flush(*f);
    mqlrt::io::files().erase(file_handle);
}
MQL_BUILTIN void FileFlush(int file_handle) {
    if (auto *f = mqlrt::io::file(file_handle)) mqlrt::io::flush(*f);
}
MQL_BUILTIN bool FileSeek(int file_handle, long offset, ENUM_FILE_POSITION origin) {
    auto *f = mqlrt::io::file(file_handle);
    if (!f) return false;
    long base = origin == SEEK_SET ? 0 : origin == SEEK_CUR ? static_cast<long>(f->pos) : static_cast<long>(f->data.size());
    long to = base + offset;
    if (to < 0 || to > static_cast<long>(f->data.size())) return false;
    f->pos = static_cast<size_t>(to);
    return true;
}
MQL_BUILTIN uint FileWriteString(int file_handle, const string &text_string, int length = -1) {
    auto *f = mqlrt::io::file(file_handle);
    if (!f || !(f->flags & FILE_WRITE)) return 0;
    string text = length >= 0 ? StringSubstr(text_string, 0, length) : text_string;
    std::string bytes = f->codepage == CP_UTF8 ? text.utf8() : std::string();
    if (f->codepage != CP_UTF8)
        for (char16_t c : text.u16()) bytes += c < 0x100 ? static_cast<char>(c) : '?';
    f->data.replace(f->pos, std::min(bytes.size(), f->data.size() - f->pos), bytes);
    f->pos += bytes.size();
    f->dirty = true;
    return static_cast<uint>(bytes.size());
}
MQL_BUILTIN bool FileIsEnding(int file_handle) {
    auto *f = mqlrt::io::file(file_handle);
    return f == nullptr || f->pos >= f->data.size();
}
MQL_BUILTIN string FileReadString(int file_handle, int length = -1) {
    auto *f = mqlrt::io::file(file_handle);
    if (!f || f->pos >= f->data.size()) return string();
    (void)length;
    size_t end = f->data.find('\n', f->pos);
    size_t stop = end == std::string::npos ? f->data.size() : end;
    std::string line = f->data.substr(f->pos, stop - f->pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();  // text mode: "\r\n" ends a line
    f->pos = end == std::string::npos ? f->data.size() : end + 1;
    if (f->codepage == CP_UTF8) return string::from_utf8(line);
    std::u16string out;
    for (unsigned char c : line) out += static_cast<char16_t>(c);
    return string(out);
}
MQL_BUILTIN bool FileIsExist(const string &file_name, int common_flag = 0) {
    (void)common_flag;
    std::string path = mqlrt::io::sandboxed(file_name.utf8());
    struct stat st;
    return !path.empty() && stat(path.c_str(), &st) == 0;
}
MQL_BUILTIN bool FileDelete(const string &file_name, int common_flag = 0) {
    (void)common_flag;
    std::string path = mqlrt::io::sandboxed(file_name.utf8());
    return !path.empty() && unlink(path.c_str()) == 0;
}
MQL_BUILTIN bool FileMove(const string &src_file_name, int common_flag, const string &dst_file_name, int mode_flags) {
    (void)common_flag;
    std::string from = mqlrt::io::sandboxed(src_file_name.utf8()), to = mqlrt::io::sandboxed(dst_file_name.utf8());
    struct stat st;
    if (from.empty() || to.empty()) {
        mqlrt::set_last_error(ERR_WRONG_FILENAME);
        return false;
    }
    if (!(mode_flags & FILE_REWRITE) && stat(to.c_str(), &st) == 0) {
        mqlrt::set_last_error(5020);  // ERR_FILE_CANNOT_REWRITE
        return false;
    }
    if (std::rename(from.c_str(), to.c_str()) != 0) {  // one step: the old file or the new one, never half
        mqlrt::set_last_error(ERR_FILE_CANNOT_OPEN);
        return false;
    }
    return true;
}
MQL_BUILTIN bool FolderCreate(const string &folder_name, int common_flag = 0) {
    (void)common_flag;
    std::string path = mqlrt::io::sandboxed(folder_name.utf8());
    if (path.empty()) return false;
    return mkdir(path.c_str(), 0755) == 0 || errno == EEXIST;
}

// --- CryptEncode ----------------------------------------------------------------------------------------------
enum ENUM_CRYPT_METHOD { CRYPT_BASE64 = 0, CRYPT_AES128 = 1, CRYPT_AES256 = 2, CRYPT_DES = 3, CRYPT_HASH_SHA1 = 4, CRYPT_HASH_SHA256 = 5, CRYPT_HASH_MD5 = 6, CRYPT_ARCH_ZIP = 7 };
MQL_BUILTIN int CryptEncode(ENUM_CRYPT_METHOD method, const MqlArray<uchar> &data, const MqlArray<uchar> &key, MqlArray<uchar> &result) {
    (void)key;
    std::vector<uchar> out;
    const uchar *in = data.data();
    size_t n = static_cast<size_t>(data.size());
    if (method == CRYPT_HASH_SHA1) {
        out.resize(SHA_DIGEST_LENGTH);
        SHA1(in, n, out.data());
    } else if (method == CRYPT_HASH_SHA256) {
        out.resize(SHA256_DIGEST_LENGTH);
        SHA256(in, n, out.data());
    } else if (method == CRYPT_BASE64) {
        out.resize(4 * ((n + 2) / 3) + 1);
        int len = EVP_EncodeBlock(out.data(), in, static_cast<int>(n));
        out.resize(static_cast<size_t>(len));
    } else {
        throw mqlrt::critical_error("CryptEncode: this method is not supported yet by the test runtime");
    }
    result.vec() = out;
    return result.size();
}

// --- sockets --------------------------------------------------------------------------------------------------
#define ERR_NETSOCKET_INVALIDHANDLE 5270
#define ERR_NETSOCKET_TOO_MANY_OPENED 5271
#define ERR_NETSOCKET_CANNOT_CONNECT 5272
#define ERR_NETSOCKET_IO_ERROR 5273
#define ERR_NETSOCKET_HANDSHAKE_FAILED 5274
#define ERR_NETSOCKET_NO_CERTIFICATE 5275
#define SOCKET_DEFAULT 0

namespace mqlrt::io {
struct Socket {
    int fd = -1;
    bool connected = false;
    uint send_timeout = 0, recv_timeout = 0;
};
inline std::map<int, Socket> &sockets() {
    static std::map<int, Socket> open;
    return open;
}
inline Socket *sock(int h) {
    auto it = sockets().find(h);
    if (it == sockets().end()) {
        set_last_error(ERR_NETSOCKET_INVALIDHANDLE);
        return nullptr;
    }
    return &it->second;
}
inline bool host_allowed(const std::string &host, uint port) {
    for (const std::string &a : options().allowed_hosts)
        if (a == host || a == host + ":" + std::to_string(port)) return true;
    return false;
}
inline void drop(Socket &s) {
    if (s.fd >= 0) ::close(s.fd);
    s.fd = -1;
    s.connected = false;
}
}  // namespace mqlrt::io

MQL_BUILTIN int SocketCreate(uint flags = SOCKET_DEFAULT) {
    (void)flags;
    if (mqlrt::io::sockets().size() >= 128) {
        mqlrt::set_last_error(ERR_NETSOCKET_TOO_MANY_OPENED);
        return INVALID_HANDLE;
    }
    static int next = 1;
    int h = next++;
    mqlrt::io::sockets()[h] = mqlrt::io::Socket();
    return h;
}
MQL_BUILTIN bool SocketClose(const int socket) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    mqlrt::io::drop(*s);
    mqlrt::io::sockets().erase(socket);
    return true;
}
MQL_BUILTIN bool SocketConnect(int socket, const string &server, uint port, uint timeout_receive_ms) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    std::string host = server.utf8();
    if (!mqlrt::io::host_allowed(host, port)) {
        mqlrt::journal() << "'" << host << ":" << port << "' is not in the list of allowed URLs" << std::endl;
        mqlrt::set_last_error(ERR_FUNCTION_NOT_ALLOWED);
        return false;
    }
    if (port == 443) throw mqlrt::critical_error("SocketConnect: TLS on port 443 is not supported yet by the test runtime");
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || res == nullptr) {
        mqlrt::set_last_error(ERR_NETSOCKET_CANNOT_CONNECT);
        return false;
    }
    int fd = ::socket(res->ai_family, SOCK_STREAM, 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, static_cast<int>(timeout_receive_ms)) == 1 ? 0 : -1;
        int err = 0;
        socklen_t len = sizeof err;
        if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) rc = -1;
    }
    if (rc != 0) {
        ::close(fd);
        mqlrt::set_last_error(ERR_NETSOCKET_CANNOT_CONNECT);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    s->connected = true;
    return true;
}
MQL_BUILTIN bool SocketTimeouts(int socket, uint timeout_send_ms, uint timeout_receive_ms) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    s->send_timeout = timeout_send_ms;
    s->recv_timeout = timeout_receive_ms;
    return true;
}
MQL_BUILTIN bool SocketIsConnected(const int socket) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || !s->connected) return false;
    pollfd p{s->fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
        char c;
        ssize_t n = ::recv(s->fd, &c, 1, MSG_PEEK);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) s->connected = false;
    }
    return s->connected;
}
MQL_BUILTIN uint SocketIsReadable(const int socket) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || s->fd < 0) return 0;
    int n = 0;
    if (ioctl(s->fd, FIONREAD, &n) != 0) return 0;
    return static_cast<uint>(n);
}
MQL_BUILTIN int SocketSend(int socket, const MqlArray<uchar> &buffer, uint buffer_len) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || !s->connected) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    uint len = std::min(buffer_len, static_cast<uint>(buffer.size()));
    pollfd p{s->fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(s->send_timeout ? s->send_timeout : 1000)) != 1) return 0;
    ssize_t n = ::send(s->fd, buffer.data(), len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        mqlrt::io::drop(*s);
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    return static_cast<int>(n);
}
MQL_BUILTIN int SocketRead(int socket, MqlArray<uchar> &buffer, uint buffer_maxlen, uint timeout) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || !s->connected) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    pollfd p{s->fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout)) != 1) {
        buffer.resize(0, 0);
        return 0;
    }
    std::vector<uchar> tmp(buffer_maxlen);
    ssize_t n = ::recv(s->fd, tmp.data(), buffer_maxlen, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        mqlrt::io::drop(*s);
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    tmp.resize(static_cast<size_t>(n));
    buffer.vec() = tmp;
    return static_cast<int>(n);
}
MQL_BUILTIN bool SocketTlsCertificate(int socket, string &subject, string &issuer, string &serial, string &thumbprint, datetime &expiration) {
    (void)socket; (void)subject; (void)issuer; (void)serial; (void)thumbprint; (void)expiration;
    mqlrt::set_last_error(ERR_NETSOCKET_NO_CERTIFICATE);
    return false;
}
MQL_BUILTIN bool SocketTlsHandshake(int socket, const string &host) {
    (void)socket; (void)host;
    throw mqlrt::critical_error("SocketTlsHandshake: TLS is not supported yet by the test runtime (use ws://)");
}
MQL_BUILTIN int SocketTlsSend(int socket, const MqlArray<uchar> &buffer, uint buffer_len) {
    (void)socket; (void)buffer; (void)buffer_len;
    throw mqlrt::critical_error("SocketTlsSend: TLS is not supported yet by the test runtime");
}
MQL_BUILTIN int SocketTlsReadAvailable(int socket, MqlArray<uchar> &buffer, const uint buffer_maxlen) {
    (void)socket; (void)buffer; (void)buffer_maxlen;
    throw mqlrt::critical_error("SocketTlsReadAvailable: TLS is not supported yet by the test runtime");
}

// --- #import ----------------------------------------------------------------------------------------------------
namespace mqlrt {
struct load_refused : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// the EA's #import'ed functions, registered by the translated sources (only those the preprocessor kept)
struct ImportSlot;
inline std::vector<ImportSlot *> &import_slots() {
    static std::vector<ImportSlot *> slots;
    return slots;
}
struct ImportSlot {
    std::string library, name;
    void **slot;
    ImportSlot(const string &l, const string &n, void **s) : library(l.utf8()), name(n.utf8()), slot(s) {
        import_slots().push_back(this);
    }
};
// binds one imported function when the EA loads, as the terminal does: refused when DLLs are not allowed
inline void bind_import(const std::string &library, const std::string &name, void **slot) {
    static std::map<std::string, void *> handles;
    if (!io::options().allow_dll)
        throw load_refused(std::string("DLL loading is not allowed, cannot load '") + library + "'");
    void *&h = handles[library];
    if (h == nullptr) {
        h = dlopen(io::options().dll_path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) throw load_refused(std::string("cannot load '") + library + "' [" + dlerror() + "]");
    }
    *slot = dlsym(h, name.c_str());
    if (*slot == nullptr) throw load_refused(std::string("cannot find '") + name + "' in '" + library + "'");
}
}  // namespace mqlrt

// io.hpp - files (sandboxed to the terminal's MQL5/Files), CryptEncode, the terminal's and the program's
// properties, and the binding of #import'ed DLL functions, for the test runtime (sockets: socket.hpp).
#pragma once
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
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
    std::string ca_file;                     // PEM certificates trusted for TLS besides the system's CA store
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
enum ENUM_TERMINAL_INFO_STRING { TERMINAL_LANGUAGE = 13, TERMINAL_COMPANY = 0, TERMINAL_NAME = 1, TERMINAL_PATH = 2, TERMINAL_DATA_PATH = 3, TERMINAL_COMMONDATA_PATH = 4 };
MQL_BUILTIN string TerminalInfoString(int property_id) {
    // the data folder is the one holding MQL5/Files
    std::string files = mqlrt::io::options().files_dir;
    const std::string tail = "/MQL5/Files";
    std::string data = files.size() > tail.size() && files.compare(files.size() - tail.size(), tail.size(), tail) == 0
                           ? files.substr(0, files.size() - tail.size())
                           : files;
    switch (property_id) {
        case TERMINAL_COMPANY: return string::from_utf8("hedgebridge");
        case TERMINAL_NAME: return string::from_utf8("hedgebridge MQL5 test runtime");
        case TERMINAL_PATH: return string::from_utf8(data);
        case TERMINAL_DATA_PATH: return string::from_utf8(data);
        case TERMINAL_COMMONDATA_PATH: return string::from_utf8(data + "/Common");
        case TERMINAL_LANGUAGE: return string::from_utf8("English");
    }
    return string();
}
MQL_BUILTIN long ChartID(void) { return 131000000000000000L + static_cast<long>(getpid()); }  // one chart per process
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

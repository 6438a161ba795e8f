// core.hpp - MQL5's string, conversion, array, math, time, journal and timer built-ins for the test runtime.
#pragma once
#include <cfloat>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <sstream>
#include <thread>

#include "base.hpp"

namespace mqlrt {

inline std::string utf16_to_utf8(const std::u16string &s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        uint32_t c = s[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = 0xFFFD;
        }
        if (c < 0x80) {
            out += static_cast<char>(c);
        } else if (c < 0x800) {
            out += static_cast<char>(0xC0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out += static_cast<char>(0xE0 | (c >> 12));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (c >> 18));
            out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    return out;
}

inline std::u16string utf8_to_utf16(const std::string &s) {
    std::u16string out;
    size_t i = 0;
    while (i < s.size()) {
        unsigned char b = static_cast<unsigned char>(s[i]);
        uint32_t c = 0xFFFD;
        size_t n = 1;
        if (b < 0x80) {
            c = b;
        } else if ((b >> 5) == 6 && i + 1 < s.size()) {
            c = ((b & 0x1F) << 6) | (s[i + 1] & 0x3F);
            n = 2;
        } else if ((b >> 4) == 14 && i + 2 < s.size()) {
            c = ((b & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
            n = 3;
        } else if ((b >> 3) == 30 && i + 3 < s.size()) {
            c = ((b & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
            n = 4;
        }
        if (c >= 0x10000) {
            c -= 0x10000;
            out += static_cast<char16_t>(0xD800 + (c >> 10));
            out += static_cast<char16_t>(0xDC00 + (c & 0x3FF));
        } else {
            out += static_cast<char16_t>(c);
        }
        i += n;
    }
    return out;
}

inline std::ostream &journal() { return std::cerr; }

// Trade-server time = UTC + this offset (seconds); set by the harness (--server-offset-s).
inline long &server_offset_s() {
    static long value = 0;
    return value;
}
inline long utc_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}
inline ulong mono_us() {
    static const auto start = std::chrono::steady_clock::now();
    return static_cast<ulong>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
}
// the EA's timer (EventSetMillisecondTimer): period in ms, 0 = none
inline long &timer_ms() {
    static long value = 0;
    return value;
}

// Text of one Print argument, as MQL5 prints it.
inline std::string text_of(const string &v) { return v.utf8(); }
inline std::string text_of(const char *v) { return v; }
inline std::string text_of(bool v) { return v ? "true" : "false"; }
inline std::string text_of(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", 16, v);
    return buf;
}
inline std::string text_of(float v) { return text_of(static_cast<double>(v)); }
template <class T>
std::string text_of(const T &v) {
    return std::to_string(static_cast<long long>(v));
}

// One argument of StringFormat, typed for the conversion it meets.
struct FormatArg {
    enum Kind { INT, UINT, DBL, STR } kind;
    long long i = 0;
    double d = 0;
    std::string s;
    FormatArg(const string &v) : kind(STR), s(v.utf8()) {}
    FormatArg(const char *v) : kind(STR), s(v) {}
    FormatArg(double v) : kind(DBL), d(v) {}
    FormatArg(float v) : kind(DBL), d(v) {}
    FormatArg(bool v) : kind(INT), i(v) {}
    FormatArg(char v) : kind(INT), i(v) {}
    FormatArg(uchar v) : kind(UINT), i(v) {}
    FormatArg(short v) : kind(INT), i(v) {}
    FormatArg(ushort v) : kind(UINT), i(v) {}
    FormatArg(int v) : kind(INT), i(v) {}
    FormatArg(uint v) : kind(UINT), i(v) {}
    FormatArg(long v) : kind(INT), i(v) {}
    FormatArg(ulong v) : kind(UINT), i(static_cast<long long>(v)) {}
    template <class E, class = typename std::enable_if<std::is_enum<E>::value>::type>
    FormatArg(E v) : kind(INT), i(static_cast<long long>(v)) {}
};

// MQL5's StringFormat: printf conversions; %s takes a string, integers and doubles are converted to the
// conversion's type; I64 / ll / l / h length modifiers accepted.
inline std::string format(const std::string &fmt, const std::vector<FormatArg> &args) {
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < fmt.size(); i++) {
        if (fmt[i] != '%') {
            out += fmt[i];
            continue;
        }
        if (i + 1 < fmt.size() && fmt[i + 1] == '%') {
            out += '%';
            i++;
            continue;
        }
        size_t j = i + 1;
        std::string spec = "%";
        while (j < fmt.size() && std::strchr("-+ #0123456789.*", fmt[j])) spec += fmt[j++];
        while (j < fmt.size() && std::strchr("hlIL6", fmt[j])) j++;  // length modifiers: the argument decides
        if (j >= fmt.size()) break;
        char conv = fmt[j];
        if (next >= args.size()) throw critical_error("StringFormat: not enough arguments for the format");
        const FormatArg &a = args[next++];
        char buf[512];
        switch (conv) {
            case 'd': case 'i': {
                long long v = a.kind == FormatArg::DBL ? static_cast<long long>(a.d) : a.i;
                std::snprintf(buf, sizeof buf, (spec + "lld").c_str(), v);
                break;
            }
            case 'u': case 'x': case 'X': case 'o': case 'c': {
                unsigned long long v = a.kind == FormatArg::DBL ? static_cast<unsigned long long>(a.d)
                                                                : static_cast<unsigned long long>(a.i);
                if (conv == 'c') std::snprintf(buf, sizeof buf, (spec + "c").c_str(), static_cast<int>(v));
                else std::snprintf(buf, sizeof buf, (spec + "ll" + conv).c_str(), v);
                break;
            }
            case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
                double v = a.kind == FormatArg::DBL ? a.d : static_cast<double>(a.i);
                std::snprintf(buf, sizeof buf, (spec + conv).c_str(), v);
                break;
            }
            case 's': {
                std::string v = a.kind == FormatArg::STR ? a.s
                                : a.kind == FormatArg::DBL ? text_of(a.d) : std::to_string(a.i);
                std::snprintf(buf, sizeof buf, (spec + "s").c_str(), v.c_str());
                if (v.size() >= sizeof buf) { out += v; i = j; continue; }
                break;
            }
            default:
                throw critical_error(std::string("StringFormat: unknown conversion %") + conv);
        }
        out += buf;
        i = j;
    }
    return out;
}

}  // namespace mqlrt

// --- strings --------------------------------------------------------------------------------------------------
#define CP_ACP 0
#define CP_OEMCP 1
#define CP_UTF7 65000
#define CP_UTF8 65001

MQL_BUILTIN int StringLen(const string &string_value) { return string_value.len(); }
MQL_BUILTIN string StringSubstr(const string &string_value, int start_pos, int length = -1) {
    int n = string_value.len();
    if (start_pos < 0 || start_pos >= n) return string();
    int count = (length < 0 || start_pos + length > n) ? n - start_pos : length;
    return string(string_value.u16().substr(static_cast<size_t>(start_pos), static_cast<size_t>(count)));
}
MQL_BUILTIN int StringFind(const string &string_value, const string &match_substring, int start_pos = 0) {
    if (start_pos < 0) start_pos = 0;
    size_t at = string_value.u16().find(match_substring.u16(), static_cast<size_t>(start_pos));
    return at == std::u16string::npos ? -1 : static_cast<int>(at);
}
MQL_BUILTIN ushort StringGetCharacter(const string &string_value, int pos) {
    if (pos < 0 || pos >= string_value.len()) {
        mqlrt::set_last_error(5041);  // ERR_STRING_OUT_OF_RANGE
        return 0;
    }
    return string_value.u16()[static_cast<size_t>(pos)];
}
MQL_BUILTIN int StringReplace(string &str, const string &find, const string &replacement) {
    if (find.len() == 0) return -1;
    int count = 0;
    std::u16string &s = str.u16();
    size_t at = 0;
    while ((at = s.find(find.u16(), at)) != std::u16string::npos) {
        s.replace(at, find.u16().size(), replacement.u16());
        at += replacement.u16().size();
        count++;
    }
    return count;
}
MQL_BUILTIN int StringSplit(const string &string_value, const ushort separator, MqlArray<string> &result) {
    result.resize(0, 0);
    if (string_value.len() == 0) return 0;
    std::u16string part;
    for (char16_t c : string_value.u16()) {
        if (c == separator) {
            result.vec().push_back(string(part));
            part.clear();
        } else {
            part += c;
        }
    }
    result.vec().push_back(string(part));
    return result.size();
}
inline bool mqlrt_space(char16_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0x0B || c == 0x0C; }
MQL_BUILTIN int StringTrimLeft(string &string_var) {
    std::u16string &s = string_var.u16();
    size_t n = 0;
    while (n < s.size() && mqlrt_space(s[n])) n++;
    s.erase(0, n);
    return static_cast<int>(n);
}
MQL_BUILTIN int StringTrimRight(string &string_var) {
    std::u16string &s = string_var.u16();
    size_t n = 0;
    while (n < s.size() && mqlrt_space(s[s.size() - 1 - n])) n++;
    s.erase(s.size() - n);
    return static_cast<int>(n);
}
MQL_BUILTIN bool StringToLower(string &string_var) {
    for (char16_t &c : string_var.u16())
        if (c >= 'A' && c <= 'Z') c = static_cast<char16_t>(c + 32);
    return true;
}
MQL_BUILTIN bool StringToUpper(string &string_var) {
    for (char16_t &c : string_var.u16())
        if (c >= 'a' && c <= 'z') c = static_cast<char16_t>(c - 32);
    return true;
}
MQL_BUILTIN string ShortToString(ushort symbol_code) { return string(std::u16string(1, static_cast<char16_t>(symbol_code))); }
MQL_BUILTIN string ShortArrayToString(const MqlArray<ushort> &array, int start = 0, int count = -1) {
    std::u16string out;
    int n = array.size();
    int end = count < 0 ? n : std::min(n, start + count);
    for (int i = std::max(0, start); i < end; i++) {
        if (array[i] == 0) break;
        out += static_cast<char16_t>(array[i]);
    }
    return string(out);
}
MQL_BUILTIN int StringToCharArray(const string &text_string, MqlArray<uchar> &array, int start = 0, int count = -1, uint codepage = CP_ACP) {
    std::string bytes;
    if (codepage == CP_UTF8) {
        bytes = text_string.utf8();
    } else {
        for (char16_t c : text_string.u16()) bytes += c < 0x100 ? static_cast<char>(c) : '?';
    }
    bytes.push_back('\0');  // MQL5 copies the terminating zero too
    size_t n = count < 0 ? bytes.size() : std::min(bytes.size(), static_cast<size_t>(count));
    if (array.size() < start + static_cast<int>(n)) array.resize(start + static_cast<int>(n), 0);
    for (size_t i = 0; i < n; i++) array[start + static_cast<long>(i)] = static_cast<uchar>(bytes[i]);
    return static_cast<int>(n);
}
MQL_BUILTIN string CharArrayToString(const MqlArray<uchar> &array, int start = 0, int count = -1, uint codepage = CP_ACP) {
    std::string bytes;
    int n = array.size();
    int end = count < 0 ? n : std::min(n, start + count);
    for (int i = std::max(0, start); i < end; i++) {
        if (array[i] == 0) break;
        bytes += static_cast<char>(array[i]);
    }
    if (codepage == CP_UTF8) return string::from_utf8(bytes);
    std::u16string out;
    for (unsigned char c : bytes) out += static_cast<char16_t>(c);
    return string(out);
}
MQL_BUILTIN long StringToInteger(const string &value) {
    std::string s = value.utf8();
    return std::strtoll(s.c_str(), nullptr, 10);
}
MQL_BUILTIN double StringToDouble(const string &value) {
    std::string s = value.utf8();
    return std::strtod(s.c_str(), nullptr);
}
MQL_BUILTIN string IntegerToString(long number, int str_len = 0, ushort fill_symbol = ' ') {
    std::string digits = std::to_string(number);
    while (static_cast<int>(digits.size()) < str_len) digits.insert(digits.begin(), static_cast<char>(fill_symbol));
    return string(digits.c_str());
}
MQL_BUILTIN string DoubleToString(double value, int digits = 8) {
    if (!std::isfinite(value)) return string(std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf"));
    if (digits < 0 || digits > 16) digits = 8;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", digits, value);
    return string(buf);
}
MQL_BUILTIN double NormalizeDouble(double value, int digits) {
    double scale = std::pow(10.0, digits);
    return std::round(value * scale) / scale;
}
template <class... A> MQL_BUILTIN string StringFormat(const string &format, A... args) {
    return string::from_utf8(mqlrt::format(format.utf8(), {mqlrt::FormatArg(args)...}));
}
template <class... A> MQL_BUILTIN void PrintFormat(const string &format_string, A... args) {
    mqlrt::journal() << mqlrt::format(format_string.utf8(), {mqlrt::FormatArg(args)...}) << std::endl;
}
template <class... A> MQL_BUILTIN void Print(A... args) {
    std::string line;
    ((line += mqlrt::text_of(args)), ...);
    mqlrt::journal() << line << std::endl;
}
template <class... A> MQL_BUILTIN void Alert(A... args) {
    std::string line = "Alert: ";
    ((line += mqlrt::text_of(args)), ...);
    mqlrt::journal() << line << std::endl;
}

// --- arrays ---------------------------------------------------------------------------------------------------
template <class T> MQL_BUILTIN int ArraySize(const MqlArray<T> &array) { return array.size(); }
template <class T> MQL_BUILTIN int ArrayResize(MqlArray<T> &array, int new_size, int reserve_size = 0) {
    if (new_size < 0) return -1;
    if (array.is_fixed()) {
        mqlrt::set_last_error(4007);  // ERR_ARRAY_RESIZE_ERROR: a static array keeps its size
        return array.size() == new_size ? new_size : -1;
    }
    array.resize(new_size, reserve_size);
    return new_size;
}
template <class T> MQL_BUILTIN int ArrayCopy(MqlArray<T> &dst_array, const MqlArray<T> &src_array, int dst_start = 0, int src_start = 0, int count = WHOLE_ARRAY) {
    int n = src_array.size() - src_start;
    if (count >= 0 && count < n) n = count;
    if (n <= 0 || src_start < 0 || dst_start < 0) return 0;
    if (dst_array.size() < dst_start + n) dst_array.resize(dst_start + n, 0);
    std::vector<T> tmp(src_array.vec().begin() + src_start, src_array.vec().begin() + src_start + n);
    for (int i = 0; i < n; i++) dst_array[dst_start + i] = tmp[static_cast<size_t>(i)];
    return n;
}
template <class T> MQL_BUILTIN bool ArrayRemove(MqlArray<T> &array, uint start, uint count = WHOLE_ARRAY) {
    uint n = static_cast<uint>(array.size());
    if (start >= n) return false;
    uint take = (count == static_cast<uint>(WHOLE_ARRAY) || start + count > n) ? n - start : count;
    array.vec().erase(array.vec().begin() + start, array.vec().begin() + start + take);
    return true;
}
template <class T, class V> MQL_BUILTIN int ArrayInitialize(MqlArray<T> &array, V value) {
    for (int i = 0; i < array.size(); i++) array[i] = static_cast<T>(value);
    return array.size();
}
template <class T> MQL_BUILTIN void ZeroMemory(T &variable) { variable = T(); }

// --- math -----------------------------------------------------------------------------------------------------
template <class A, class B> MQL_BUILTIN auto MathMax(A value1, B value2) -> decltype(value1 + value2) { return value1 > value2 ? value1 : value2; }
template <class A, class B> MQL_BUILTIN auto MathMin(A value1, B value2) -> decltype(value1 + value2) { return value1 < value2 ? value1 : value2; }
template <class T> MQL_BUILTIN T MathAbs(T value) { return value < 0 ? -value : value; }
MQL_BUILTIN double MathRound(double value) { return std::round(value); }
MQL_BUILTIN double MathPow(double base, double exponent) { return std::pow(base, exponent); }
MQL_BUILTIN double MathFloor(double val) { return std::floor(val); }
MQL_BUILTIN bool MathIsValidNumber(double number) { return std::isfinite(number); }
namespace mqlrt {
inline uint &rand_state() {
    static uint value = 1;
    return value;
}
}  // namespace mqlrt
MQL_BUILTIN void MathSrand(int seed) { mqlrt::rand_state() = static_cast<uint>(seed); }
MQL_BUILTIN int MathRand(void) {  // 0..32767, as MQL5's
    mqlrt::rand_state() = mqlrt::rand_state() * 214013u + 2531011u;
    return static_cast<int>((mqlrt::rand_state() >> 16) & 0x7FFF);
}

// --- time -----------------------------------------------------------------------------------------------------
struct MqlDateTime {
    int year, mon, day, hour, min, sec, day_of_week, day_of_year;
};
MQL_BUILTIN datetime TimeGMT(void) { return mqlrt::utc_ms() / 1000; }
MQL_BUILTIN datetime TimeTradeServer(void) { return mqlrt::utc_ms() / 1000 + mqlrt::server_offset_s(); }
MQL_BUILTIN datetime TimeCurrent(void) { return TimeTradeServer(); }  // the last quote's server time
MQL_BUILTIN datetime TimeLocal(void) { return mqlrt::utc_ms() / 1000; }  // the harness's machine runs on UTC
MQL_BUILTIN bool TimeToStruct(datetime dt, MqlDateTime &dt_struct) {
    time_t t = static_cast<time_t>(dt);
    struct tm tm;
    if (gmtime_r(&t, &tm) == nullptr) return false;
    dt_struct = MqlDateTime{tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                            tm.tm_sec,         tm.tm_wday,      tm.tm_yday};
    return true;
}
MQL_BUILTIN uint GetTickCount(void) { return static_cast<uint>(mqlrt::mono_us() / 1000); }
MQL_BUILTIN ulong GetTickCount64(void) { return mqlrt::mono_us() / 1000; }
MQL_BUILTIN ulong GetMicrosecondCount(void) { return mqlrt::mono_us(); }
MQL_BUILTIN void Sleep(int milliseconds) { std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds)); }
MQL_BUILTIN bool EventSetMillisecondTimer(int milliseconds) {
    if (milliseconds <= 0) return false;
    mqlrt::timer_ms() = milliseconds < 10 ? 10 : milliseconds;  // the terminal's resolution
    return true;
}
MQL_BUILTIN bool EventSetTimer(int seconds) { return EventSetMillisecondTimer(seconds * 1000); }
MQL_BUILTIN void EventKillTimer(void) { mqlrt::timer_ms() = 0; }

// A small append-only JSON writer for status output (angelctl --json). Not for hot paths.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace angel {

class JsonWriter {
public:
    JsonWriter& begin_object() { sep(); out_ += '{'; first_ = true; return *this; }
    JsonWriter& end_object() { out_ += '}'; first_ = false; return *this; }
    JsonWriter& begin_array() { sep(); out_ += '['; first_ = true; return *this; }
    JsonWriter& end_array() { out_ += ']'; first_ = false; return *this; }
    JsonWriter& key(std::string_view k) {
        sep();
        str(k);
        out_ += ':';
        first_ = true;  // the value follows without a comma
        return *this;
    }
    JsonWriter& value(std::string_view s) { sep(); str(s); return *this; }
    JsonWriter& value(const char* s) { return value(std::string_view(s)); }
    JsonWriter& value(uint64_t v) { sep(); out_ += std::to_string(v); return *this; }
    JsonWriter& value(int64_t v) { sep(); out_ += std::to_string(v); return *this; }
    JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
    JsonWriter& value(unsigned v) { return value(static_cast<uint64_t>(v)); }
    JsonWriter& value(double v) {
        sep();
        char b[32];
        std::snprintf(b, sizeof b, "%.3f", v);
        out_ += b;
        return *this;
    }
    JsonWriter& value(bool v) { sep(); out_ += v ? "true" : "false"; return *this; }
    JsonWriter& null_value() { sep(); out_ += "null"; return *this; }
    template <class T>
    JsonWriter& field(std::string_view k, T v) { key(k); return value(v); }
    const std::string& str() const { return out_; }

private:
    void sep() {
        if (!first_) out_ += ',';
        first_ = false;
    }
    void str(std::string_view s) {
        out_ += '"';
        for (char c : s) {
            if (c == '"' || c == '\\') { out_ += '\\'; out_ += c; }
            else if (static_cast<unsigned char>(c) < 0x20) {
                char b[8];
                std::snprintf(b, sizeof b, "\\u%04x", c);
                out_ += b;
            } else out_ += c;
        }
        out_ += '"';
    }
    std::string out_;
    bool first_ = true;
};

}  // namespace angel

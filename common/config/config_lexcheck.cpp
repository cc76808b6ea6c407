// Integer literals that libconfig would silently wrap (see config_detail.hpp).
// A tiny scanner of the libconfig grammar: it only needs to skip comments, strings and setting
// names correctly so that what is left and looks like a number is a number.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/config/config.hpp"
#include "common/config/config_detail.hpp"

namespace angel::config_detail {
namespace {

constexpr int kMaxIncludeDepth = 10;  // libconfig's own limit

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_name_char(char c) { return is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*'; }
bool is_number_char(char c) { return is_alpha(c) || is_digit(c) || c == '.'; }

// Checks one numeric token; floats and malformed tokens are libconfig's business.
void check_number(const std::string& token, const std::string& file, int line) {
    std::string body = token;
    size_t sign = (body[0] == '-' || body[0] == '+') ? 1 : 0;
    bool is64 = false;
    while (!body.empty() && body.back() == 'L') {
        body.pop_back();
        is64 = true;
    }
    const bool hex = body.size() > sign + 1 && body[sign] == '0' &&
                     (body[sign + 1] == 'x' || body[sign + 1] == 'X');
    if (!hex && body.find_first_of(".eE") != std::string::npos) return;  // a float
    const size_t digits_from = sign + (hex ? 2 : 0);
    if (digits_from >= body.size()) return;
    for (size_t i = digits_from; i < body.size(); ++i) {
        const char c = body[i];
        const bool ok = hex ? (is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
                            : is_digit(c);
        if (!ok) return;  // not a plain integer: the parser has already judged it
    }
    errno = 0;
    const long long value = std::strtoll(body.c_str(), nullptr, hex ? 16 : 10);
    const bool beyond64 = errno == ERANGE;
    const bool beyond32 = value > INT32_MAX || value < INT32_MIN;
    if (beyond64) {
        throw ConfigError(file, line, "integer " + token + " does not fit in 64 bits");
    }
    if (!is64 && beyond32) {
        throw ConfigError(file, line,
                          "integer " + token + " does not fit in 32 bits; write " + body +
                              "L for a 64-bit value");
    }
}

class Scanner {
public:
    Scanner(const std::string& text, const std::string& file, const std::string& include_dir,
            int depth)
        : t_(text), file_(file), include_dir_(include_dir), depth_(depth) {}

    void run() {
        while (i_ < t_.size()) step();
    }

private:
    char at(size_t k) const { return k < t_.size() ? t_[k] : '\0'; }

    void step() {
        const char c = t_[i_];
        if (c == '\n') {
            ++line_;
            ++i_;
        } else if (c == '#' || (c == '/' && at(i_ + 1) == '/')) {
            while (i_ < t_.size() && t_[i_] != '\n') ++i_;
        } else if (c == '/' && at(i_ + 1) == '*') {
            skip_block_comment();
        } else if (c == '"') {
            skip_string();
        } else if (c == '@') {
            directive();
        } else if (is_alpha(c) || c == '*' || c == '_') {
            while (i_ < t_.size() && is_name_char(t_[i_])) ++i_;
        } else if (is_digit(c) || c == '.' ||
                   ((c == '-' || c == '+') && (is_digit(at(i_ + 1)) || at(i_ + 1) == '.'))) {
            number();
        } else {
            ++i_;
        }
    }

    void skip_block_comment() {
        i_ += 2;
        while (i_ < t_.size() && !(t_[i_] == '*' && at(i_ + 1) == '/')) {
            if (t_[i_] == '\n') ++line_;
            ++i_;
        }
        i_ += 2;
    }

    // Returns the raw text between the quotes (escapes are kept; only include paths use it).
    std::string skip_string() {
        const size_t start = ++i_;
        while (i_ < t_.size() && t_[i_] != '"') {
            if (t_[i_] == '\\') ++i_;
            else if (t_[i_] == '\n') ++line_;
            ++i_;
        }
        std::string inside = t_.substr(start, i_ - start);
        ++i_;
        return inside;
    }

    void directive() {
        const size_t start = i_++;
        while (i_ < t_.size() && is_alpha(t_[i_])) ++i_;
        if (t_.compare(start, i_ - start, "@include") != 0) return;
        while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t')) ++i_;
        if (at(i_) != '"') return;
        const std::string path = join_path(include_dir_, skip_string());
        if (depth_ >= kMaxIncludeDepth) return;  // libconfig reports the nesting itself
        std::ifstream in(path);
        if (!in) return;  // likewise an unreadable include
        std::stringstream ss;
        ss << in.rdbuf();
        Scanner(ss.str(), path, include_dir_, depth_ + 1).run();
    }

    void number() {
        const size_t start = i_++;
        while (i_ < t_.size()) {
            const char c = t_[i_];
            const char prev = t_[i_ - 1];
            // A sign belongs to the number only right after a decimal exponent's e/E.
            const bool exponent_sign = (c == '-' || c == '+') && (prev == 'e' || prev == 'E') &&
                                       t_.compare(start, 2, "0x") != 0 &&
                                       t_.compare(start, 2, "0X") != 0;
            if (!is_number_char(c) && !exponent_sign) break;
            ++i_;
        }
        check_number(t_.substr(start, i_ - start), file_, line_);
    }

    const std::string& t_;
    const std::string file_;
    const std::string include_dir_;
    const int depth_;
    size_t i_ = 0;
    int line_ = 1;
};

}  // namespace

std::string join_path(const std::string& dir, const std::string& path) {
    if (dir.empty() || path.empty() || path[0] == '/') return path;
    return dir.back() == '/' ? dir + path : dir + "/" + path;
}

void check_integer_literals(const std::string& text, const std::string& file_name,
                            const std::string& include_dir) {
    Scanner(text, file_name, include_dir, 0).run();
}

}  // namespace angel::config_detail

// Internals of the configuration loader shared by its .cpp files; not for other layers.
#pragma once
#include <string>

namespace angel::config_detail {

// libconfig 1.5 (Debian 12) silently wraps an integer literal that does not fit in 32 bits
// (max_flows = 4294967297 reads as 1), so a range check after parsing cannot see the mistake.
// This scans the text for integer literals and throws ConfigError, with the line, for one
// that libconfig would wrap: without the L suffix beyond the 32-bit range, with it beyond
// 64 bits. Follows @include (relative to include_dir) like libconfig does.
void check_integer_literals(const std::string& text, const std::string& file_name,
                            const std::string& include_dir);

// Joins a relative path to a folder ("" = current folder).
std::string join_path(const std::string& dir, const std::string& path);

}  // namespace angel::config_detail

// A temporary directory for a unit test, removed with its contents when the test ends.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace angel::unit_testing {

struct TempDir {
    std::string path;
    // prefix: names the directory, /tmp/<prefix>-XXXXXX
    explicit TempDir(const std::string& prefix) {
        std::string tpl = "/tmp/" + prefix + "-XXXXXX";
        const char* p = mkdtemp(tpl.data());
        EXPECT_NE(p, nullptr);
        path = p ? p : "";
    }
    ~TempDir() {
        std::error_code ec;
        if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace angel::unit_testing

// Logging in the foreground: one "stage: message" line per call on stderr, level filtering,
// errno kept for %m, long messages cut rather than overflowing.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/log.hpp"

namespace angel {
namespace {

// Redirects stderr into a pipe for the lifetime of the object.
class StderrCapture {
public:
    StderrCapture() {
        EXPECT_EQ(pipe(fds_), 0);
        fcntl(fds_[0], F_SETFL, O_NONBLOCK);
        saved_ = dup(STDERR_FILENO);
        dup2(fds_[1], STDERR_FILENO);
    }
    ~StderrCapture() {
        restore();
        close(fds_[0]);
    }
    std::string take() {
        restore();
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = read(fds_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
        return out;
    }

private:
    void restore() {
        if (saved_ < 0) return;
        dup2(saved_, STDERR_FILENO);
        close(saved_);
        close(fds_[1]);
        saved_ = -1;
    }
    int fds_[2] = {-1, -1};
    int saved_ = -1;
};

class LogTest : public ::testing::Test {
protected:
    void SetUp() override {
        log_init("angel-test", true);
        log_set_level(LOG_INFO);
    }
    void TearDown() override { log_set_level(LOG_INFO); }
};

TEST_F(LogTest, ForegroundWritesStageNameToStderr) {
    StderrCapture cap;
    log_info("hello %d", 5);
    log_err("broken: %s", "yes");
    log_notice("with newline\n");
    EXPECT_EQ(cap.take(), "angel-test: hello 5\nangel-test: broken: yes\nangel-test: with newline\n");
    EXPECT_TRUE(log_foreground());
}

TEST_F(LogTest, LevelFiltersLessUrgentMessages) {
    StderrCapture cap;
    log_set_level(LOG_WARNING);
    EXPECT_EQ(log_level(), LOG_WARNING);
    log_info("hidden");
    log_debug("hidden too");
    log_warn("shown");
    log_set_level(LOG_DEBUG);
    log_debug("debug shown");
    EXPECT_EQ(cap.take(), "angel-test: shown\nangel-test: debug shown\n");
}

TEST_F(LogTest, ErrnoIsKeptForPercentM) {
    StderrCapture cap;
    errno = ENOENT;
    log_err("open: %m");
    EXPECT_EQ(errno, ENOENT);
    EXPECT_EQ(cap.take(), "angel-test: open: No such file or directory\n");
}

TEST_F(LogTest, LongMessagesAreCutOnOneLine) {
    StderrCapture cap;
    const std::string big(10000, 'x');
    log_info("%s", big.c_str());
    const std::string out = cap.take();
    ASSERT_GT(out.size(), 100u);
    EXPECT_LT(out.size(), 4096u);
    EXPECT_EQ(out.rfind("angel-test: xxx", 0), 0u);
    EXPECT_EQ(out.substr(out.size() - 4), "...\n");
    EXPECT_EQ(out.find('\n'), out.size() - 1);
}

}  // namespace
}  // namespace angel

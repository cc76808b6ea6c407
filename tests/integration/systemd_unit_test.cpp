// The systemd unit rc.d/angel-flowmeter.service as `make install` installs it: tools/install.sh
// into a temporary DESTDIR with PREFIX=/opt/angel-test, then `systemd-analyze verify` on the
// installed unit with that DESTDIR as its root (systemd's own units copied in beside it, so that
// the targets it names exist there; the man pages it names found through MANPATH).
//
// Asserted: verify exits 0 and prints nothing (it exits 0 on a directive it ignores, so its
// output is the check); the unit's paths are PREFIX's; PIDFile is where angel-ctld writes its
// pidfile for the default instance and runtime_dir; a copy with a broken directive and one with a
// missing binary make verify speak (the check can fail). Skipped only without systemd-analyze.
#include <gtest/gtest.h>

#include <string>

#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr const char* kPrefix = "/opt/angel-test";
constexpr const char* kUnit = "/etc/systemd/system/angel-flowmeter.service";

// The value of "Key=" in the unit text; empty when absent.
std::string unit_value(const std::string& text, const std::string& key) {
    for (size_t at = 0; at < text.size();) {
        const size_t nl = std::min(text.find('\n', at), text.size());
        const std::string line = text.substr(at, nl - at);
        if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
        at = nl + 1;
    }
    return "";
}

CommandResult verify(const fs::path& root) {
    const std::string manpath = (root / "opt/angel-test/share/man").string();
    return run_command({"env", "MANPATH=" + manpath, "systemd-analyze", "verify", "--root=" + root.string(), kUnit},
                       Millis(60000));
}

TEST(SystemdUnit, InstalledUnitPassesSystemdAnalyzeVerify) {
    if (!have_program("systemd-analyze"))
        GTEST_SKIP() << "systemd-analyze is not installed (package systemd; tools/install-deps.sh installs it)";
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "no angel-ctld in " << bin_dir();
    TempDir tmp("angel-systemd");
    const fs::path root = tmp / "root";
    const CommandResult inst = run_command(
        {"sh", (source_dir() / "tools/install.sh").string(), bin_dir().string(), root.string(), kPrefix}, Millis(60000));
    ASSERT_TRUE(inst.ok()) << inst.describe() << inst.out;
    const fs::path unit = root / "etc/systemd/system/angel-flowmeter.service";
    ASSERT_TRUE(fs::exists(unit)) << "make install did not install " << unit;
    // Beside the LSB and rc.subr scripts.
    EXPECT_TRUE(fs::exists(root / "etc/init.d/angel-flowmeter"));
    EXPECT_TRUE(fs::exists(root / "opt/angel-test/share/angel/rc.d/angel_flowmeter"));
    // systemd's own units (sysinit.target, multi-user.target, network-online.target...), which
    // verify loads from the same root.
    const fs::path units = fs::exists("/lib/systemd/system") ? fs::path("/lib/systemd/system") : fs::path("/usr/lib/systemd/system");
    fs::create_directories(root / "lib/systemd");
    fs::copy(units, root / "lib/systemd/system", fs::copy_options::recursive | fs::copy_options::copy_symlinks);

    const std::string text = read_file(unit);
    EXPECT_EQ(unit_value(text, "Type"), "forking");
    EXPECT_EQ(unit_value(text, "ExecStart"), std::string(kPrefix) + "/sbin/angel-ctld -c ${ANGEL_CONF}");
    EXPECT_EQ(unit_value(text, "ExecReload"), std::string(kPrefix) + "/sbin/angelctl -c ${ANGEL_CONF} reload");
    EXPECT_EQ(unit_value(text, "Environment"), std::string("ANGEL_CONF=") + kPrefix + "/etc/angel/flowmeter.conf");
    EXPECT_EQ(unit_value(text, "KillMode"), "mixed");
    EXPECT_EQ(unit_value(text, "Restart"), "on-failure");
    // PIDFile is where ctld writes it with the default instance and runtime_dir (/var/run is
    // systemd's legacy name for /run: the unit says /run, as verify asks).
    write_file(tmp / "default.conf", "classifier = { host = \"127.0.0.1\"; };\ncapture = { interface = \"lo\"; };\n");
    const CommandResult pf =
        run_command({binary("angel-ctld").string(), "-c", (tmp / "default.conf").string(), "--pidfile-path"}, Millis(10000));
    ASSERT_TRUE(pf.ok()) << pf.describe();
    std::string ctld_pidfile = pf.out.substr(0, pf.out.find('\n'));
    if (ctld_pidfile.rfind("/var/run/", 0) == 0) ctld_pidfile = ctld_pidfile.substr(4);
    EXPECT_EQ(unit_value(text, "PIDFile"), ctld_pidfile);

    const CommandResult v = verify(root);
    EXPECT_TRUE(v.ok()) << v.describe();
    EXPECT_EQ(v.out + v.err, "") << "systemd-analyze verify had something to say";

    // The check can fail: a directive systemd does not know, then a binary that is not there.
    write_file(unit, text + "\n[Service]\nKillMood=mixed\n");
    const CommandResult bad = verify(root);
    EXPECT_NE(bad.err.find("KillMood"), std::string::npos) << bad.out << bad.err;
    fs::remove(root / "opt/angel-test/sbin/angelctl");
    write_file(unit, text);
    const CommandResult missing = verify(root);
    EXPECT_FALSE(missing.ok()) << missing.out << missing.err;
    EXPECT_NE(missing.err.find("angelctl is not executable"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace angel::itest

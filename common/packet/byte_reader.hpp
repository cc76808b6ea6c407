// Bounds-checked, alignment-safe loads from a captured frame. Every layer reads through this, so
// "never read past caplen" is enforced in one place: callers check has() before a header, and
// each load re-checks and yields 0 when out of range (defence in depth, never an overread).
#pragma once
#include <cstdint>
#include <cstring>

namespace angel::packet {

struct ByteReader {
    const uint8_t* data = nullptr;
    uint32_t len = 0;  // the captured length: nothing at or beyond it is ever read

    // True when [off, off + n) lies inside the captured bytes (written to avoid overflow).
    bool has(uint32_t off, uint32_t n) const { return off <= len && n <= len - off; }

    uint8_t u8(uint32_t off) const { return has(off, 1) ? data[off] : 0; }

    uint16_t be16(uint32_t off) const {
        uint8_t b[2] = {};
        if (has(off, 2)) std::memcpy(b, data + off, 2);
        return static_cast<uint16_t>((b[0] << 8) | b[1]);
    }

    uint32_t be32(uint32_t off) const {
        uint8_t b[4] = {};
        if (has(off, 4)) std::memcpy(b, data + off, 4);
        return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    }

    // Host byte order (DLT_NULL stores its address family in the capturing host's order).
    uint32_t native32(uint32_t off) const {
        uint32_t v = 0;
        if (has(off, 4)) std::memcpy(&v, data + off, 4);
        return v;
    }

    // Copies n bytes to dst (callers have checked has(off, n)); zero-fills otherwise.
    void copy(uint32_t off, uint32_t n, uint8_t* dst) const {
        if (has(off, n)) std::memcpy(dst, data + off, n);
        else std::memset(dst, 0, n);
    }
};

}  // namespace angel::packet

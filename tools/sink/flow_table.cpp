// Insert, growth and backward-shift deletion of the live-flow table (see flow_table.hpp).
#include "tools/sink/flow_table.hpp"

#include <algorithm>
#include <bit>

namespace angel::sink {

FlowTable::FlowTable(size_t capacity, size_t max_size)
    : max_size_(std::clamp(max_size, size_t(1), kMaxMaxSize)) {
    // Never more slots than max_size entries can need (growth keeps them at most half full).
    const size_t most = std::max(size_t(16), 2 * max_size_);
    const size_t cap = std::bit_ceil(std::clamp(capacity, size_t(16), most));
    slots_.assign(cap, Slot{0, 0, 0, 0});
    mask_ = cap - 1;
    shift_ = 32u - unsigned(std::countr_zero(cap));
}

size_t FlowTable::place(uint32_t id) const {
    size_t i = home(id);
    while (slots_[i].cold != 0) i = (i + 1) & mask_;
    return i;
}

FlowTable::Slot* FlowTable::insert(uint32_t id, bool* inserted) {
    *inserted = false;
    if (Slot* s = find(id)) return s;
    if (size_ >= max_size_) return nullptr;
    // Grow before passing half full, so that probes stay short and an empty slot always ends them.
    if ((size_ + 1) * 2 > slots_.size()) grow();
    uint32_t c;
    if (!free_cold_.empty()) {
        c = free_cold_.back();
        free_cold_.pop_back();
        cold_[c] = FlowCold{};
    } else {
        c = uint32_t(cold_.size());
        cold_.emplace_back();
    }
    Slot& s = slots_[place(id)];
    s = Slot{id, c + 1, 0, 0};
    ++size_;
    *inserted = true;
    return &s;
}

void FlowTable::grow() {
    std::vector<Slot> old(slots_.size() * 2, Slot{0, 0, 0, 0});
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    --shift_;
    for (const Slot& s : old)
        if (s.cold != 0) slots_[place(s.id)] = s;  // cold index travels with the slot
}

void FlowTable::erase_slot(Slot* s) {
    free_cold_.push_back(s->cold - 1);
    --size_;
    // Backward shift: walk the rest of the cluster; an entry whose probe path passes through the
    // hole (its home is not in (hole, j] cyclically) moves into it, and its old slot becomes the
    // hole. The first empty slot ends the cluster: nothing after it can have probed past.
    size_t hole = index_of(s);
    for (size_t j = (hole + 1) & mask_; slots_[j].cold != 0; j = (j + 1) & mask_) {
        const size_t h = home(slots_[j].id);
        if (((j - h) & mask_) >= ((j - hole) & mask_)) {
            slots_[hole] = slots_[j];
            hole = j;
        }
    }
    slots_[hole].cold = 0;
}

bool FlowTable::erase(uint32_t id) {
    Slot* s = find(id);
    if (!s) return false;
    erase_slot(s);
    return true;
}

bool FlowTable::check_invariants() const {
    size_t n = 0;
    std::vector<bool> cold_used(cold_.size(), false);
    for (size_t i = 0; i < slots_.size(); ++i) {
        const Slot& s = slots_[i];
        if (s.cold == 0) continue;
        ++n;
        if (s.cold > cold_.size() || cold_used[s.cold - 1]) return false;
        cold_used[s.cold - 1] = true;
        for (size_t j = home(s.id); j != i; j = (j + 1) & mask_)
            if (slots_[j].cold == 0 || slots_[j].id == s.id) return false;  // unreachable or duplicate
    }
    if (n != size_ || n * 2 > slots_.size()) return false;
    // Every cold entry is either in use or free, exactly once.
    for (uint32_t c : free_cold_) {
        if (c >= cold_.size() || cold_used[c]) return false;
        cold_used[c] = true;
    }
    return n + free_cold_.size() == cold_.size();
}

}  // namespace angel::sink

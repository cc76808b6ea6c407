// customers.networks as the customer set's ranges (shm/customer_set.hpp): each prefix becomes
// the inclusive range of its addresses; ranges are sorted and every overlapping or adjacent
// pair is joined, so that a lookup finds at most one candidate. Overlaps and duplicates in the
// list are fine. Root (ctld) builds it on the side, before anything is swapped in.
#pragma once
#include <vector>

#include "common/config/config.hpp"
#include "shm/customer_set.hpp"

namespace angel {

CustomerRanges build_customer_ranges(const std::vector<Cidr>& nets);

}  // namespace angel

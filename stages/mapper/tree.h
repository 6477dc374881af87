// Span trees of one bundle: root ends and output order (docs/mapping.md "Identity, determinism,
// order").
//
// Contract: extend_root_ends() makes every turn or session root (kind trace, or a span without
// tool_name) and every agent span end at the latest end among its descendants. tree_order() returns
// the indexes of `spans` depth-first, parents before children, trees by `order_key` (the turn
// order), siblings by (order key, start, span id); a span whose parent is not in `spans` is a root.
// Thread: pure functions. Errors: none.
#pragma once

#include <cstddef>
#include <vector>

#include "pipeline/span.h"

namespace chsync::mapper {

void extend_root_ends(std::vector<Span>& spans);
std::vector<std::size_t> tree_order(const std::vector<Span>& spans,
                                    const std::vector<int>& order_key);

}  // namespace chsync::mapper

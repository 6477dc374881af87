// Span trees: see tree.h.
#include "stages/mapper/tree.h"

#include <algorithm>
#include <unordered_map>

namespace chsync::mapper {

namespace {
std::uint64_t id_key(const SpanId& id) {
  std::uint64_t k = 0;
  for (auto b : id) k = (k << 8) | b;
  return k;
}
}  // namespace

void extend_root_ends(std::vector<Span>& spans) {
  std::unordered_map<std::uint64_t, std::size_t> by_key;
  for (std::size_t i = 0; i < spans.size(); ++i) by_key.emplace(spans[i].span_key(), i);
  // Walk each span up to its top ancestors, extending ends (trees are shallow).
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const std::int64_t end = spans[i].end_ms;
    const Span* cur = &spans[i];
    int guard = 0;
    while (cur->has_parent && guard++ < 64) {
      auto it = by_key.find(id_key(cur->parent_id));
      if (it == by_key.end()) break;
      Span& p = spans[it->second];
      // Roots and agents cover their descendants (a timeline draws a child past its parent's bar
      // otherwise); tools keep their own end (a subagent never outlasts its Task call's result).
      if (p.kind == SpanKind::kTrace || p.kind == SpanKind::kAgent ||
          (p.kind == SpanKind::kSpan && !p.tool_name))
        p.end_ms = std::max(p.end_ms, end);
      cur = &p;
    }
  }
}

std::vector<std::size_t> tree_order(const std::vector<Span>& spans,
                                    const std::vector<int>& order_key) {
  std::unordered_map<std::uint64_t, std::size_t> by_key;
  for (std::size_t i = 0; i < spans.size(); ++i) by_key.emplace(spans[i].span_key(), i);
  std::vector<std::vector<std::size_t>> children(spans.size());
  std::vector<std::size_t> roots;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    auto it = spans[i].has_parent ? by_key.find(id_key(spans[i].parent_id)) : by_key.end();
    if (it != by_key.end() && it->second != i) children[it->second].push_back(i);
    else roots.push_back(i);
  }
  auto less = [&](std::size_t a, std::size_t b) {
    const Span& x = spans[a];
    const Span& y = spans[b];
    if (order_key[a] != order_key[b]) return order_key[a] < order_key[b];
    if (x.start_ms != y.start_ms) return x.start_ms < y.start_ms;
    return x.span_key() < y.span_key();
  };
  std::sort(roots.begin(), roots.end(), less);
  std::vector<std::size_t> order;
  order.reserve(spans.size());
  std::vector<std::size_t> stack(roots.rbegin(), roots.rend());
  while (!stack.empty()) {
    const std::size_t i = stack.back();
    stack.pop_back();
    order.push_back(i);
    auto& ch = children[i];
    std::sort(ch.begin(), ch.end(), less);
    // Not std::views::reverse: clang 14 (the fuzz build) cannot use libstdc++ 12's ranges.
    stack.insert(stack.end(), ch.rbegin(), ch.rend());
  }
  return order;
}

}  // namespace chsync::mapper

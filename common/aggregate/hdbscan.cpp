#include "frugal/aggregate/hdbscan.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace frugal {
namespace {

// One merge of the single-linkage hierarchy: nodes 0..n-1 are the points,
// node n + t is the t-th merge.
struct Merge {
  size_t left, right;
  double distance;
  size_t size;
};

// One edge of the condensed tree: `child` (a point, or a cluster id >= n)
// leaves `parent` at lambda = 1 / distance.
struct Condensed {
  size_t parent, child;
  double lambda;
  size_t size;
};

std::vector<double> CoreDistances(std::span<const double> d, size_t n, size_t min_samples) {
  std::vector<double> core(n), row(n);
  for (size_t i = 0; i < n; ++i) {
    std::copy(d.begin() + static_cast<std::ptrdiff_t>(i * n), d.begin() + static_cast<std::ptrdiff_t>((i + 1) * n),
              row.begin());
    row[i] = 0;  // the point itself is its nearest, at 0
    std::nth_element(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(min_samples - 1), row.end());
    core[i] = row[min_samples - 1];
  }
  return core;
}

// Prim's algorithm on the dense mutual-reachability graph, then the edges
// merged in increasing order (ties in the order Prim found them) into the
// single-linkage hierarchy.
std::vector<Merge> SingleLinkage(std::span<const double> d, size_t n, const std::vector<double>& core) {
  auto reach = [&](size_t a, size_t b) { return std::max({core[a], core[b], d[a * n + b]}); };
  struct Edge {
    size_t a, b;
    double w;
  };
  std::vector<Edge> edges;
  std::vector<bool> in_tree(n, false);
  std::vector<double> best(n, std::numeric_limits<double>::infinity());
  std::vector<size_t> from(n, 0);
  size_t current = 0;
  in_tree[0] = true;
  for (size_t added = 1; added < n; ++added) {
    size_t next = n;
    for (size_t j = 0; j < n; ++j) {
      if (in_tree[j]) continue;
      const double w = reach(current, j);
      if (w < best[j]) best[j] = w, from[j] = current;
      if (next == n || best[j] < best[next]) next = j;
    }
    edges.push_back({from[next], next, best[next]});
    in_tree[next] = true;
    current = next;
  }
  std::stable_sort(edges.begin(), edges.end(), [](const Edge& x, const Edge& y) { return x.w < y.w; });
  std::vector<size_t> parent(2 * n - 1);
  std::iota(parent.begin(), parent.end(), size_t{0});
  auto find = [&](size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::vector<Merge> merges;
  for (const Edge& e : edges) {
    const size_t a = find(e.a), b = find(e.b);
    const size_t sa = a < n ? 1 : merges[a - n].size, sb = b < n ? 1 : merges[b - n].size;
    const size_t node = n + merges.size();
    merges.push_back({a, b, e.w, sa + sb});
    parent[a] = parent[b] = node;
  }
  return merges;
}

// The hierarchy condensed with min_cluster_size, top down: a split into two
// parts of at least min_cluster_size makes two new clusters; a smaller part's
// points fall out of the cluster (which continues as the larger part); two
// smaller parts end it.
std::vector<Condensed> Condense(const std::vector<Merge>& merges, size_t n, size_t min_cluster_size,
                                size_t& clusters_end) {
  const size_t root = 2 * n - 2;
  auto size_of = [&](size_t node) { return node < n ? size_t{1} : merges[node - n].size; };
  auto subtree = [&](size_t top) {
    std::vector<size_t> q{top};
    for (size_t t = 0; t < q.size(); ++t) {
      if (q[t] >= n) q.push_back(merges[q[t] - n].left), q.push_back(merges[q[t] - n].right);
    }
    return q;
  };
  std::vector<size_t> relabel(2 * n - 1, 0);
  std::vector<bool> ignore(2 * n - 1, false);
  std::vector<Condensed> out;
  relabel[root] = n;
  size_t next_label = n + 1;
  for (size_t node : subtree(root)) {
    if (ignore[node] || node < n) continue;
    const Merge& m = merges[node - n];
    const double lambda = m.distance > 0 ? 1.0 / m.distance : std::numeric_limits<double>::max();
    const size_t lc = size_of(m.left), rc = size_of(m.right);
    auto fall_out = [&](size_t part) {
      for (size_t sub : subtree(part)) {
        if (sub < n) out.push_back({relabel[node], sub, lambda, 1});
        ignore[sub] = true;
      }
    };
    if (lc >= min_cluster_size && rc >= min_cluster_size) {
      relabel[m.left] = next_label++;
      out.push_back({relabel[node], relabel[m.left], lambda, lc});
      relabel[m.right] = next_label++;
      out.push_back({relabel[node], relabel[m.right], lambda, rc});
    } else if (lc < min_cluster_size && rc < min_cluster_size) {
      fall_out(m.left);
      fall_out(m.right);
    } else if (lc < min_cluster_size) {
      relabel[m.right] = relabel[node];
      fall_out(m.left);
    } else {
      relabel[m.left] = relabel[node];
      fall_out(m.right);
    }
  }
  clusters_end = next_label;
  return out;
}

}  // namespace

std::vector<int32_t> Hdbscan(std::span<const double> distances, size_t n, const HdbscanParams& params) {
  std::vector<int32_t> labels(n, -1);
  if (n < 2) return labels;
  const size_t min_samples = std::clamp<size_t>(params.min_samples, 1, n);
  const size_t min_cluster_size = std::clamp<size_t>(params.min_cluster_size, 2, n);
  const std::vector<Merge> merges = SingleLinkage(distances, n, CoreDistances(distances, n, min_samples));
  size_t end = 0;
  const std::vector<Condensed> tree = Condense(merges, n, min_cluster_size, end);
  const size_t root = n;

  // Stability of a cluster: the sum over its points of (lambda at which the
  // point left it - lambda at which it was born), by the condensed edges.
  std::vector<double> birth(end, 0.0), stability(end, 0.0);
  std::vector<size_t> up(end, root);  // condensed parent of every point and cluster
  for (const Condensed& c : tree) {
    if (c.child >= n) birth[c.child] = c.lambda;
    up[c.child] = c.parent;
  }
  for (const Condensed& c : tree) stability[c.parent] += (c.lambda - birth[c.parent]) * static_cast<double>(c.size);

  // Excess of mass: from the leaves up, a cluster is kept when it is at
  // least as stable as its child clusters together, which are then dropped.
  std::vector<bool> selected(end, false);
  const size_t first = params.allow_single_cluster ? root : root + 1;
  for (size_t c = first; c < end; ++c) selected[c] = true;
  for (size_t c = end; c-- > first;) {
    double children = 0;
    bool has_children = false;
    for (const Condensed& e : tree) {
      if (e.parent == c && e.child >= n) children += stability[e.child], has_children = true;
    }
    if (has_children && children > stability[c]) {
      selected[c] = false;
      stability[c] = children;
    } else {
      for (size_t d = c + 1; d < end; ++d) {  // descendants have larger ids than their ancestors
        size_t a = up[d];
        while (a != c && a != root) a = up[a];
        if (a == c) selected[d] = false;
      }
    }
  }

  // A point belongs to its nearest selected ancestor. When the root is the
  // one selected cluster, only the points that stayed in it to its end (the
  // largest lambda at which anything left it) do, as in the reference
  // implementation; the others are noise.
  std::vector<int32_t> label_of(end, -1);
  int32_t next = 0;
  for (size_t c = root; c < end; ++c) {
    if (selected[c]) label_of[c] = next++;
  }
  double root_end = 0;
  std::vector<double> left_at(n, 0.0);
  for (const Condensed& c : tree) {
    if (c.parent == root) root_end = std::max(root_end, c.lambda);
    if (c.child < n) left_at[c.child] = c.lambda;
  }
  for (size_t p = 0; p < n; ++p) {
    size_t a = up[p];
    while (!selected[a] && a != root) a = up[a];
    if (!selected[a]) continue;
    if (a == root && left_at[p] < root_end) continue;
    labels[p] = label_of[a];
  }
  return labels;
}

}  // namespace frugal

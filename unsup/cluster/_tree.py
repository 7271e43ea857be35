"""Cluster trees in scipy's linkage format: cuts, leaf weights, layout, top-down trees.

Design constraints
------------------
- One representation for both directions: a linkage matrix ``Z`` of shape
  ``(n - 1, 4)`` (children, height, count), scipy's format, so that
  ``scipy.cluster.hierarchy`` accepts every tree built here.
- Nothing recurses: trees of single linkage (or the chains of a divisive tree)
  are as deep as they have leaves, so every walk is vectorised pointer jumping
  (``O(n log depth)``) or an explicit stack, never Python recursion (scipy's
  ``dendrogram`` recurses and fails past about 10,000 levels, scipy issue 7271).
- Cutting follows scikit-learn's rule: ``k`` clusters are what remains after
  undoing the last ``k - 1`` merges, so a cut has exactly ``k`` clusters even
  when the heights are not monotone (centroid, median).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_n_clusters",
    "cluster_roots",
    "cut_tree_labels",
    "dendrogram_layout",
    "fitted_color_threshold",
    "leaf_depths",
    "linkage_of",
    "linkage_from_splits",
    "n_clusters_for_threshold",
]


def _parents(children, n, n_merges):
    """Parent of every node (``-1`` for none) using only the first ``n_merges`` merges."""
    parent = np.full(2 * n - 1, -1, dtype=np.intp)
    nodes = n + np.arange(n_merges, dtype=np.intp)
    parent[children[:n_merges, 0]] = nodes
    parent[children[:n_merges, 1]] = nodes
    return parent


def _jump(parent):
    """Root of every node and its depth below the root, by pointer jumping."""
    has = parent >= 0
    anc = np.where(has, parent, np.arange(len(parent)))
    depth = has.astype(np.int64)
    while True:
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            return anc, depth
        depth = depth + depth[anc]
        anc = nxt


def cluster_roots(children, n, n_clusters):
    """Node id of the cluster of each leaf when the tree is cut into ``n_clusters``.

    Parameters
    ----------
    children : ndarray of shape (n - 1, 2)
        Merged nodes, in merge order (leaves ``< n``, node ``n + i`` formed at step ``i``).
    n : int
        Number of leaves.
    n_clusters : int
        Clusters wanted, ``1 <= n_clusters <= n``.

    Returns
    -------
    roots : ndarray of shape (n,)
        For each leaf, the id of the node heading its cluster.
    depth : ndarray of shape (n,)
        Number of merges between each leaf and the head of its cluster.
    """
    parent = _parents(children, n, n - n_clusters)
    anc, depth = _jump(parent)
    return anc[:n], depth[:n]


def _number_by_first_appearance(roots):
    """Labels ``0..k-1`` numbering clusters in the order their first member appears."""
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


def cut_tree_labels(children, n, n_clusters):
    """Flat labels of the ``n`` leaves after undoing the last ``n_clusters - 1`` merges.

    Clusters are numbered in the order of their first member, so label 0 is
    the cluster of sample 0. Prior validation is assumed.

    Returns
    -------
    labels : ndarray of shape (n,), dtype intp
    """
    roots, _ = cluster_roots(children, n, n_clusters)
    return _number_by_first_appearance(roots)


def leaf_depths(children, n, n_clusters):
    """Depth of each leaf below the head of its cluster (for WPGMA/WPGMC weights)."""
    return cluster_roots(children, n, n_clusters)[1]


def n_clusters_for_threshold(distances, threshold):
    """Clusters left when every merge at height ``>= threshold`` is undone (scikit-learn's rule)."""
    return int(np.count_nonzero(np.asarray(distances) >= threshold)) + 1


def check_n_clusters(n_clusters, n_leaves):
    """scikit-learn's message for a cut with more clusters than leaves."""
    if n_clusters > n_leaves:
        raise ValueError(
            f"Cannot extract more clusters than samples: {n_clusters} clusters were "
            f"given for a tree with {n_leaves} leaves."
        )


# ---------------------------------------------------------------- top-down trees
def linkage_from_splits(n, leaf_members, splits, heights):
    """A linkage matrix for a top-down tree, valid and monotone for scipy.

    Parameters
    ----------
    n : int
        Number of samples.
    leaf_members : list of ndarray
        ``leaf_members[v]`` holds the sample indices of tree node ``v`` if it
        was never split (a final cluster), ``None`` for split nodes. Node 0 is
        the root.
    splits : list of (parent, left, right)
        The splits in the order they were made (node ids into ``leaf_members``).
    heights : sequence of float
        Height of each split (non-negative, never below the heights of the
        splits under it).

    Returns
    -------
    Z : ndarray of shape (n - 1, 4)
        First the members of each final cluster of two or more samples joined
        at height 0 (balanced pairs, so the depth stays logarithmic: the tree
        below the final clusters was not computed), then the splits, the
        lowest first; among equal heights the later split comes first, so that
        undoing the last ``k - 1`` rows replays the first ``k - 1`` splits.
    node_ids : ndarray
        The linkage id of every tree node.
    """
    Z = np.empty((max(n - 1, 0), 4), dtype=np.float64)
    n_nodes = len(leaf_members)
    ids = np.full(n_nodes, -1, dtype=np.intp)
    counts = np.zeros(2 * n - 1, dtype=np.float64)
    counts[:n] = 1.0
    row = 0

    def merge(a, b, h):
        nonlocal row
        a, b = min(a, b), max(a, b)
        Z[row] = (a, b, h, counts[a] + counts[b])
        counts[n + row] = Z[row, 3]
        row += 1
        return n + row - 1

    for v, members in enumerate(leaf_members):
        if members is None:
            continue
        level = np.asarray(members, dtype=np.intp)
        while len(level) > 1:  # pair neighbours, level by level (vectorised)
            h = len(level) // 2
            a, b = level[0 : 2 * h : 2], level[1 : 2 * h : 2]
            rows = np.arange(row, row + h)
            Z[rows, 0], Z[rows, 1] = np.minimum(a, b), np.maximum(a, b)
            Z[rows, 2] = 0.0
            Z[rows, 3] = counts[a] + counts[b]
            counts[n + rows] = Z[rows, 3]
            level = np.concatenate([n + rows, level[2 * h :]])
            row += h
        ids[v] = level[0]
    order = sorted(range(len(splits)), key=lambda s: (heights[s], -s))
    for s in order:
        parent, left, right = splits[s]
        ids[parent] = merge(ids[left], ids[right], float(heights[s]))
    return Z, ids


# ---------------------------------------------------------------- layout
LINK_COLORS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")


def dendrogram_layout(
    Z,
    *,
    truncate_mode=None,
    p=30,
    color_threshold=None,
    labels=None,
    count_sort=False,
    distance_sort=False,
    show_leaf_counts=True,
    above_threshold_color="C0",
):
    """The coordinates of a dendrogram, as ``scipy.cluster.hierarchy.dendrogram(no_plot=True)``.

    The same output (``icoord``, ``dcoord``, ``ivl``, ``leaves``,
    ``color_list``, in the same order) computed with an explicit stack
    instead of recursion, so trees of any depth lay out. Prior validation of
    ``Z`` is assumed.

    Returns
    -------
    layout : dict
        ``icoord``, ``dcoord`` (lists of 4-lists: the U of each link),
        ``ivl`` (leaf labels, left to right), ``leaves`` (leaf node ids),
        ``color_list`` (colour of each link).
    """
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0] + 1
    heights = Z[:, 2]
    counts = Z[:, 3]
    child = Z[:, :2].astype(np.intp)
    p = int(p)
    if truncate_mode == "none":
        truncate_mode = None
    if truncate_mode == "lastp" and (p > n or p == 0):
        p = n
    if truncate_mode == "level" and p <= 0:
        p = np.inf
    if color_threshold is None or (isinstance(color_threshold, str) and color_threshold == "default"):
        color_threshold = float(heights.max()) * 0.7 if len(heights) else 0.0

    icoord, dcoord, ivl, leaves, colors = [], [], [], [], []
    current_color = 0
    below = False

    def leaf(i):
        leaves.append(int(i))
        if i < n:
            ivl.append(labels[int(i)] if labels is not None else str(int(i)))
        else:
            ivl.append(f"({int(counts[i - n])})" if show_leaf_counts else "")

    def is_leaf(i, level):
        if i < n:
            return True
        if truncate_mode == "lastp":
            return 2 * n - p > i
        if truncate_mode == "level":
            return i > n and level > p
        return False

    def order(i):
        aa, ab = child[i - n]
        na, da = (counts[aa - n], heights[aa - n]) if aa >= n else (1, 0.0)
        nb, db = (counts[ab - n], heights[ab - n]) if ab >= n else (1, 0.0)
        if count_sort in ("ascending", True):
            return (ab, aa) if na > nb else (aa, ab)
        if count_sort == "descending":
            return (aa, ab) if na > nb else (ab, aa)
        if distance_sort in ("ascending", True):
            return (ab, aa) if da > db else (aa, ab)
        if distance_sort == "descending":
            return (aa, ab) if da > db else (ab, aa)
        return aa, ab

    # A frame is [node, level, iv, stage, left result, right node, colour];
    # results are (centre, width, height).
    stack = [[2 * n - 2, 0, 0.0, 0, None, None, None]]
    result = None
    while stack:
        frame = stack[-1]
        i, level, iv, stage = frame[0], frame[1], frame[2], frame[3]
        if stage == 0:
            if is_leaf(i, level):
                leaf(i)
                result = (iv + 5.0, 10.0, 0.0)
                stack.pop()
                continue
            ua, ub = order(i)
            frame[5] = ub
            frame[3] = 1
            stack.append([ua, level + 1, iv, 0, None, None, None])
            continue
        if stage == 1:
            frame[4] = result
            h = heights[i - n]
            if h >= color_threshold or color_threshold <= 0:
                c = above_threshold_color
                if below:
                    current_color = (current_color + 1) % len(LINK_COLORS)
                below = False
            else:
                below = True
                c = LINK_COLORS[current_color]
            frame[6] = c
            frame[3] = 2
            stack.append([frame[5], level + 1, iv + result[1], 0, None, None, None])
            continue
        # stage 2: both children done
        (uiva, uwa, uah), (uivb, uwb, ubh) = frame[4], result
        h = heights[i - n]
        icoord.append([uiva, uiva, uivb, uivb])
        dcoord.append([uah, h, h, ubh])
        colors.append(frame[6])
        result = ((uiva + uivb) / 2.0, uwa + uwb, h)
        stack.pop()
    return {"icoord": icoord, "dcoord": dcoord, "ivl": ivl, "leaves": leaves, "color_list": colors}


# ---------------------------------------------------------------- inputs of plots
def linkage_of(obj):
    """The linkage matrix of a fitted tree estimator, or of a linkage matrix itself.

    Accepts an array in scipy's format, an estimator with ``linkage_matrix_``
    (unsup's), or one with ``children_`` and ``distances_`` (scikit-learn's
    ``AgglomerativeClustering`` fitted with ``compute_distances=True``).

    Returns
    -------
    Z : ndarray of shape (n - 1, 4)
        Validated by ``scipy.cluster.hierarchy.is_valid_linkage``.
    n_clusters : int or None
        Clusters of the estimator's fitted cut (None for a bare matrix).
    """
    from scipy.cluster.hierarchy import is_valid_linkage

    n_clusters = None
    if hasattr(obj, "labels_") and (hasattr(obj, "linkage_matrix_") or hasattr(obj, "children_")):
        n_clusters = int(len(np.unique(obj.labels_)))
    if hasattr(obj, "linkage_matrix_"):
        Z = np.asarray(obj.linkage_matrix_, dtype=np.float64)
    elif hasattr(obj, "children_"):
        if getattr(obj, "distances_", None) is None:
            raise ValueError(
                f"{type(obj).__name__} has no merge heights (distances_): fit scikit-learn's "
                "AgglomerativeClustering with compute_distances=True."
            )
        children = np.asarray(obj.children_, dtype=np.intp)
        n = len(children) + 1
        counts = np.ones(2 * n - 1)
        for i, (a, b) in enumerate(children):
            counts[n + i] = counts[a] + counts[b]
        Z = np.column_stack([children, np.asarray(obj.distances_, dtype=np.float64), counts[n:]])
    elif hasattr(obj, "get_params") or hasattr(obj, "fit"):
        raise ValueError(
            f"{type(obj).__name__} is not a fitted tree estimator: expected linkage_matrix_ "
            "or children_ and distances_ (is it fitted?)."
        )
    else:
        Z = np.asarray(obj, dtype=np.float64)
    is_valid_linkage(Z, throw=True, name="Z")
    return Z, n_clusters


def fitted_color_threshold(Z, n_clusters):
    """A colour threshold that colours the ``n_clusters`` clusters of the cut below it."""
    n = Z.shape[0] + 1
    if n_clusters is None or n_clusters < 2:
        return np.inf
    return float(Z[n - n_clusters, 2])

"""Optional matplotlib helpers for the estimators of ``unsup``.

matplotlib is an optional dependency (the ``plot`` extra): it is imported
only when a plotting function is called, and its absence gives a clear
``ImportError`` saying how to install it. Every function draws on the
``ax`` it is given (or a new one) and returns that ``ax``, as scikit-learn's
``Display`` objects do, so plots compose into a user's own figures.
"""

from __future__ import annotations


def _pyplot():
    """Import ``matplotlib.pyplot`` lazily, with a clear message when it is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "unsup.plotting needs matplotlib: pip install matplotlib (or pip install 'unsup[plot]')"
        ) from exc
    return plt


def _axes(ax):
    """``ax`` itself, or the axes of a new figure when ``ax`` is None."""
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _codes_2d(Z, method, random_state):
    """2-d coordinates for codes ``Z``: themselves when 2-d, else t-SNE or PCA of them."""
    import numpy as np

    if not (isinstance(method, str) and method in ("tsne", "pca")):
        raise ValueError(f"method must be 'tsne' or 'pca'; got {method!r}.")
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise ValueError(f"plot_latent needs a 2-d array of codes with at least one row; got shape {Z.shape}.")
    if Z.shape[1] == 1:
        return np.column_stack([Z[:, 0], np.zeros(len(Z))]), ("code 0", "")
    if Z.shape[1] == 2:
        return Z, ("code 0", "code 1")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(Z), ("PC 1 of the codes", "PC 2 of the codes")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(1.0, (len(Z) - 1) / 3.0))
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state).fit_transform(Z)
        return emb, ("t-SNE 1", "t-SNE 2")


def plot_latent(X, y=None, *, estimator=None, method="tsne", random_state=None, ax=None, colorbar=True, **scatter_kwargs):
    """Scatter the latent codes of an encoder, coloured by label.

    Codes of width 2 are drawn as they are (width 1 along a line); wider
    codes are first mapped to the plane with t-SNE (``method="tsne"``,
    neighbourhoods kept, as in the course) or PCA (``method="pca"``, linear
    and fast).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples, n_codes)
        The data, encoded with ``estimator.transform`` when ``estimator`` is
        given; else the codes themselves.
    y : array-like of shape (n_samples,), default=None
        Labels (or any values) that colour the points.
    estimator : fitted transformer, default=None
        E.g. a fitted :class:`~unsup.neural.Autoencoder`.
    method : {"tsne", "pca"}, default="tsne"
        How codes wider than 2 are mapped to the plane:
        ``sklearn.manifold.TSNE`` (perplexity ``min(30, (n - 1) / 3)``,
        PCA initialisation; seconds for a few thousand points) or
        ``sklearn.decomposition.PCA``. Checked whatever the width.
    random_state : int, RandomState instance or None, default=None
        Seeds t-SNE.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes when None.
    colorbar : bool, default=True
        Add a colour bar (or a legend for up to 10 distinct integer labels)
        when ``y`` is given.
    **scatter_kwargs
        Passed to ``ax.scatter`` (e.g. ``s``, ``cmap``, ``alpha``).

    Returns
    -------
    ax : matplotlib Axes
        With one ``PathCollection`` whose offsets are the plotted 2-d points.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from unsup.plotting import plot_latent
    >>> Z = np.random.default_rng(0).normal(size=(30, 2))
    >>> ax = plot_latent(Z, y=np.arange(30) % 3)
    >>> ax.collections[0].get_offsets().shape
    (30, 2)
    """
    import numpy as np

    codes = estimator.transform(X) if estimator is not None else X
    points, (xlabel, ylabel) = _codes_2d(np.asarray(codes), method, random_state)
    if y is not None and len(y) != len(points):
        raise ValueError(f"y has {len(y)} entries for {len(points)} points.")
    ax = _axes(ax)
    kwargs = {"s": 8, **scatter_kwargs}
    if y is None:
        ax.scatter(points[:, 0], points[:, 1], **kwargs)
    else:
        y = np.asarray(y)
        discrete = y.dtype.kind in "iub" and len(np.unique(y)) <= 10
        if discrete:
            kwargs.setdefault("cmap", "tab10")
            kwargs.setdefault("vmin", -0.5)
            kwargs.setdefault("vmax", 9.5)
        sc = ax.scatter(points[:, 0], points[:, 1], c=y, **kwargs)
        if colorbar:
            if discrete:
                handles, labels = sc.legend_elements()
                ax.legend(handles, labels, title="label", loc="best", fontsize="small")
            else:
                ax.figure.colorbar(sc, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_scores(X, y=None, *, estimator=None, threshold=None, bins=50, ax=None, **hist_kwargs):
    """Histogram of anomaly scores, with the decision threshold.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples,)
        The data, scored with ``estimator.score_samples`` when ``estimator``
        is given; else the scores themselves (higher = more normal, as
        scikit-learn's ``score_samples``).
    y : array-like of shape (n_samples,), default=None
        Known labels, to draw inliers and outliers as two histograms: 1 or
        True for an outlier (scikit-learn's -1 also counts as an outlier when
        ``y`` holds -1 and +1).
    estimator : fitted outlier detector, default=None
        E.g. a fitted :class:`~unsup.neural.Autoencoder`; its ``offset_`` is
        the default threshold.
    threshold : float, default=None
        Where to draw the threshold line (``estimator.offset_`` when None and
        an estimator is given; no line otherwise).
    bins : int or sequence, default=50
        Passed to ``ax.hist`` (the same bin edges for both histograms).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes when None.
    **hist_kwargs
        Passed to ``ax.hist``.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from unsup.plotting import plot_scores
    >>> scores = -np.abs(np.random.default_rng(0).normal(size=200))
    >>> ax = plot_scores(scores, threshold=-2.0)
    >>> float(ax.lines[0].get_xdata()[0])
    -2.0
    """
    import numpy as np

    if estimator is not None:
        scores = np.asarray(estimator.score_samples(X), dtype=float)
        if threshold is None:
            threshold = getattr(estimator, "offset_", None)
    else:
        scores = np.asarray(X, dtype=float)
        if scores.ndim != 1:
            raise ValueError(f"Without an estimator, X must be a 1-d array of scores; got shape {scores.shape}.")
    ax = _axes(ax)
    edges = np.histogram_bin_edges(scores, bins=bins)
    kwargs = {"alpha": 0.6, **hist_kwargs}
    if y is None:
        ax.hist(scores, bins=edges, **kwargs)
    else:
        y = np.asarray(y)
        if len(y) != len(scores):
            raise ValueError(f"y has {len(y)} entries for {len(scores)} scores.")
        outlier = (y == -1) if set(np.unique(y).tolist()) <= {-1, 1} else y.astype(bool)
        ax.hist(scores[~outlier], bins=edges, label=f"inliers ({int((~outlier).sum())})", **kwargs)
        ax.hist(scores[outlier], bins=edges, label=f"outliers ({int(outlier.sum())})", **kwargs)
    if threshold is not None:
        flagged = int(np.sum(scores < threshold))
        ax.axvline(float(threshold), color="k", linestyle="--", label=f"threshold ({flagged} below)")
    ax.set_xlabel("score_samples (higher is more normal)")
    ax.set_ylabel("count")
    if y is not None or threshold is not None:
        ax.legend(loc="best", fontsize="small")
    return ax


def plot_dendrogram(
    estimator_or_linkage,
    *,
    truncate_mode="auto",
    p=30,
    color_threshold=None,
    orientation="top",
    labels=None,
    count_sort=False,
    distance_sort=False,
    show_leaf_counts=True,
    max_leaf_labels=100,
    leaf_rotation=None,
    leaf_font_size=None,
    above_threshold_color="C0",
    show_cut=True,
    ax=None,
    **line_kwargs,
):
    """Draw the dendrogram of a hierarchical clustering, of any depth.

    The layout is scipy's (``scipy.cluster.hierarchy.dendrogram``: the same
    leaf order, link coordinates and colours) computed without recursion, so
    a single-linkage chain of 20,000 samples draws where scipy's recursion
    fails (scipy issue 7271). Links are drawn as one ``LineCollection`` per
    colour, so large trees draw quickly.

    Parameters
    ----------
    estimator_or_linkage : estimator or ndarray of shape (n_samples - 1, 4)
        A fitted :class:`~unsup.cluster.AgglomerativeClustering` or
        :class:`~unsup.cluster.DivisiveClustering` (or anything with
        ``linkage_matrix_``, or scikit-learn's ``AgglomerativeClustering``
        fitted with ``compute_distances=True``), or a linkage matrix in
        scipy's format.
    truncate_mode : {"auto", "lastp", "level"} or None, default="auto"
        ``"lastp"``: only the last ``p`` merged clusters are leaves (labelled
        with their sizes); ``"level"``: at most ``p`` levels below the root;
        None: the whole tree. ``"auto"``: ``"lastp"`` when the tree has more
        than ``p`` leaves, else the whole tree.
    p : int, default=30
        The truncation parameter.
    color_threshold : float, default=None
        Links below it are coloured by cluster. None: for an estimator, the
        height that separates its fitted clusters (each gets a colour); for
        a matrix, scipy's default ``0.7 * max height``. A cluster that is a
        single leaf of a truncated tree has no link below the cut, so no
        colour of its own.
    orientation : {"top", "bottom", "left", "right"}, default="top"
        Where the root is.
    labels : sequence of str, default=None
        Names of the samples (leaf labels); their indices otherwise.
    count_sort, distance_sort : bool or {"ascending", "descending"}, default=False
        Order of the two children of each link, as in scipy.
    show_leaf_counts : bool, default=True
        Label truncated leaves with their number of samples.
    max_leaf_labels : int, default=100
        Leaf labels are drawn only up to this many leaves.
    leaf_rotation, leaf_font_size : float, default=None
        Rotation and size of the leaf labels.
    above_threshold_color : str, default="C0"
        Colour of the links above ``color_threshold``.
    show_cut : bool, default=True
        Draw the cut as a dashed black line labelled with its number of
        clusters: for an estimator, halfway between the height of the last
        merge its clusters keep and the first one they cut; for a given
        ``color_threshold``, at it. No line for a bare matrix without
        ``color_threshold``.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes when None.
    **line_kwargs
        Passed to the ``LineCollection`` (e.g. ``linewidths``).

    Returns
    -------
    ax : matplotlib Axes
        Truncated leaves are labelled ``(n)``, the number of samples under
        them, and the leaf axis says so.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from unsup.cluster import AgglomerativeClustering
    >>> from unsup.plotting import plot_dendrogram
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> ax = plot_dendrogram(AgglomerativeClustering(n_clusters=3).fit(X), p=10)
    >>> len(ax.get_xticklabels())
    10
    >>> ax.lines[0].get_label()  # the cut
    'cut: 3 clusters'
    """
    import numpy as np
    from matplotlib.collections import LineCollection

    from unsup.cluster._tree import dendrogram_layout, fitted_color_threshold, linkage_of

    if orientation not in ("top", "bottom", "left", "right"):
        raise ValueError(f"orientation must be 'top', 'bottom', 'left' or 'right'; got {orientation!r}.")
    if truncate_mode not in ("auto", "lastp", "level", None):
        raise ValueError(f"truncate_mode must be 'auto', 'lastp', 'level' or None; got {truncate_mode!r}.")
    Z, n_clusters = linkage_of(estimator_or_linkage)
    n = Z.shape[0] + 1
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for a tree of {n} samples.")
    if truncate_mode == "auto":
        truncate_mode = "lastp" if n > p else None
    cut = _cut_height(Z, color_threshold, n_clusters) if show_cut else None
    if color_threshold is None and n_clusters is not None:
        color_threshold = fitted_color_threshold(Z, n_clusters)
    layout = dendrogram_layout(
        Z,
        truncate_mode=truncate_mode,
        p=p,
        color_threshold=color_threshold,
        labels=labels,
        count_sort=count_sort,
        distance_sort=distance_sort,
        show_leaf_counts=show_leaf_counts,
        above_threshold_color=above_threshold_color,
    )
    ax = _axes(ax)
    vertical = orientation in ("top", "bottom")
    by_colour: dict = {}
    for xs, ys, colour in zip(layout["icoord"], layout["dcoord"], layout["color_list"]):
        points = list(zip(xs, ys)) if vertical else list(zip(ys, xs))
        by_colour.setdefault(colour, []).append(points)
    for colour, segments in by_colour.items():
        ax.add_collection(LineCollection(segments, colors=colour, **line_kwargs))
    n_leaves = len(layout["ivl"])
    top = float(Z[:, 2].max()) if len(Z) else 0.0
    top = top * 1.05 if top > 0 else 1.0
    span, height = (0.0, 10.0 * n_leaves), (0.0, top)
    ticks = 5.0 + 10.0 * np.arange(n_leaves)
    show = n_leaves <= max_leaf_labels
    if vertical:
        ax.set_xlim(*span)
        ax.set_ylim(*(height if orientation == "top" else height[::-1]))
        ax.set_xticks(ticks if show else [])
        if show:
            ax.set_xticklabels(layout["ivl"], rotation=leaf_rotation, fontsize=leaf_font_size)
        ax.set_ylabel("height")
    else:
        ax.set_ylim(*span)
        ax.set_xlim(*(height if orientation == "right" else height[::-1]))
        ax.set_yticks(ticks if show else [])
        if show:
            ax.set_yticklabels(layout["ivl"], rotation=leaf_rotation, fontsize=leaf_font_size)
        ax.set_xlabel("height")
    counts = [label.startswith("(") for label in layout["ivl"]] if show and show_leaf_counts else []
    if any(counts):
        what = "(n): a branch of n samples drawn as one leaf"
        (ax.set_xlabel if vertical else ax.set_ylabel)(what + ("" if all(counts) else "; a number alone: a sample"))
    if cut is not None:
        height, k = cut
        draw = ax.axhline if vertical else ax.axvline
        draw(height, color="k", linestyle="--", linewidth=1, label=f"cut: {k} cluster{'' if k == 1 else 's'}")
        ax.legend(loc="upper right", fontsize="small")
    return ax


__all__: list[str] = ["plot_dendrogram", "plot_images", "plot_interpolation", "plot_latent", "plot_scores"]


def _cut_height(Z, color_threshold, n_clusters):
    """(height, clusters) of the line that shows the cut, or None.

    A given ``color_threshold`` is the cut (the merges strictly below it are
    made, as for the colours); an estimator's ``n_clusters`` cut lies halfway
    between its last merge kept and its first merge cut.
    """
    import numpy as np

    heights = Z[:, 2]
    n = len(heights) + 1
    if color_threshold is not None:
        return float(color_threshold), int(n - np.sum(heights < color_threshold))
    if n_clusters is None or not 2 <= n_clusters <= n - 1:
        return None
    kept = float(heights[n - n_clusters - 1]) if n - n_clusters - 1 >= 0 else 0.0
    return (kept + float(heights[n - n_clusters])) / 2.0, int(n_clusters)


def _montage(images, image_shape, n_cols, pad):
    """Rows of flattened images (C order) tiled into one (rows, cols[, 3]) array, ``nan`` between tiles."""
    import numpy as np

    images = np.asarray(images, dtype=float)
    if images.ndim == 1:
        images = images[None, :]
    if images.ndim != 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a 2-d array of flattened images with at least one row; got shape {images.shape}.")
    shape = tuple(int(s) for s in image_shape) if image_shape is not None else None
    if shape is not None and len(shape) == 2:
        shape = (1, *shape)
    if shape is None or len(shape) != 3 or shape[0] not in (1, 3) or np.prod(shape) != images.shape[1]:
        raise ValueError(
            f"image_shape must be (H, W), (1, H, W) or (3, H, W) with H * W * C = n_features = {images.shape[1]}; "
            f"got {image_shape!r}."
        )
    c, h, w = shape
    n = len(images)
    n_cols = min(n, 8) if n_cols is None else int(n_cols)
    if n_cols < 1:
        raise ValueError(f"n_cols must be a positive int; got {n_cols!r}.")
    n_rows = -(-n // n_cols)
    tiles = images.reshape(n, c, h, w).transpose(0, 2, 3, 1)  # (n, H, W, C)
    out = np.full((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad, c), np.nan)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, n_cols)
        out[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = tile
    return out[..., 0] if c == 1 else out


def plot_images(images, image_shape, *, n_cols=None, pad=1, ax=None, cmap="gray_r", **imshow_kwargs):
    """Draw flattened images (rows of ``X``, C order) as one grid, on one axes.

    The images are tiled row by row, ``n_cols`` a row, ``pad`` pixels of
    background between them, and drawn with a single ``imshow``: grey images
    with ``cmap`` and a shared colour scale, colour images (``C = 3``) as RGB,
    clipped to [0, 1] (divide 8-bit pixels by 255 first).

    Parameters
    ----------
    images : array-like of shape (n_images, n_features)
        Flattened images, e.g. rows of ``X``, ``reconstruct(X)`` or ``sample(16)``.
    image_shape : tuple of int
        ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)``, as ``image_shape`` of the
        convolutional estimators.
    n_cols : int, default=None
        Images per row (default: up to 8).
    pad : int, default=1
        Pixels between images.
    ax : matplotlib Axes, default=None
        Where to draw (default: a new figure).
    cmap : str, default="gray_r"
        Of grey images (dark strokes on white, as the digits).
    **imshow_kwargs
        Passed to ``ax.imshow``.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from unsup.plotting import plot_images
    >>> ax = plot_images(np.arange(8 * 64).reshape(8, 64), (8, 8), n_cols=4)
    >>> ax.images[0].get_array().shape   # 2 rows of 4 digits, 1 pixel apart
    (17, 35)
    """
    import numpy as np

    grid = _montage(images, image_shape, n_cols, int(pad))
    ax = _axes(ax)
    if grid.ndim == 3:
        rgb = np.clip(np.nan_to_num(grid, nan=1.0), 0.0, 1.0)
        ax.imshow(rgb, **imshow_kwargs)
    else:
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, **imshow_kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_interpolation(estimator, x_a, x_b, n_steps=8, image_shape=None, *, ax=None, **kwargs):
    """Decode the straight line between the codes of two images: the "smooth transition" figure.

    The codes ``z_a = transform(x_a)`` and ``z_b = transform(x_b)`` (a VAE's
    posterior means) are mixed, ``z_t = (1 - t) z_a + t z_b`` for ``n_steps``
    values of ``t`` from 0 to 1, decoded with ``inverse_transform`` and drawn
    in one row by :func:`plot_images`. Works for any fitted estimator with
    ``transform`` and ``inverse_transform`` (an :class:`~unsup.neural.Autoencoder`
    too; a VAE's latent space is the one trained to be smooth).

    Parameters
    ----------
    estimator : fitted estimator
    x_a, x_b : array-like of shape (n_features,)
        The two images, flattened as the rows of ``X``.
    n_steps : int, default=8
        Images drawn, ends included (at least 2).
    image_shape : tuple of int, default=None
        As :func:`plot_images`; default: the estimator's ``image_shape``.
    ax : matplotlib Axes, default=None
    **kwargs
        Passed to :func:`plot_images`.

    Returns
    -------
    ax : matplotlib Axes
    """
    import numpy as np

    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise ValueError(f"n_steps must be an int of at least 2; got {n_steps!r}.")
    if not hasattr(estimator, "inverse_transform"):
        raise ValueError(
            f"plot_interpolation needs an estimator with inverse_transform; {type(estimator).__name__} has none "
            "(an autoencoder with skip_connections=True cannot decode a code alone)."
        )
    if image_shape is None:
        image_shape = getattr(estimator, "image_shape", None)
        if image_shape is None:
            raise ValueError("image_shape is needed: the estimator has no image_shape of its own.")
    ends = np.vstack([np.ravel(np.asarray(x_a, dtype=float)), np.ravel(np.asarray(x_b, dtype=float))])
    z_a, z_b = estimator.transform(ends)
    t = np.linspace(0.0, 1.0, int(n_steps))[:, None]
    images = estimator.inverse_transform((1.0 - t) * z_a + t * z_b)
    return plot_images(images, image_shape, n_cols=int(n_steps), ax=ax, **kwargs)

"""Figures: an estimator's loss curve, optimizer trajectories over a contour, and the figures of Zhang et al., *Dive
into Deep Learning*, sec. 12.1.

matplotlib is an optional extra (``pip install "fastopt[plot]"``) and is imported only when a function here is
called. Every function draws into ``ax`` when given one (so it composes with ``pyplot`` and subplots), else into
a new standalone :class:`matplotlib.figure.Figure` (no global pyplot state, nothing left open); it returns the
Figure and, with ``path``, also saves it, in the format the path's suffix names (``.png``, ``.pdf``, ``.svg``, ...;
an unknown suffix is a ``ValueError``).

Examples
--------
>>> from fastopt import functions, minimize, plotting
>>> rb = functions.get("rosenbrock")
>>> runs = {m: minimize(rb.fun, rb.x0, jac=rb.grad, method=m, options={"lr": 1e-3, "return_path": True})
...         for m in ("sgd", "momentum")}
>>> fig = plotting.plot_trajectories(rb, runs)
"""
from __future__ import annotations

import numbers
import os
import pathlib
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt.functions import CUBIC, EMPIRICAL_RISK, RISK, SADDLE, TANH, Objective

if TYPE_CHECKING:  # (type hints only: matplotlib is an optional extra, imported when a function here is called)
    from typing import IO, TypeAlias

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from fastopt.linear_model import LinearRegressor

    # Where a figure may be saved: a file name or path (its suffix names the format), or a binary file object.
    PathLike: TypeAlias = str | os.PathLike[str] | IO[bytes]

__all__ = [
    "plot_local_minima",
    "plot_loss_curve",
    "plot_risk",
    "plot_saddle_1d",
    "plot_saddle_2d",
    "plot_trajectories",
    "plot_vanishing_gradient",
]

# Marker of each kind of known critical point in trajectory plots.
_KIND_MARKERS = {"minimum": ("*", 14), "saddle": ("X", 10), "maximum": ("^", 10)}


def _figure_and_axes(ax, figsize: tuple[float, float], **subplot_kw):
    """``ax`` and its figure, or a new standalone Figure with one Axes."""
    if ax is not None:
        if not hasattr(ax, "figure") or not hasattr(ax, "plot"):  # (AttributeError: no 'figure')
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}.")
        if subplot_kw.get("projection") == "3d" and getattr(ax, "name", None) != "3d":  # (AttributeError)
            raise ValueError("ax must be a 3-D Axes: fig.add_subplot(projection='3d').")
        return ax.figure, ax
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError('fastopt.plotting needs matplotlib: pip install "fastopt[plot]"') from exc
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(**subplot_kw)


def save_format(path: PathLike) -> str:
    """The file format for ``path``: its suffix (``.pdf``, ``.svg``, ...), PNG without one (or for a file object).

    A suffix no matplotlib backend writes is a ``ValueError`` (PNG bytes went silently into ``x.pdf``).

    Parameters
    ----------
    path : str, path-like or binary file object
        Where the figure is to be saved.

    Returns
    -------
    str
        The format's name, the suffix lower-cased without its dot (``"pdf"``), or ``"png"``.

    Raises
    ------
    ValueError
        If the suffix names a format matplotlib cannot write.
    ImportError
        If matplotlib is not installed (and ``path`` has a suffix).
    """
    if not isinstance(path, (str, os.PathLike)):
        return "png"
    suffix = pathlib.Path(os.fspath(path)).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError('fastopt.plotting needs matplotlib: pip install "fastopt[plot]"') from exc
    supported = FigureCanvasBase.get_supported_filetypes()  # (the canvas a new Figure has, which savefig uses)
    if suffix not in supported:
        raise ValueError(f"cannot write a figure as {suffix!r} ({os.fspath(path)!r}); the suffix names the format: "
                         f"one of {', '.join(sorted(supported))}, or none for PNG.")
    return suffix


def _finish(fig, path) -> Any:
    if path is not None:
        fig.savefig(path, format=save_format(path), dpi=120)
    return fig


def _annotate(ax, text: str, xy: tuple[float, float], xytext: tuple[float, float]) -> None:
    """The figures' ``annotate`` (as in *Dive into Deep Learning*): a label with an arrow to ``xy``."""
    ax.annotate(text, xy=xy, xytext=xytext, arrowprops={"arrowstyle": "->"})


def _curve(ax, obj: Objective, lo: float, hi: float, **kw) -> np.ndarray:
    x = np.linspace(lo, hi, 400)
    ax.plot(x, obj.fun(x[None]), **kw)
    return x


def plot_loss_curve(estimator: LinearRegressor, *, ax: Axes | None = None,
                    path: PathLike | None = None) -> Figure | SubFigure:
    """Training loss per epoch of a fitted iterative ``LinearRegressor``, and its validation R^2 if recorded.

    The loss goes on a logarithmic axis (when positive), the validation score (``validation_scores_``, present
    with ``early_stopping=True``) on a second y-axis, with the best epoch marked.

    Parameters
    ----------
    estimator : LinearRegressor
        Fitted with an iterative solver (it has a non-empty ``loss_curve_``).
    ax : matplotlib Axes, optional
        Draw into it (and its figure); default a new standalone Figure with one Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    ValueError
        If ``estimator`` has no ``loss_curve_`` or an empty one (not fitted, or fitted by a solver recording none),
        or ``path``'s suffix names a format matplotlib cannot write.
    TypeError
        If ``ax`` is not a matplotlib Axes.
    ImportError
        If matplotlib is not installed.
    """
    loss = getattr(estimator, "loss_curve_", None)
    if loss is None or len(loss) == 0:
        raise ValueError("the estimator has no loss curve: fit it first, with an iterative solver (e.g. 'adam').")
    fig, ax = _figure_and_axes(ax, (6, 4))
    epochs = np.arange(1, len(loss) + 1)
    handles = ax.plot(epochs, loss, color="C0", label="training loss")
    if np.all(np.asarray(loss) > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="C0")
    scores = getattr(estimator, "validation_scores_", None)
    if scores is not None and len(scores):
        right = ax.twinx()
        handles += right.plot(epochs[: len(scores)], scores, color="C1", label="validation $R^2$")
        best = int(np.argmax(scores))
        handles += right.plot(epochs[best], scores[best], "o", color="C1", mfc="none", ms=9,
                              label=f"best validation (epoch {epochs[best]})")
        right.set_ylabel("validation $R^2$", color="C1")
    ax.legend(handles=handles, loc="center right")
    ax.set_title(f"{type(estimator).__name__}(solver={getattr(estimator, 'solver_', '?')!r})")
    return _finish(fig, path)


def _grid_values(fun: Callable, bounds, resolution: int):
    """Grid axes and values of ``fun`` over the 2-D box ``bounds``."""
    gx = np.linspace(*bounds[0], resolution)
    gy = np.linspace(*bounds[1], resolution)
    X, Y = np.meshgrid(gx, gy)
    if isinstance(fun, Objective):
        Z = fun.fun(np.stack([X, Y]))
    else:
        Z = np.array([float(fun(np.array(p))) for p in np.stack([X.ravel(), Y.ravel()], axis=1)]).reshape(X.shape)
    return X, Y, Z


def _finite_values(values, bounds) -> tuple[np.ma.MaskedArray, float, float]:
    """``values`` with their NaN and inf masked, and the smallest and largest finite one.

    Only finite values set the plot's range: one inf (a pole on the grid) made the range infinite and the log
    of every value inf, a blank plot; one NaN made the range NaN, which turned the log scale off silently.
    """
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"fun is not finite anywhere on the plotting grid over bounds {bounds!r}.")
    return np.ma.masked_array(values, mask=~finite), float(np.min(values[finite])), float(np.max(values[finite]))


# Finite values beyond this size are drawn divided by a power of ten (_unit): matplotlib's limits and levels over
# a range near float64's largest number overflowed ("Axis limits cannot be NaN or Inf").
HUGE_VALUES = 1e300


def _unit(fmin: float, fmax: float) -> tuple[float, str]:
    """The factor ``10^-k`` that brings finite values in ``[fmin, fmax]`` beyond :data:`HUGE_VALUES` to about 1
    (1 for others), and the label's suffix for it."""
    top = max(abs(fmin), abs(fmax))
    if top <= HUGE_VALUES:
        return 1.0, ""
    k = int(np.floor(np.log10(top)))
    return 10.0 ** -k, f" / 1e{k}"


def _contour(ax, X, Y, Z, levels: int, bounds) -> tuple[Any, str]:
    """Filled contours of ``Z``, or of ``log10 Z`` when ``Z >= 0`` spans more than three decades (Rosenbrock,
    Beale: linear levels would spend them all on the walls); cells where ``Z`` is NaN or inf are left blank
    and the levels span the finite values. Returns the contour set and its colorbar label."""
    Z, zmin, zmax = _finite_values(Z, bounds)
    label = "f(x, y)"
    if zmin >= 0 and zmax > 1e3 * max(zmin, 1e-12):
        Z = np.ma.log10(np.ma.maximum(Z, zmax * 1e-6))
        label = "log10 f(x, y)"
    else:
        factor, suffix = _unit(zmin, zmax)
        Z, label = Z * factor, label + suffix
    cs = ax.contourf(X, Y, Z, levels=levels, cmap="viridis", alpha=0.85)
    ax.contour(X, Y, Z, levels=cs.levels, colors="white", linewidths=0.3, alpha=0.6)
    return cs, label


def plot_trajectories(
    fun: Objective | Callable[[np.ndarray], float],
    results: Mapping[str, Any],
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
    ax: Axes | None = None,
    path: PathLike | None = None,
    levels: int = 30,
    resolution: int = 200,
    title: str | None = None,
) -> Figure | SubFigure:
    """Several optimizers' trajectories over one contour plot (or curve, for 1-D functions), with a legend.

    Parameters
    ----------
    fun : Objective or callable
        A :class:`fastopt.functions.Objective` (its domain and known critical points are drawn), or any
        ``fun(x) -> float`` of 1 or 2 variables together with ``bounds``.
    results : mapping of str to OptimizeResult
        Label -> result of :func:`fastopt.minimize` run with ``options={"return_path": True}``.
    bounds : sequence of (low, high), optional
        Plotting box, one finite pair with ``low < high`` per variable; default the Objective's domain (required
        for a plain callable).
    ax : matplotlib Axes, optional
        Draw into it (and its figure); default a new standalone Figure with one Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).
    levels, resolution : int, default 30 and 200
        Number of contour levels (at least 1) and grid points per axis (at least 2). Where ``fun`` is NaN or inf
        (outside its domain, at a pole) the contour (or curve) is left blank, and only its finite values set the
        levels (or y-range). Finite values beyond 1e300 in size are drawn divided by a power of ten, which the
        colorbar's (or y-axis') label states.
    title : str, optional
        Default: the Objective's formula (none for a plain callable).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    ValueError
        If ``bounds`` is missing for a plain callable, not one finite ``(low, high)`` pair with ``low < high`` per
        variable, for other than 1 or 2 variables, or for other than the Objective's number; if ``levels`` or
        ``resolution`` is not an integer of at least 1 or 2; if a result has no path (``xs`` of shape
        ``(points, n)``, at least one point), its points have another number of coordinates, or, in 1-D, its
        ``fs`` has not one value per point; if ``fun`` is not finite anywhere on the plotted grid (or curve); or if
        ``path``'s suffix names a format matplotlib cannot write.
    TypeError
        If ``results`` is not a mapping, one of its values is not a :func:`fastopt.minimize` result, or ``ax`` is
        not a matplotlib Axes.
    ImportError
        If matplotlib is not installed.
    """
    obj = fun if isinstance(fun, Objective) else None
    bounds = bounds if bounds is not None else (obj.bounds if obj is not None else None)
    if bounds is None:
        raise ValueError("bounds are required unless fun is a fastopt.functions.Objective.")
    # (1-D bounds of a 2-D objective ended in an IndexError, a resolution of 1 in matplotlib's TypeError)
    if np.ndim(bounds) != 2 or np.shape(bounds)[1] != 2 or not all(np.isfinite(b).all() and b[0] < b[1]
                                                                   for b in np.asarray(bounds, dtype=float)):
        raise ValueError(f"bounds must be one finite (low, high) pair with low < high per variable, got {bounds!r}.")
    ndim = len(bounds)
    if ndim not in (1, 2):
        raise ValueError(f"can only draw functions of 1 or 2 variables, got {ndim}.")
    if obj is not None and ndim != obj.ndim:
        raise ValueError(f"bounds give {ndim} variable(s); {obj.name} has {obj.ndim}.")
    for name, value, low in (("resolution", resolution, 2), ("levels", levels, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if not isinstance(results, Mapping):  # (a list of results ended in AttributeError: no .items)
        raise TypeError(f"results must be a mapping of labels to minimize() results, got {type(results).__name__}.")
    for label, res in results.items():
        if not isinstance(res, Mapping) or ("xs" in res and not hasattr(res, "xs")):
            # (an int ended in "argument of type 'int' is not iterable", a plain dict in "no attribute 'xs'")
            raise TypeError(f"result {label!r} must be a minimize() result (an OptimizeResult), got "
                            f"{type(res).__name__}.")
        if "xs" not in res:
            raise ValueError(f"result {label!r} has no path: run minimize with options={{'return_path': True}}.")
        shape = np.shape(res.xs)
        if len(shape) != 2 or shape[0] == 0:  # (a bare IndexError)
            raise ValueError(f"result {label!r} has a path of shape {shape}: expected one row of coordinates per "
                             "point, at least one point.")
        if shape[1] != ndim:
            raise ValueError(f"result {label!r} has {shape[1]} coordinates, the plot {ndim}.")
        if ndim == 1 and np.shape(getattr(res, "fs", None)) != shape[:1]:
            raise ValueError(f"result {label!r} needs one value in fs for each of its {shape[0]} points (a 1-D plot "
                             "draws the path at its values).")
    # The legend goes below the axes, three entries a row, so that it never hides a path: grow the height to fit.
    legend_rows = -(-(len(results) + 4) // 3)
    owns = ax is None  # (a figure of the caller's may hold other plots: the legend then stays with these axes)
    fig, ax = _figure_and_axes(ax, (6.4, (5 if ndim == 2 else 3.6) + 0.25 * legend_rows))
    value = obj.fun if obj is not None else (lambda x: np.array([float(fun(p)) for p in np.atleast_2d(x.T)]))
    factor = 1.0  # (a 1-D plot's unit for f, _unit: the curve's, the paths' and the known points' values)
    if ndim == 2:
        X, Y, Z = _grid_values(fun, bounds, resolution)
        cs, label = _contour(ax, X, Y, Z, levels, bounds)
        fig.colorbar(cs, ax=ax, label=label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    else:
        x = np.linspace(*bounds[0], 400)
        # (a NaN made the y-range NaN: matplotlib's "Axis limits cannot be NaN or Inf"; gaps instead, as 2-D)
        fx, fmin, fmax = _finite_values(np.asarray(value(x[None]), dtype=np.float64), bounds)
        factor, suffix = _unit(fmin, fmax)
        fx, fmin, fmax = fx * factor, fmin * factor, fmax * factor
        ax.plot(x, fx, color="0.3", lw=1.5, zorder=1)
        # Fix the y-range to the curve's, so that a path which leaves the domain does not squash it.
        pad = 0.08 * (fmax - fmin)
        if not fmin - pad < fmax + pad:  # a flat curve: a zero pad made matplotlib warn of identical ylims
            pad = 0.08 * max(abs(fmin), abs(fmax), 1.0)
        ax.set_ylim(fmin - pad, fmax + pad)
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)" + suffix)
    for i, (label, res) in enumerate(results.items()):
        xs = np.asarray(res.xs, dtype=np.float64)
        pts = (xs[:, 0], xs[:, 1]) if ndim == 2 else (xs[:, 0], np.asarray(res.fs, dtype=np.float64) * factor)
        # Dots show the step lengths; about 40 of them per path keep long runs readable.
        ax.plot(*pts, "-", color=f"C{i}", lw=1.4, marker="o", ms=2.5, markevery=max(1, len(xs) // 40),
                label=f"{label} ({res.nit} steps)")
        ax.plot(pts[0][-1], pts[1][-1], "o", color=f"C{i}", ms=7, mec="black")
    if results:
        first = np.asarray(next(iter(results.values())).xs[0], dtype=np.float64)
        start = (first[0], first[1]) if ndim == 2 else (first[0], next(iter(results.values())).fs[0] * factor)
        ax.plot(*start, "s", color="white", mec="black", ms=8, label="start", zorder=5)
    if obj is not None:
        for kind, (marker, size) in _KIND_MARKERS.items():
            pts = [p for p in obj.critical_points if p.kind == kind]
            if pts:
                px = [p.x[0] for p in pts]
                py = [p.x[1] for p in pts] if ndim == 2 else [p.value * factor for p in pts]
                ax.plot(px, py, marker, color="red", mec="black", ms=size, ls="none", label=f"known {kind}", zorder=6)
    ax.set_xlim(*bounds[0])
    if ndim == 2:
        ax.set_ylim(*bounds[1])
    if owns:  # this plot made the figure (axes and colorbar): centre the legend under both
        # (judged by the figure's axes count, two 1-D plots in a caller's 1 x 2 figure drew their legends at
        # one spot, over each other and the tick labels)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="small",
                   frameon=False)
    else:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=3, fontsize="small", frameon=False)
    title = title if title is not None else (obj.formula if obj is not None else "")
    ax.set_title(textwrap.fill(title, 60), fontsize="medium")
    return _finish(fig, path)


def plot_risk(*, ax: Axes | None = None, path: PathLike | None = None) -> Figure | SubFigure:
    """Risk ``f`` and empirical risk ``g`` on [0.5, 1.5], both minima annotated.

    The figure of Zhang et al., *Dive into Deep Learning*, sec. 12.1 (:data:`fastopt.functions.RISK` and
    :data:`fastopt.functions.EMPIRICAL_RISK`).

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Draw into it (and its figure); default a new standalone Figure with one Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    TypeError
        If ``ax`` is not a matplotlib Axes.
    ValueError
        If ``path``'s suffix names a format matplotlib cannot write.
    ImportError
        If matplotlib is not installed.
    """
    fig, ax = _figure_and_axes(ax, (4.5, 2.5))
    _curve(ax, RISK, 0.5, 1.5, label="risk f")
    _curve(ax, EMPIRICAL_RISK, 0.5, 1.5, ls="--", label="empirical risk g")
    g_min, f_min = EMPIRICAL_RISK.global_minimum, RISK.global_minimum
    _annotate(ax, "min of\nempirical risk", (g_min.x[0], g_min.value), (0.5, -1.1))
    _annotate(ax, "min of risk", (f_min.x[0], f_min.value), (0.95, -0.5))
    ax.set_xlabel("x")
    ax.set_ylabel("risk")
    ax.legend(loc="upper right", fontsize="small")
    return _finish(fig, path)


def plot_local_minima(*, ax: Axes | None = None, path: PathLike | None = None) -> Figure | SubFigure:
    """``f(x) = x cos(pi x)`` on [-1, 2] with its local and global minimum annotated.

    The figure of Zhang et al., *Dive into Deep Learning*, sec. 12.1 (:data:`fastopt.functions.RISK`).

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Draw into it (and its figure); default a new standalone Figure with one Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    TypeError
        If ``ax`` is not a matplotlib Axes.
    ValueError
        If ``path``'s suffix names a format matplotlib cannot write.
    ImportError
        If matplotlib is not installed.
    """
    fig, ax = _figure_and_axes(ax, (4.5, 2.5))
    _curve(ax, RISK, -1.0, 2.0)
    glob, local = RISK.minima
    _annotate(ax, "local minimum", (local.x[0], local.value), (-0.77, -1.0))
    _annotate(ax, "global minimum", (glob.x[0], glob.value), (0.6, 0.8))
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    return _finish(fig, path)


def plot_saddle_1d(*, ax: Axes | None = None, path: PathLike | None = None) -> Figure | SubFigure:
    """``x**3`` on [-2, 2], whose first and second derivatives vanish at the saddle point 0.

    The figure of Zhang et al., *Dive into Deep Learning*, sec. 12.1 (:data:`fastopt.functions.CUBIC`).

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Draw into it (and its figure); default a new standalone Figure with one Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    TypeError
        If ``ax`` is not a matplotlib Axes.
    ValueError
        If ``path``'s suffix names a format matplotlib cannot write.
    ImportError
        If matplotlib is not installed.
    """
    fig, ax = _figure_and_axes(ax, (4.5, 2.5))
    _curve(ax, CUBIC, -2.0, 2.0)
    _annotate(ax, "saddle point", (0.0, -0.2), (-0.52, -5.0))
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    return _finish(fig, path)


def plot_saddle_2d(*, ax: Axes | None = None, path: PathLike | None = None) -> Figure | SubFigure:
    """The surface of ``x**2 - y**2`` (wireframe) with the saddle point at the origin marked.

    The figure of Zhang et al., *Dive into Deep Learning*, sec. 12.1 (:data:`fastopt.functions.SADDLE`), on
    ``[-1, 1]**2``.

    Parameters
    ----------
    ax : matplotlib 3-D Axes, optional
        Draw into it (made with ``fig.add_subplot(projection='3d')``); default a new standalone Figure with one
        3-D Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    TypeError
        If ``ax`` is not a matplotlib Axes.
    ValueError
        If ``ax`` is given but is not a 3-D Axes, or ``path``'s suffix names a format matplotlib cannot write.
    ImportError
        If matplotlib is not installed.
    """
    fig, ax = _figure_and_axes(ax, (5, 4.5), projection="3d")
    g = np.linspace(-1.0, 1.0, 101)
    X, Y = np.meshgrid(g, g)
    ax.plot_wireframe(X, Y, SADDLE.fun(np.stack([X, Y])), rstride=10, cstride=10, linewidth=0.7)
    ax.plot([0], [0], [0], "rx", ms=10, mew=2, label="saddle point")
    for setter in (ax.set_xticks, ax.set_yticks, ax.set_zticks):
        setter([-1, 0, 1])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("f(x, y)")
    ax.set_title(SADDLE.formula)
    ax.legend(loc="upper left")
    return _finish(fig, path)


def plot_vanishing_gradient(*, ax: Axes | None = None, path: PathLike | None = None) -> Figure | SubFigure:
    """``tanh`` on [-2, 5] and its derivative, which is 0.0013 at x = 4.

    The figure of Zhang et al., *Dive into Deep Learning*, sec. 12.1 (:data:`fastopt.functions.TANH`): the
    vanishing gradient.

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Draw into it (and its figure); default a new standalone Figure with one Axes.
    path : str, path-like or binary file object, optional
        Save the figure there, in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...; PNG
        without one, or for a file object).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.figure.SubFigure
        The figure drawn into: the new Figure, or ``ax.figure`` when ``ax`` is given (a SubFigure for an Axes
        of one).

    Raises
    ------
    TypeError
        If ``ax`` is not a matplotlib Axes.
    ValueError
        If ``path``'s suffix names a format matplotlib cannot write.
    ImportError
        If matplotlib is not installed.
    """
    fig, ax = _figure_and_axes(ax, (4.5, 2.5))
    x = _curve(ax, TANH, -2.0, 5.0, label="f(x) = tanh(x)")
    ax.plot(x, TANH.grad(x[None])[0], ls="--", label="f'(x) = 1 - tanh(x)^2")
    slope = float(TANH.grad(np.array([4.0]))[0])
    _annotate(ax, f"vanishing gradient\nf'(4) = {slope:.4f}", (4.0, 1.0), (0.6, -0.45))
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.legend(loc="lower right", fontsize="small")
    return _finish(fig, path)

"""Figures: what each draws (lines, labels, legend entries, annotations), and that it saves a PNG."""
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastopt import LinearRegressor, minimize, plotting  # noqa: E402
from fastopt.functions import FUNCTIONS  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _legend(ax):
    """Legend entries of ``ax``, or of its figure's legend (trajectory plots put theirs under the axes)."""
    legend = ax.get_legend() or ax.figure.legends[0]
    return [t.get_text() for t in legend.get_texts()]


def _annotations(ax):
    return {a.get_text(): a.xy for a in ax.texts}


def _saved(fig, tmp_path, name="fig.png"):
    path = tmp_path / name
    fig.savefig(path)
    return path.read_bytes()[:8] == PNG_MAGIC


def test_risk_figure_annotates_both_minima_at_the_known_points(tmp_path):
    path = tmp_path / "risk.png"
    fig = plotting.plot_risk(path=path)
    assert isinstance(fig, Figure) and path.read_bytes()[:8] == PNG_MAGIC
    ax = fig.axes[0]
    assert _legend(ax) == ["risk f", "empirical risk g"]
    notes = _annotations(ax)
    assert notes["min of\nempirical risk"] == pytest.approx((1.0169834, -1.2084614))
    assert notes["min of risk"] == pytest.approx((1.0904082, -1.0467211))
    xs = ax.get_lines()[0].get_xdata()
    assert xs.min() == 0.5 and xs.max() == 1.5


def test_local_minima_figure():
    ax = plotting.plot_local_minima().axes[0]
    notes = _annotations(ax)
    assert notes["local minimum"] == pytest.approx((-0.2738527, -0.1786025))
    assert notes["global minimum"] == pytest.approx((1.0904082, -1.0467211))
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), line.get_xdata() * np.cos(np.pi * line.get_xdata()))


def test_saddle_figures():
    ax = plotting.plot_saddle_1d().axes[0]
    assert "saddle point" in _annotations(ax)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ax.get_lines()[0].get_xdata() ** 3)
    ax3 = plotting.plot_saddle_2d().axes[0]
    assert ax3.name == "3d" and ax3.get_zlabel() == "f(x, y)"
    assert len(ax3.collections) == 1  # the wireframe
    marker = [ln for ln in ax3.get_lines() if ln.get_label() == "saddle point"]
    assert len(marker) == 1 and marker[0].get_marker() == "x"


def test_vanishing_gradient_figure():
    ax = plotting.plot_vanishing_gradient().axes[0]
    (text, xy), = _annotations(ax).items()
    assert "vanishing gradient" in text and "0.0013" in text and xy == (4.0, 1.0)
    assert _legend(ax) == ["f(x) = tanh(x)", "f'(x) = 1 - tanh(x)^2"]


def _paths(obj, methods, **options):
    return {m: minimize(obj.fun, obj.x0, jac=obj.grad, method=m, options={"return_path": True, **options})
            for m in methods}


def test_trajectories_over_a_contour(tmp_path):
    rb = FUNCTIONS["rosenbrock"]
    runs = _paths(rb, ["sgd", "momentum", "adam"], lr=1e-3, maxiter=200)
    fig = plotting.plot_trajectories(rb, runs)
    ax = fig.axes[0]
    assert _legend(ax) == ["sgd (200 steps)", "momentum (200 steps)", "adam (200 steps)", "start", "known minimum"]
    paths = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_array_equal(paths["adam (200 steps)"].get_xydata(), runs["adam"].xs)
    assert paths["known minimum"].get_xydata().tolist() == [[1.0, 1.0]]
    assert sum(isinstance(c, ContourSet) for c in ax.collections) == 2  # filled levels and their outlines
    assert fig.axes[1].get_ylabel() == "log10 f(x, y)"  # the colorbar: Rosenbrock spans many decades
    assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-1.0, 3.0)
    assert _saved(fig, tmp_path)


def test_trajectories_of_a_one_dimensional_function_and_critical_point_kinds():
    risk = FUNCTIONS["risk"]
    runs = _paths(risk, ["sgd"], lr=0.05)
    ax = plotting.plot_trajectories(risk, runs).axes[0]
    assert "known maximum" in _legend(ax) and "known minimum" in _legend(ax)
    path = next(ln for ln in ax.get_lines() if ln.get_label().startswith("sgd"))
    np.testing.assert_array_equal(path.get_ydata(), runs["sgd"].fs)
    hb = FUNCTIONS["himmelblau"]
    ax = plotting.plot_trajectories(hb, _paths(hb, ["adam"], maxiter=20)).axes[0]
    kinds = {ln.get_label(): len(ln.get_xdata()) for ln in ax.get_lines() if ln.get_label().startswith("known")}
    assert kinds == {"known minimum": 4, "known saddle": 4, "known maximum": 1}


def test_trajectories_of_a_plain_callable_need_bounds():
    f = lambda p: (p[0] - 1) ** 2 + 3 * p[1] ** 2 - 1  # noqa: E731 (negative values: linear contour levels)
    runs = {"sgd": minimize(f, [0.0, 1.0], jac=lambda p: np.array([2 * (p[0] - 1), 6 * p[1]]), method="sgd",
                            options={"lr": 0.1, "return_path": True})}
    with pytest.raises(ValueError, match="bounds"):
        plotting.plot_trajectories(f, runs)
    fig = plotting.plot_trajectories(f, runs, bounds=[(-1, 2), (-1, 1.5)], resolution=30, title="bowl")
    assert fig.axes[0].get_title() == "bowl" and fig.axes[1].get_ylabel() == "f(x, y)"


def test_trajectories_reject_results_without_a_path():
    rb = FUNCTIONS["rosenbrock"]
    with pytest.raises(ValueError, match="return_path"):
        plotting.plot_trajectories(rb, {"sgd": minimize(rb.fun, rb.x0, jac=rb.grad, options={"maxiter": 2})})


def test_draws_into_a_given_axes():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plotting.plot_risk(ax=left) is fig
    assert plotting.plot_vanishing_gradient(ax=right) is fig
    assert len(left.get_lines()) == 2 and len(right.get_lines()) == 2


def test_loss_curve_of_a_fitted_estimator(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver="adam", learning_rate=0.05, max_epochs=30, early_stopping=True,
                              n_iter_no_change=30, random_state=0).fit(X, y)
    fig = plotting.plot_loss_curve(est, path=tmp_path / "loss.png")
    ax = fig.axes[0]
    assert _legend(ax)[:2] == ["training loss", "validation $R^2$"]
    assert _legend(ax)[2].startswith("best validation (epoch ")
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), est.loss_curve_)
    np.testing.assert_array_equal(fig.axes[1].get_lines()[0].get_ydata(), est.validation_scores_)
    assert ax.get_yscale() == "log"
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC
    # Without early stopping there is no validation axis.
    est.set_params(early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fig = plotting.plot_loss_curve(est.fit(X, y))
    assert len(fig.axes) == 1 and _legend(fig.axes[0]) == ["training loss"]


def test_loss_curve_needs_an_iterative_fit():
    with pytest.raises(ValueError, match="iterative"):
        plotting.plot_loss_curve(LinearRegressor())


def test_trajectories_in_a_callers_subplots_keep_their_legends_on_their_axes():
    # (two 1-D plots in a 1 x 2 figure both drew a figure legend at its lower centre, over each other)
    risk = FUNCTIONS["risk"]

    def run(method):
        return minimize(risk.fun, risk.x0, jac=risk.grad, method=method,
                        options={"lr": 1e-2, "return_path": True, "maxiter": 30})

    fig = Figure()
    axs = fig.subplots(1, 2)
    plotting.plot_trajectories(risk, {"sgd": run("sgd")}, ax=axs[0])
    plotting.plot_trajectories(risk, {"adam": run("adam")}, ax=axs[1])
    assert not fig.legends
    assert [ax.get_legend().get_texts()[0].get_text() for ax in axs] == ["sgd (30 steps)", "adam (30 steps)"]


@pytest.mark.parametrize("kwargs, message", [
    ({"bounds": [(-2.0, 2.0)]}, "bounds give 1 variable"),  # (an IndexError)
    ({"bounds": [(2.0, -2.0), (-1.0, 3.0)]}, "bounds must be one finite"),
    ({"bounds": [(-2.0, 2.0), (-1.0, np.inf)]}, "bounds must be one finite"),
    ({"resolution": 1}, "resolution must be an integer >= 2"),  # (matplotlib's TypeError)
    ({"levels": 0}, "levels must be an integer >= 1"),
])
def test_trajectories_name_a_bad_argument(kwargs, message):
    rosenbrock = FUNCTIONS["rosenbrock"]
    res = minimize(rosenbrock.fun, rosenbrock.x0, jac=rosenbrock.grad, method="adam",
                   options={"return_path": True, "maxiter": 5})
    with pytest.raises(ValueError, match=message):
        plotting.plot_trajectories(rosenbrock, {"adam": res}, **kwargs)


def test_trajectories_need_a_mapping_of_results():
    rosenbrock = FUNCTIONS["rosenbrock"]
    res = minimize(rosenbrock.fun, rosenbrock.x0, jac=rosenbrock.grad, options={"return_path": True, "maxiter": 5})
    with pytest.raises(TypeError, match="results must be a mapping"):  # (AttributeError: no .items)
        plotting.plot_trajectories(rosenbrock, [res])


def test_the_saddle_surface_needs_3d_axes():
    with pytest.raises(ValueError, match="ax must be a 3-D Axes"):  # (an AttributeError from plot_wireframe)
        plotting.plot_saddle_2d(ax=Figure().add_subplot())


def test_trajectories_name_a_result_that_is_not_one():
    rosenbrock = FUNCTIONS["rosenbrock"]
    res = minimize(rosenbrock.fun, rosenbrock.x0, jac=rosenbrock.grad, options={"return_path": True, "maxiter": 5})
    # (an int ended in "argument of type 'int' is not iterable", a plain dict in "no attribute 'xs'")
    for bad in (3, {"xs": res.xs, "fs": res.fs}):
        with pytest.raises(TypeError, match="result 'a' must be a minimize"):
            plotting.plot_trajectories(rosenbrock, {"a": bad})


def test_an_axes_that_is_not_one_is_named():
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):  # (AttributeError: no 'figure')
        plotting.plot_risk(ax=3)


def test_the_path_suffix_names_the_format(tmp_path):
    # PNG bytes went silently into x.pdf; a suffix no backend writes is refused, none means PNG
    plotting.plot_risk(path=tmp_path / "risk.pdf")
    assert (tmp_path / "risk.pdf").read_bytes()[:5] == b"%PDF-"
    plotting.plot_risk(path=tmp_path / "risk")
    assert (tmp_path / "risk").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="cannot write a figure as 'xyz'"):
        plotting.plot_risk(path=tmp_path / "risk.xyz")


def _filled(ax):
    """The filled contour set of a trajectory plot (drawn first; the outlines come second)."""
    return next(c for c in ax.collections if isinstance(c, ContourSet))


def _bowl_run(ndim=2):
    return {"sgd": minimize(lambda p: float(p @ p), [0.8] + [0.5] * (ndim - 1), jac=lambda p: 2 * p, method="sgd",
                            options={"lr": 0.1, "maxiter": 5, "return_path": True})}


def test_an_infinite_value_on_the_grid_blanks_its_cell_not_the_plot():
    # A pole at the origin, which the 21-point grid hits: the range was inf, so the log scale was chosen and every
    # value became log10(inf): levels of -1e-13 .. 1e-13 and no filled region at all. The finite values,
    # 1 + |p|^2, span [1, 3]: linear levels over them.
    def f(p):
        return np.inf if not p.any() else float(p @ p) + 1.0

    fig = plotting.plot_trajectories(f, _bowl_run(), bounds=[(-1, 1), (-1, 1)], resolution=21)
    cs = _filled(fig.axes[0])
    assert fig.axes[1].get_ylabel() == "f(x, y)"
    assert np.all(np.isfinite(cs.levels)) and cs.levels[0] <= 1.0 and 3.0 <= cs.levels[-1] <= 3.5
    assert sum(len(p.vertices) for p in cs.get_paths()) > 0


def test_a_nan_on_the_grid_keeps_the_log_scale_of_the_finite_values():
    # (a NaN made the value range NaN, and the comparison that picks the log scale was silently False)
    rb = FUNCTIONS["rosenbrock"]

    def f(p):
        return float(rb.fun(p)) if p[0] > -1.9 else np.nan  # undefined on a strip at the left edge

    fig = plotting.plot_trajectories(f, _paths(rb, ["sgd"], lr=1e-3, maxiter=20), bounds=rb.bounds, resolution=60)
    cs = _filled(fig.axes[0])
    assert fig.axes[1].get_ylabel() == "log10 f(x, y)"
    # the finite values reach 2501 (f at (2, -1)): their logs, up to 3.398, are covered
    assert np.all(np.isfinite(cs.levels)) and np.log10(2501) <= cs.levels[-1] <= 3.6


def test_a_one_dimensional_curve_takes_its_range_from_its_finite_values():
    # (a NaN made the y-limits NaN: matplotlib's "Axis limits cannot be NaN or Inf")
    def f(p):
        return float(p[0] ** 2) if p[0] > -0.5 else np.nan

    ax = plotting.plot_trajectories(f, _bowl_run(1), bounds=[(-1, 1)]).axes[0]
    low, high = ax.get_ylim()  # x^2 on (-0.5, 1]: [0, 1] padded by 8%
    assert low == pytest.approx(-0.08, abs=1e-3) and high == pytest.approx(1.08, abs=1e-3)


@pytest.mark.parametrize("ndim", [1, 2])
def test_a_function_finite_nowhere_on_the_grid_is_named(ndim):
    with pytest.raises(ValueError, match="fun is not finite anywhere on the plotting grid"):
        plotting.plot_trajectories(lambda p: np.nan, _bowl_run(ndim), bounds=[(-1, 1)] * ndim, resolution=5)


@pytest.mark.parametrize("value", [0.0, 3.0, -1e9])
def test_a_constant_one_dimensional_curve_gets_a_nonzero_y_range(value):
    # (the pad, 8% of fmax - fmin, was 0: matplotlib's "Attempting to set identical low and high ylims" warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = plotting.plot_trajectories(lambda p: value, _bowl_run(1), bounds=[(-1, 1)]).axes[0]
    low, high = ax.get_ylim()
    assert low < value < high and high - low == pytest.approx(0.16 * max(abs(value), 1.0))


@pytest.mark.parametrize("ndim", [1, 2])
def test_finite_values_near_the_largest_double_are_drawn_in_a_stated_unit(ndim):
    # matplotlib's limits and levels over values near 1.8e308 overflowed: "Axis limits cannot be NaN or Inf"
    def f(p):
        return 1.7e308 * (float(p[0]) - 0.5)

    fig = plotting.plot_trajectories(f, {}, bounds=[(0.0, 1.0)] * ndim, resolution=20)
    if ndim == 1:
        ax = fig.axes[0]
        assert ax.get_ylabel() == "f(x) / 1e307"
        low, high = ax.get_ylim()  # +-8.5 (1e307 units), padded by 8% of the range
        assert low == pytest.approx(-8.5 - 1.36) and high == pytest.approx(8.5 + 1.36)
    else:
        assert fig.axes[1].get_ylabel() == "f(x, y) / 1e307"
        levels = next(c for c in fig.axes[0].get_children() if isinstance(c, ContourSet)).levels
        assert np.isfinite(levels).all() and levels.min() <= -8.4 and levels.max() >= 8.4


@pytest.mark.parametrize("xs, fs, message", [
    (np.zeros(3), np.zeros(3), r"path of shape \(3,\)"),
    (np.zeros((0, 1)), np.zeros(0), r"path of shape \(0, 1\)"),
    (np.zeros((3, 1)), np.zeros(2), "one value in fs for each of its 3 points"),
])
def test_a_malformed_path_is_named(xs, fs, message):
    # (a bare IndexError)
    from scipy.optimize import OptimizeResult

    with pytest.raises(ValueError, match=message):
        plotting.plot_trajectories(lambda p: float(p[0] ** 2), {"a": OptimizeResult(xs=xs, fs=fs, nit=2)},
                                   bounds=[(-1.0, 1.0)])

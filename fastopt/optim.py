"""Optimizer specifications, learning-rate schedules and gradient clipping over the compiled step rules.

Each optimizer is a frozen dataclass of hyperparameters with PyTorch's names and defaults (``rho`` is
``torch.optim.RMSprop``'s ``alpha``; ``beta1, beta2`` are ``betas``). The learning rate is not part of a spec:
it is passed to every :meth:`Optimizer.step`, so a schedule can change it. One step runs the compiled kernel
(``csrc/rules.h``), the same code the estimator's fused epoch calls, so a user of :func:`fastopt.minimize` and a
``LinearRegressor`` get the same arithmetic, and both can be checked against ``torch.optim``::

    >>> import numpy as np
    >>> from fastopt import optim
    >>> opt = optim.make("adam", beta2=0.99)
    >>> w = np.array([1.0, -2.0]); state = opt.init_state(w.size, w.dtype)
    >>> for t in range(1, 101):
    ...     opt.step(w, 2 * w, state, t, lr=optim.schedule_lr("cosine", 0.1, t - 1, 100))

Notation of the docstrings: ``g`` is the gradient of the loss (plus ``weight_decay * w`` where decay is coupled),
``t`` the 1-based step, ``lr`` the current learning rate. The book (Goodfellow, Bengio & Courville, *Deep Learning*,
2016, ch. 8) writes the learning rate as epsilon and the stability constant as delta.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from fastopt import _kernels
from fastopt._kernels import Loss, Rule

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Hyper",
    "Loss",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSProp",
    "Rule",
    "clip_grad_norm",
    "make",
    "schedule_lr",
]


class Hyper(NamedTuple):
    """Every rule's hyperparameters in one record: the Python mirror of C's ``fo_hyper``.

    A rule reads only its own fields; the others keep these neutral defaults. Built by :attr:`Optimizer.hyper`,
    which has checked the values; this record checks nothing. Each parameter is the tuple field of that name.

    Parameters
    ----------
    momentum : float, default 0.0
        Momentum factor (:class:`Momentum`, :class:`Nesterov`, :class:`RMSProp`).
    dampening : float, default 0.0
        Dampening of the momentum buffer (:class:`Momentum`).
    rho : float, default 0.0
        Decay of the squared-gradient average (:class:`RMSProp`; PyTorch's ``alpha``).
    beta1, beta2 : float, default 0.0
        Decays of the first and second moment averages (:class:`Adam`, :class:`AdamW`).
    eps : float, default 0.0
        Term added to the denominator of the adaptive rules.
    weight_decay : float, default 0.0
        L2 penalty coefficient (decoupled for :class:`AdamW`).
    lr_decay : float, default 0.0
        Learning-rate decay of :class:`AdaGrad`.
    centered : bool, default False
        Centred variant of :class:`RMSProp`.
    amsgrad : bool, default False
        AMSGrad variant of :class:`Adam` and :class:`AdamW`.
    """

    momentum: float = 0.0
    dampening: float = 0.0
    rho: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.0
    eps: float = 0.0
    weight_decay: float = 0.0
    lr_decay: float = 0.0
    centered: bool = False
    amsgrad: bool = False


# A loss that exceeds this multiple of the starting loss has diverged (the estimator's minibatch loss, minimize's
# objective): gradient descent that is unstable grows the loss geometrically, so it crosses this bound within a
# few steps, long before overflow, while a stable run never comes near it (its minibatch losses stay within
# outlier noise of the start).
DIVERGENCE_FACTOR = 1e10

# Allowed ranges: (low, high, low_closed, high_closed). One table, so every spec checks the same way.
BOUNDS = {
    "momentum": (0.0, 1.0, True, False),
    "dampening": (0.0, 1.0, True, True),
    "rho": (0.0, 1.0, True, False),
    "beta1": (0.0, 1.0, True, False),
    "beta2": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "weight_decay": (0.0, math.inf, True, False),
    "lr_decay": (0.0, math.inf, True, False),
    "initial_accumulator_value": (0.0, math.inf, True, False),
}


def _check_count(owner: str, name: str, value, low: int) -> int:
    """``value`` as an int in ``[low, 2^62]`` (an integer, not a bool), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {value!r}.")
    if not low <= int(value) <= 2**62:
        raise ValueError(f"{owner}: {name} must lie in [{low}, 2**62], got {value!r}.")
    return int(value)


def _finite_real(value) -> bool:
    """Whether ``value`` is a real number, not a bool, that is finite as a float (an integer beyond float's range,
    such as ``10**400``, is not: ``math.isfinite`` raises ``OverflowError`` on it)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_in_range(owner: str, name: str, value, bounds) -> None:
    low, high, low_closed, high_closed = bounds
    if not _finite_real(value):
        raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}.")
    ok_low = value >= low if low_closed else value > low
    ok_high = value <= high if high_closed else value < high
    if not (ok_low and ok_high):
        interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
        raise ValueError(f"{owner}: {name} must lie in {interval}, got {value!r}.")


@dataclass(frozen=True)
class Optimizer:
    """Base of the optimizer specs: validation, state layout and the compiled step.

    Subclasses set ``rule`` (the C rule) and ``n_slots`` (rows of the state array), declare their
    hyperparameters as dataclass fields, and state the facts other modules ask of a rule (the class attributes
    below). On construction every field is checked: a bool field must be True or False, a number must be finite
    and lie in its range of ``BOUNDS`` (or the subclass's override).

    Attributes
    ----------
    rule : Rule
        The compiled update rule the spec runs.
    n_slots : int
        Rows of the state array (:meth:`init_state`).
    follows_gradient : bool
        The step is along the (momentum-averaged) gradient itself, unscaled per coordinate: SGD, momentum,
        Nesterov. The adaptive rules divide by a running gradient scale instead.
    decoupled_decay : bool
        ``weight_decay`` shrinks the weights directly (AdamW) instead of adding ``weight_decay * w`` to the
        gradient, so it is not part of the minimised loss.
    accumulates : bool
        The squared-gradient scale is a sum that never decays (AdaGrad), so steps shrink over time.
    lazy_mode : bool
        Its exact steps move every coordinate (O(d) a step on sparse ``X``), and it has a lazy, SparseAdam-like
        mode that moves only the minibatch's nonzero coordinates (Adam, AdamW).

    Raises
    ------
    ValueError
        On construction, if a hyperparameter is out of its range, not a finite real number, or (a bool field)
        not True or False.
    """

    rule: ClassVar[Rule]
    n_slots: ClassVar[int]
    follows_gradient: ClassVar[bool] = False
    decoupled_decay: ClassVar[bool] = False
    accumulates: ClassVar[bool] = False
    lazy_mode: ClassVar[bool] = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"{owner}: {f.name} must be True or False, got {value!r}.")
            else:
                _check_in_range(owner, f.name, value, self._bounds().get(f.name, BOUNDS[f.name]))

    @classmethod
    def _bounds(cls) -> dict:
        """Per-class overrides of ``BOUNDS``."""
        return {}

    @property
    def hyper(self) -> Hyper:
        """The hyperparameters as the kernels read them."""
        return Hyper(**{f: getattr(self, f) for f in Hyper._fields if hasattr(self, f)})

    def init_state(self, n_params: int, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
        """Fresh optimizer state.

        Parameters
        ----------
        n_params : int
            Number of parameters the state is for, an integer in ``[0, 2**62]``.
        dtype : float32 or float64, default float64
            The dtype of the parameters the state will be used with (anything ``numpy.dtype`` reads as one of
            the two).

        Returns
        -------
        state : ndarray of shape (n_slots, n_params)
            Zeros (AdaGrad: ``initial_accumulator_value``); the class docstring lists the slots.

        Raises
        ------
        ValueError
            If ``dtype`` is not float32 or float64, or ``n_params`` is out of ``[0, 2**62]``.
        TypeError
            If ``n_params`` is not an integer (a bool is not), or ``dtype`` is not a data type at all.
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
        n_params = _check_count("init_state", "n_params", n_params, 0)  # (1.5 ran as 1; inf overflowed)
        return np.zeros((self.n_slots, n_params), dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, state: np.ndarray, t: int, lr: float,
             n_decay: int | None = None) -> None:
        """One update, in place on ``params`` and ``state`` (compiled; releases the GIL).

        Parameters
        ----------
        params : ndarray of shape (n,), float32 or float64, C-contiguous, writeable
        grad : ndarray of shape (n,), same dtype
            Gradient of the loss at ``params``; left unchanged (weight decay is added inside the step).
        state : ndarray of shape (n_slots, n), same dtype
            From :meth:`init_state`, carried from step to step.
        t : int
            1-based step count (bias corrections, first-step momentum, AdaGrad's lr decay), in ``[1, 2**62]``.
        lr : float
            Learning rate of this step (after any schedule), finite and >= 0.
        n_decay : int, optional
            Only ``params[:n_decay]`` receive weight decay (default: all). Put intercepts last to exempt them.

        Raises
        ------
        ValueError
            If ``params`` is not a non-empty, C-contiguous, writeable 1-D float32 or float64 ndarray; ``grad``
            not one of the same shape and dtype; ``state`` not a writeable C-contiguous array of shape
            ``(n_slots, n)`` and that dtype; ``t`` below 1 (or above 2**62); ``lr`` negative or not finite; or
            ``n_decay`` outside ``[0, n]``.
        TypeError
            If ``t`` or ``n_decay`` is not an integer (a bool is not).
        """
        n = _check_vector("params", params)
        if not params.flags.writeable:
            raise ValueError("params must be writeable; the step updates it in place.")
        if _check_vector("grad", grad) != n or grad.dtype != params.dtype:
            raise ValueError(f"grad must have shape ({n},) and dtype {params.dtype}, got {grad.shape} {grad.dtype}.")
        if not isinstance(state, np.ndarray) or state.shape != (self.n_slots, n) or state.dtype != params.dtype \
                or not state.flags.c_contiguous or not state.flags.writeable:
            raise ValueError(
                f"state must be a C-contiguous {params.dtype} array of shape {(self.n_slots, n)} "
                f"(from init_state), writeable, got {type(state).__name__} {getattr(state, 'shape', '')} "
                f"{getattr(state, 'dtype', '')}."
            )
        t = _check_count("step", "t (the 1-based step count)", t, 1)  # (1.7 ran as step 1; inf overflowed)
        _check_in_range("step", "lr", lr, (0.0, math.inf, True, False))
        if n_decay is not None:  # ("1" and 1.7 were taken as 1; inf overflowed)
            n_decay = _check_count("step", "n_decay", n_decay, 0)
            if n_decay > n:
                raise ValueError(f"n_decay must lie in [0, {n}], got {n_decay}.")
        _kernels.step(int(self.rule), self.hyper, params, grad, state, int(t), float(lr), n_decay)


def _check_vector(name: str, a) -> int:
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be a 1-D float32 or float64 ndarray, got {type(a).__name__} "
                         f"{getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}.")
    if not a.flags.c_contiguous or a.shape[0] == 0:
        raise ValueError(f"{name} must be contiguous and non-empty.")
    return a.shape[0]


@dataclass(frozen=True)
class SGD(Optimizer):
    """Plain stochastic gradient descent.

    Algorithm 8.1: ``theta <- theta - epsilon g``.  PyTorch (``SGD(momentum=0)``): ``w <- w - lr g``.  Identical, with
    ``epsilon = lr``.  State: none.

    Parameters
    ----------
    weight_decay : float, default 0.0
        L2 penalty coefficient, in ``[0, inf)``: ``weight_decay * w`` is added to ``g``.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number.
    """

    weight_decay: float = 0.0
    rule: ClassVar[Rule] = Rule.SGD
    follows_gradient: ClassVar[bool] = True
    n_slots: ClassVar[int] = 0


@dataclass(frozen=True)
class Momentum(Optimizer):
    """Heavy-ball momentum, PyTorch's form.

    Algorithm 8.2: ``v <- alpha v - epsilon g;  theta <- theta + v``.
    PyTorch (``SGD(momentum=mu, dampening=tau)``): ``b <- mu b + (1 - tau) g`` (``b <- g`` at ``t = 1``);
    ``w <- w - lr b``.
    Mapping: ``alpha = mu`` and, for constant ``lr`` and ``tau = 0``, ``v = -lr b``; the two differ only when
    the learning rate changes (PyTorch rescales the whole buffer by the new lr) and in the first step, where
    PyTorch skips dampening.  State slot 0: ``b``.

    Parameters
    ----------
    momentum : float, default 0.9
        Momentum factor ``mu``, in ``[0, 1)``; 0 makes the steps plain SGD's (see :attr:`hyper`).
    dampening : float, default 0.0
        Dampening ``tau`` of the gradient added to the buffer, in ``[0, 1]``.
    weight_decay : float, default 0.0
        L2 penalty coefficient, in ``[0, inf)``: ``weight_decay * w`` is added to ``g``.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number.
    """

    momentum: float = 0.9
    dampening: float = 0.0
    weight_decay: float = 0.0
    rule: ClassVar[Rule] = Rule.MOMENTUM
    follows_gradient: ClassVar[bool] = True
    n_slots: ClassVar[int] = 1

    @property
    def hyper(self) -> Hyper:
        """As :attr:`Optimizer.hyper`, with no dampening at zero momentum.

        PyTorch keeps no buffer then, so its steps are plain SGD's, where a dampened buffer ``b <- (1 - tau) g``
        shrank every step after the first.
        """
        hyper = super().hyper
        return hyper._replace(dampening=0.0) if self.momentum == 0.0 else hyper


@dataclass(frozen=True)
class Nesterov(Optimizer):
    """Nesterov momentum in PyTorch's look-ahead form.

    Algorithm 8.3: ``v <- alpha v - epsilon grad(theta + alpha v);  theta <- theta + v`` (gradient at the look-ahead).
    PyTorch (``SGD(momentum=mu, nesterov=True)``, dampening 0): ``b <- mu b + g`` (``b <- g`` at ``t = 1``);
    ``w <- w - lr (g + mu b)``.
    Mapping: substitute ``phi = theta + alpha v``, the parameters PyTorch stores; then the book's update of
    ``phi`` is PyTorch's with ``alpha = mu``, ``v = -lr b``, and the gradient needs no look-ahead evaluation.
    State slot 0: ``b``.

    Parameters
    ----------
    momentum : float, default 0.9
        Momentum factor ``mu``, in ``(0, 1)`` (zero momentum is not Nesterov's method).
    weight_decay : float, default 0.0
        L2 penalty coefficient, in ``[0, inf)``: ``weight_decay * w`` is added to ``g``.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number.
    """

    momentum: float = 0.9
    weight_decay: float = 0.0
    rule: ClassVar[Rule] = Rule.NESTEROV
    follows_gradient: ClassVar[bool] = True
    n_slots: ClassVar[int] = 1

    @classmethod
    def _bounds(cls) -> dict:
        return {"momentum": (0.0, 1.0, False, False)}  # zero momentum is not Nesterov (PyTorch agrees)


@dataclass(frozen=True)
class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer, 2011).

    Algorithm 8.4: ``r <- r + g*g;  theta <- theta - epsilon g / sqrt(delta + r)``.
    PyTorch (``Adagrad``): ``clr = lr / (1 + (t - 1) lr_decay)``; ``r <- r + g*g``;
    ``w <- w - clr g / (sqrt(r) + eps)``, ``r`` starting at ``initial_accumulator_value``.
    Mapping: ``epsilon = lr`` with ``lr_decay = 0``. Eps placement differs: the book adds ``delta`` inside the
    square root, PyTorch (and fastopt) adds ``eps`` outside, so ``eps`` plays the role of ``sqrt(delta)``.
    State slot 0: ``r``.

    Parameters
    ----------
    lr_decay : float, default 0.0
        Learning-rate decay, in ``[0, inf)``: step ``t`` uses ``lr / (1 + (t - 1) lr_decay)``.
    weight_decay : float, default 0.0
        L2 penalty coefficient, in ``[0, inf)``: ``weight_decay * w`` is added to ``g``.
    initial_accumulator_value : float, default 0.0
        Starting value of the squared-gradient sum ``r``, in ``[0, inf)``.
    eps : float, default 1e-10
        Added to ``sqrt(r)`` in the denominator, in ``(0, inf)``.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number.
    """

    lr_decay: float = 0.0
    weight_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    rule: ClassVar[Rule] = Rule.ADAGRAD
    accumulates: ClassVar[bool] = True
    n_slots: ClassVar[int] = 1

    def init_state(self, n_params: int, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
        """Fresh optimizer state: the squared-gradient sum ``r`` filled with ``initial_accumulator_value``.

        Parameters
        ----------
        n_params : int
            Number of parameters the state is for, an integer in ``[0, 2**62]``.
        dtype : float32 or float64, default float64
            The dtype of the parameters the state will be used with.

        Returns
        -------
        state : ndarray of shape (1, n_params)
            Slot 0, ``r``, equal to ``initial_accumulator_value`` everywhere.

        Raises
        ------
        ValueError
            If ``dtype`` is not float32 or float64, or ``n_params`` is out of ``[0, 2**62]``.
        TypeError
            If ``n_params`` is not an integer (a bool is not), or ``dtype`` is not a data type at all.
        """
        state = super().init_state(n_params, dtype)
        state[0] = self.initial_accumulator_value
        return state


@dataclass(frozen=True)
class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012), with PyTorch's optional momentum and centred variant.

    Algorithm 8.5: ``r <- rho r + (1 - rho) g*g;  theta <- theta - epsilon g / sqrt(delta + r)``.
    PyTorch (``RMSprop(alpha=rho)``): ``r <- rho r + (1 - rho) g*g``; centred: ``a <- a + (1 - rho)(g - a)``,
    ``den = sqrt(max(r - a*a, 0)) + eps``, else ``den = sqrt(r) + eps``; with momentum ``mu > 0``:
    ``b <- mu b + g / den``, ``w <- w - lr b``; else ``w <- w - lr g / den``. (PyTorch takes ``sqrt(r - a*a)``:
    under a steady gradient, ``a*a -> r`` and rounding makes the difference negative, its root NaN; here 0.)
    Mapping: ``epsilon = lr``; eps outside the square root (the book's ``delta`` is inside). The book's
    "RMSProp with Nesterov momentum" is not PyTorch's momentum variant (which is heavy ball on ``g / den``).
    State slots: 0 ``r``, 1 ``a`` (centred only), 2 ``b`` (momentum only); unused slots stay zero.

    Parameters
    ----------
    rho : float, default 0.99
        Decay of the squared-gradient average ``r``, in ``[0, 1)`` (PyTorch's ``alpha``).
    eps : float, default 1e-8
        Added to the denominator outside the square root, in ``(0, inf)``.
    weight_decay : float, default 0.0
        L2 penalty coefficient, in ``[0, inf)``: ``weight_decay * w`` is added to ``g``.
    momentum : float, default 0.0
        Momentum factor ``mu``, in ``[0, 1)``; 0 for no momentum buffer.
    centered : bool, default False
        Divide by the centred estimate ``sqrt(max(r - a*a, 0))`` instead of ``sqrt(r)``.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number, or ``centered`` is not True or
        False.
    """

    rho: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    rule: ClassVar[Rule] = Rule.RMSPROP
    n_slots: ClassVar[int] = 3


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with optional AMSGrad (Reddi, Kale & Kumar, 2018).

    Algorithm 8.7: ``s <- rho1 s + (1 - rho1) g;  r <- rho2 r + (1 - rho2) g*g;  s_hat = s / (1 - rho1^t)``,
    ``r_hat = r / (1 - rho2^t);  theta <- theta - epsilon s_hat / (sqrt(r_hat) + delta)``.
    PyTorch (``Adam(betas=(beta1, beta2))``): ``m <- m + (1 - beta1)(g - m)``;
    ``v <- beta2 v + (1 - beta2) g*g``; AMSGrad: ``vmax <- max(vmax, v)`` used in place of ``v``;
    ``w <- w - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
    Mapping: ``s = m``, ``r = v``, ``rho1, rho2 = beta1, beta2``, ``epsilon = lr``, ``delta = eps``: the same
    update, eps outside the square root and added after the bias correction of ``v``.
    State slots: 0 ``m``, 1 ``v``, 2 ``vmax`` (AMSGrad only).

    Parameters
    ----------
    beta1 : float, default 0.9
        Decay of the first-moment average ``m``, in ``[0, 1)``.
    beta2 : float, default 0.999
        Decay of the second-moment average ``v``, in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the denominator outside the square root, in ``(0, inf)``.
    weight_decay : float, default 0.0
        L2 penalty coefficient, in ``[0, inf)``: ``weight_decay * w`` is added to ``g``.
    amsgrad : bool, default False
        Use the running maximum ``vmax`` of ``v`` in the denominator (AMSGrad).

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number, or ``amsgrad`` is not True or
        False.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    rule: ClassVar[Rule] = Rule.ADAM
    lazy_mode: ClassVar[bool] = True
    n_slots: ClassVar[int] = 3


@dataclass(frozen=True)
class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    PyTorch (``AdamW``): first ``w <- w (1 - lr weight_decay)`` (decayed entries only), then the Adam step on
    the loss gradient alone. Unlike L2 added to ``g``, the decay is not rescaled by the adaptive denominator.
    The book has no AdamW (Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019). State slots as
    :class:`Adam`.

    Parameters
    ----------
    beta1 : float, default 0.9
        Decay of the first-moment average ``m``, in ``[0, 1)``.
    beta2 : float, default 0.999
        Decay of the second-moment average ``v``, in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the denominator outside the square root, in ``(0, inf)``.
    weight_decay : float, default 0.01
        Decoupled decay coefficient, in ``[0, inf)``: each step first multiplies the decayed weights by
        ``1 - lr weight_decay``.
    amsgrad : bool, default False
        Use the running maximum ``vmax`` of ``v`` in the denominator (AMSGrad).

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range or not a finite real number, or ``amsgrad`` is not True or
        False.
    """

    weight_decay: float = 0.01
    rule: ClassVar[Rule] = Rule.ADAMW
    decoupled_decay: ClassVar[bool] = True


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": AdamW,
}


def make(method: str, **hyper: float | bool) -> Optimizer:
    """The optimizer spec named ``method``, with ``hyper`` overriding its defaults.

    Parameters
    ----------
    method : str
        A key of :data:`OPTIMIZERS`: "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam" or "adamw".
    **hyper : float or bool
        Hyperparameters of that spec's class, by their field names (for instance ``beta2=0.99`` for Adam);
        the others keep the class's defaults.

    Returns
    -------
    Optimizer
        An instance of ``OPTIMIZERS[method]``.

    Raises
    ------
    ValueError
        For an unknown method, an unknown hyperparameter name, or a value out of range.
    """
    try:
        cls = OPTIMIZERS[method]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {method!r}; choose one of {sorted(OPTIMIZERS)}.") from None
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hyper) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no hyperparameter {', '.join(map(repr, unknown))}; "
                         f"it accepts {sorted(names)}.")
    return cls(**hyper)


def clip_grad_norm(grad: np.ndarray, max_norm: float) -> float:
    """Scale ``grad`` in place so its L2 norm is at most ``max_norm``; return the norm before clipping.

    As ``torch.nn.utils.clip_grad_norm_``: ``grad *= min(1, max_norm / (norm + 1e-6))``, so a NaN entry (a NaN
    norm) makes every entry NaN and an infinite norm makes the finite entries zero. The norm is summed in float64
    for either dtype.

    Parameters
    ----------
    grad : ndarray of shape (n,), float32 or float64
        The gradient, non-empty, C-contiguous and writeable; scaled in place.
    max_norm : float
        The largest L2 norm to leave, finite and > 0.

    Returns
    -------
    float
        The L2 norm of ``grad`` before clipping (NaN or inf when ``grad`` holds such entries).

    Raises
    ------
    ValueError
        If ``grad`` is not a non-empty, C-contiguous, writeable 1-D float32 or float64 ndarray, or ``max_norm``
        is not a finite number > 0.
    """
    _check_vector("grad", grad)
    if not grad.flags.writeable:  # (Cython's "buffer source array is read-only" named nothing)
        raise ValueError("grad must be writeable; clip_grad_norm scales it in place.")
    _check_in_range("clip_grad_norm", "max_norm", max_norm, (0.0, math.inf, False, False))
    norm = _kernels.clip_grad_norm(grad, float(max_norm))
    if math.isnan(norm):  # torch multiplies by the NaN coefficient; the kernel's clip (shared with the epochs,
        grad *= grad.dtype.type(np.nan)  # which stop on a non-finite gradient first) leaves grad as it was
    return norm


# ---------------------------------------------------------------- learning-rate schedules
# Every schedule maps (lr0, epoch, max_epochs) to the learning rate of that epoch; epoch counts from 0 and the
# rate is constant within an epoch (the fused kernel runs a whole epoch at one rate). T = max(max_epochs - 1, 1)
# is the last epoch, where linear and cosine reach their floor end_factor * lr0 and stay after it.


def _constant(lr0, k, T, end_factor, power_t, gamma):
    return lr0


def _linear(lr0, k, T, end_factor, power_t, gamma):
    # Goodfellow, Bengio & Courville, *Deep Learning*, 2016, sec. 8.3.1: eps_k = (1 - a) eps_0 + a eps_T with a = k / T,
    # then constant.
    a = min(k / T, 1.0)
    return (1.0 - a) * lr0 + a * end_factor * lr0


def _invscaling(lr0, k, T, end_factor, power_t, gamma):
    try:
        return lr0 / float(k + 1) ** power_t  # scikit-learn's invscaling, per epoch
    except OverflowError:  # a huge power_t: the rate has decayed to nothing
        return 0.0


def _exponential(lr0, k, T, end_factor, power_t, gamma):
    return lr0 * gamma**k  # torch.optim.lr_scheduler.ExponentialLR


def _cosine(lr0, k, T, end_factor, power_t, gamma):
    # torch.optim.lr_scheduler.CosineAnnealingLR with T_max = T and eta_min = end_factor * lr0.
    floor = end_factor * lr0
    return floor + (lr0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(k / T, 1.0)))


# The named schedules' parameters and their defaults (LinearRegressor's, minimize's), defined once here.
SCHEDULE_DEFAULTS = {"end_factor": 0.01, "power_t": 0.5, "gamma": 0.95}

SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": _constant,
    "linear": _linear,
    "invscaling": _invscaling,
    "exponential": _exponential,
    "cosine": _cosine,
}


def schedule_lr(name: str, lr0: float, epoch: int, max_epochs: int, *,
                end_factor: float = SCHEDULE_DEFAULTS["end_factor"], power_t: float = SCHEDULE_DEFAULTS["power_t"],
                gamma: float = SCHEDULE_DEFAULTS["gamma"]) -> float:
    """Learning rate of ``epoch`` (0-based) under schedule ``name``.

    =========== ==========================================================================================
    constant    ``lr0``
    linear      ``(1 - a) lr0 + a end_factor lr0``, ``a = min(epoch / T, 1)`` (the linear decay of Goodfellow,
                Bengio & Courville, *Deep Learning*, 2016, sec. 8.3.1)
    invscaling  ``lr0 / (epoch + 1) ** power_t``
    exponential ``lr0 * gamma ** epoch``
    cosine      ``f + (lr0 - f) (1 + cos(pi min(epoch / T, 1))) / 2`` with ``f = end_factor lr0``
    =========== ==========================================================================================

    ``T = max(max_epochs - 1, 1)``: linear and cosine reach their floor at the last epoch and stay there.
    ``lr0`` is a finite non-negative number, ``epoch`` and ``max_epochs`` integers from 0.

    Parameters
    ----------
    name : {"constant", "linear", "invscaling", "exponential", "cosine"}
        The schedule, a key of :data:`SCHEDULES`.
    lr0 : float
        The initial learning rate, finite and >= 0.
    epoch : int
        The 0-based epoch, in ``[0, 2**62]``.
    max_epochs : int
        The number of epochs of the run, in ``[0, 2**62]``; sets ``T`` above.
    end_factor : float, default 0.01
        Floor of linear and cosine as a fraction of ``lr0``, in ``(0, 1]``.
    power_t : float, default 0.5
        Exponent of invscaling, in ``[0, inf)``.
    gamma : float, default 0.95
        Per-epoch factor of exponential, in ``(0, 1]``.

    Returns
    -------
    float
        The learning rate of ``epoch``.

    Raises
    ------
    ValueError
        If ``name`` is not a schedule's name, or ``lr0``, ``end_factor``, ``power_t``, ``gamma``, ``epoch`` or
        ``max_epochs`` is out of its range (or a number not finite).
    TypeError
        If ``epoch`` or ``max_epochs`` is not an integer (a bool is not).
    """
    if not (isinstance(name, str) and name in SCHEDULES):
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}.")
    # the estimator's ranges (a gamma above 1 overflowed deep into a run; a negative one flipped the rate's sign)
    for param, value, bounds in (("end_factor", end_factor, (0.0, 1.0, False, True)),
                                 ("power_t", power_t, (0.0, math.inf, True, False)),
                                 ("gamma", gamma, (0.0, 1.0, False, True))):
        _check_in_range("schedule_lr", param, value, bounds)
    # (a negative epoch divided by zero under invscaling; a NaN lr0 came back NaN)
    _check_in_range("schedule_lr", "lr0", lr0, (0.0, math.inf, True, False))
    epoch = _check_count("schedule_lr", "epoch", epoch, 0)
    max_epochs = _check_count("schedule_lr", "max_epochs", max_epochs, 0)  # (0: minimize's maxiter=0)
    return scheduled(name, lr0, epoch, max_epochs, end_factor, power_t, gamma)


def scheduled(name: str, lr0: float, epoch: int, max_epochs: int, end_factor: float, power_t: float,
              gamma: float) -> float:
    """:func:`schedule_lr` for arguments its caller has validated (the estimator's parameters).

    Nothing is checked: a rate made non-finite by non-finite data passes through, for the epoch to name the data.

    Parameters
    ----------
    name : str
        A key of :data:`SCHEDULES`.
    lr0 : float
        The initial learning rate.
    epoch : int
        The 0-based epoch.
    max_epochs : int
        The number of epochs of the run (``T = max(max_epochs - 1, 1)``).
    end_factor, power_t, gamma : float
        As in :func:`schedule_lr` (no defaults here).

    Returns
    -------
    float
        The learning rate of ``epoch``, as :func:`schedule_lr` computes it.
    """
    return float(SCHEDULES[name](float(lr0), int(epoch), max(int(max_epochs) - 1, 1), end_factor, power_t, gamma))

"""Update rules: SGD, SGD with momentum, Adam; and learning-rate schedules.

Each optimizer updates the parameters in place from gradients it may use as scratch space (the
model overwrites them on its next step anyway), keeps float32 state, and can hand that state to
a checkpoint and take it back (:meth:`Optimizer.state_dict`), so a resumed run continues bit
for bit. Python floats times float32 arrays stay float32, so nothing here promotes to float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from trainer.blas import Product, add_product, scale_add

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "step")


class Optimizer:
    """Holds the parameters, the current learning rate ``lr`` and a step count.

    When the parameters are consecutive views of one vector (as :class:`~trainer.mlp.MLP`
    makes them), the update runs once over that vector rather than once per array: for a
    784-128-10 model the three small arrays would otherwise cost more in NumPy call overhead
    than the big one costs in arithmetic. Every update rule here is elementwise, so the result
    is the same either way.
    """

    takes_products = False
    """Whether :meth:`step` accepts weight gradients as unevaluated :class:`Product` s."""
    momentum = 0.0
    """The velocity decay (Adam's beta1): may change between steps. Plain SGD has none."""

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float = 0.0) -> None:
        self.params = params
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        vector = joined(params)
        self.groups = [vector] if vector is not None else list(params)
        self._grads: tuple[list[np.ndarray], list[np.ndarray]] | None = None

    def step(self, grads: list[np.ndarray]) -> None:
        """Apply one update; ``grads`` (matching ``params``) are used as scratch space."""
        self.steps += 1
        for i, (p, g) in enumerate(zip(self.groups, self._grouped(grads), strict=True)):
            self.update(p, g, *self._group_state(i))

    def update(self, p: np.ndarray, g: np.ndarray, *state: np.ndarray) -> None:
        """The update rule, elementwise over ``p``, its gradient and its state arrays."""
        raise NotImplementedError

    def _group_state(self, i: int) -> tuple[np.ndarray, ...]:
        """Group ``i``'s state arrays (each shaped like its parameters) in ``update``'s order."""
        return ()

    def _grouped(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if len(self.groups) == len(grads):
            return grads
        if self._grads is None or self._grads[0] is not grads:  # the model reuses its list
            vector = joined(grads)
            if vector is None:
                vector = np.concatenate([g.ravel() for g in grads])
            self._grads = (grads, [vector])
        return self._grads[1]

    def _slots(self) -> dict[str, list[np.ndarray]]:
        """Per-group state arrays by name (none for plain SGD)."""
        return {}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays only (``steps`` as a 0-d int64), ready for ``np.savez``."""
        state = {"steps": np.array(self.steps, dtype=np.int64)}
        for name, arrays in self._slots().items():
            state.update({f"{name}{i}": a for i, a in enumerate(arrays)})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        for name, arrays in self._slots().items():
            for i, a in enumerate(arrays):
                saved = state[f"{name}{i}"]
                if saved.shape != a.shape:
                    raise ValueError(f"optimizer state {name}{i} has shape {saved.shape}")
                a[...] = saved


def joined(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The one contiguous 1-d array that ``arrays`` are consecutive views of, if there is one."""
    base = arrays[0].base if arrays else None
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous:
            return None
        if a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    return base if address == base.__array_interface__["data"][0] + base.nbytes else None


class SGD(Optimizer):
    """Plain stochastic gradient descent, the 2018 demo's optimizer.

    Weight decay is the classic L2 term, ``p -= lr * (g + wd * p)``, applied as a shrink of
    ``p`` by ``1 - lr * wd`` (the same thing, without a temporary).
    """

    takes_products = True

    def step(self, grads: list[np.ndarray | Product]) -> None:  # type: ignore[override]
        if not any(isinstance(g, Product) for g in grads):
            return super().step(grads)  # type: ignore[arg-type]
        self.steps += 1
        for p, g in zip(self.params, grads, strict=True):
            if isinstance(g, Product):
                add_product(p, g.a, g.b, -self.lr * g.alpha, 1 - self.lr * self.weight_decay)
            else:
                self.update(p, g)
        return None

    def update(self, p: np.ndarray, g: np.ndarray, *state: np.ndarray) -> None:
        scale_add(p, g, -self.lr, 1 - self.lr * self.weight_decay)


class Momentum(Optimizer):
    """Heavy-ball momentum as PyTorch does it: ``v = mu * v + g``; ``p -= lr * v``.

    Weight decay is coupled L2 (added to the gradient before the velocity), as in PyTorch's SGD.
    """

    def __init__(
        self, params: list[np.ndarray], lr: float, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum
        self.velocity = [np.zeros_like(p) for p in self.groups]

    def _slots(self) -> dict[str, list[np.ndarray]]:
        return {"velocity": self.velocity}

    def _group_state(self, i: int) -> tuple[np.ndarray, ...]:
        return (self.velocity[i],)

    def update(self, p: np.ndarray, g: np.ndarray, *state: np.ndarray) -> None:
        (v,) = state
        if self.weight_decay:
            scale_add(g, p, self.weight_decay)
        scale_add(v, g, 1.0, self.momentum)
        scale_add(p, v, -self.lr)


class Adam(Optimizer):
    """Adam with bias correction; weight decay is decoupled (AdamW): ``p *= 1 - lr * wd``.

    ``m`` and ``v`` are the usual first and second moment estimates. The update is
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1^t)`` and
    ``v_hat = v / (1 - beta2^t)``; the two corrections are folded into scalars so each step
    makes as few passes over the arrays as it can.
    """

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum, self.beta2, self.eps = beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in self.groups]
        self.v = [np.zeros_like(p) for p in self.groups]

    def _slots(self) -> dict[str, list[np.ndarray]]:
        return {"m": self.m, "v": self.v}

    def step(self, grads: list[np.ndarray]) -> None:
        t = self.steps + 1
        # sqrt(v_hat) + eps == (sqrt(v) + eps * c2) / c2, so p -= step_size * m / (sqrt(v) + eps')
        c2 = math.sqrt(1 - self.beta2**t)
        self._step_size = self.lr * c2 / (1 - self.momentum**t)
        self._eps = self.eps * c2
        super().step(grads)

    def _group_state(self, i: int) -> tuple[np.ndarray, ...]:
        return self.m[i], self.v[i]

    def update(self, p: np.ndarray, g: np.ndarray, *state: np.ndarray) -> None:
        m, v = state
        scale_add(m, g, 1 - self.momentum, self.momentum)
        np.multiply(g, g, out=g)
        scale_add(v, g, 1 - self.beta2, self.beta2)
        # The gradient is spent: its array holds the step from here on, so the update touches
        # one array fewer (for a large first layer the arrays outgrow the core's cache).
        denominator = np.sqrt(v, out=g)
        denominator += self._eps
        update = np.divide(m, denominator, out=g)
        # The decoupled weight decay rides on the same pass: p = (1 - lr * wd) * p - update.
        scale_add(p, update, -self._step_size, 1 - self.lr * self.weight_decay)


def make_optimizer(
    name: str,
    params: list[np.ndarray],
    lr: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> Optimizer:
    """The optimizer the protocol's ``Hyperparameters.optimizer`` names.

    ``momentum`` is the velocity decay for ``momentum`` and beta1 for ``adam``.
    """
    if name == "sgd":
        return SGD(params, lr, weight_decay)
    if name == "momentum":
        return Momentum(params, lr, momentum, weight_decay)
    if name == "adam":
        return Adam(params, lr, beta1=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def make_schedule(name: str, total_steps: int) -> Callable[[int], float]:
    """The factor the base learning rate is scaled by at step ``step`` (0-based) of a
    ``total_steps`` run (a factor, so a presenter can change the base rate mid-run).

    ``constant`` keeps 1; ``cosine`` follows half a cosine from 1 down to 0 at the last step;
    ``step`` divides by 10 at 50% and again at 75% of the run.
    """
    total = max(total_steps, 1)
    if name == "constant":
        return lambda step: 1.0
    if name == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if name == "step":
        return lambda step: 0.1 ** ((step >= total // 2) + (step >= total * 3 // 4))
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")

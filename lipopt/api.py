"""The one-call Python API: ``lipopt.bound(model, …)``.

::

    import lipopt
    result = lipopt.bound(torch_model, norm="2", input_shape=(1, 8, 8))
    result.upper, result.lower      # best certified upper bound, best lower bound
    result.rows                     # one BoundResult per method (and level)
    result.to_dict()                # the same object as `lipopt bound … --json`

In a notebook the result shows itself as a table. ``lipopt bound`` on the command line calls this
function, so the two give the same rows for the same request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .chain import AUTO, DEFAULT_TIME_LIMIT, ChainResult, bound_chain
from .errors import LipoptError
from .network import Network
from .progress import Progress


def bound(
    model: Any,
    norm: str = "inf",
    *,
    output: int | None = None,
    margin: tuple[int, int] | None = None,
    domain: Any = None,
    methods: Sequence[str] | str = AUTO,
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    max_memory_gb: float = 8.0,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    progress: bool | Progress = False,
    options: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> ChainResult:
    """Certified bounds on the Lipschitz constant of ``model``.

    Without ``output``/``margin`` the quantity is the network's constant, the ℓp→ℓp norm of its
    Jacobian (ℓ∞: the maximum over output rows); with one of them, that scalar target's.

    Args:
        model: a ``torch.nn.Module`` (give ``input_shape`` for convolutions; residual blocks are
            traced), an ``onnx.ModelProto``, a file path (``.npz``, ``.pt``/``.pth``/``.pt2``,
            ``.onnx``) or a :class:`~lipopt.network.Network`.
        norm: input norm ``"inf"``, ``"2"`` or ``"1"``.
        output, margin: bound output ``i`` or the margin ``f_i − f_j`` instead.
        domain: ``None`` (global), a box ``(lo, hi)`` (scalars or vectors), ``{"center": x0,
            "eps": r}`` for the ℓ∞ ball ``x0 ± r`` (``"x0"`` as the centre uses the one stored in
            the network file), or a :class:`~lipopt.problems.Domain`.
        methods: registered method names, or ``"auto"`` (default): the automatic chain chooses
            for this network, norm and domain and says why in ``result.plan``. The lower-bound
            search always runs.
        levels: hierarchy indices, one list for every method with a hierarchy (``lp``: level k,
            ``sdp``: order d) or ``{method: [levels]}``.
        time_limit: seconds per step (default 300; ``None``: no limit).
        max_memory_gb: steps estimated above this are refused before building.
        seed: seed of the lower-bound search and of randomized solvers.
        input_shape: shape of one input sample, e.g. ``(1, 28, 28)``.
        progress: ``True`` for a bar on stderr, or a :class:`~lipopt.progress.Progress` that
            receives every step's ``step(name)`` and ``report(**figures)`` calls (a branch and
            bound reports ``upper``, ``lower``, ``gap``, ``nodes``): record them to plot how a
            bound converges.
        options: per method (options group) a mapping of its Options fields.
        trust_pickle: allow loading a pickled ``.pt`` model (runs code from the file: only for
            files you trust).
    """
    from .problems import make_domain, make_target

    net = _network(model, input_shape, trust_pickle)
    target = make_target(net, output=output, margin=None if margin is None else tuple(margin))
    if not (isinstance(methods, str) and methods == AUTO):
        methods = list(methods)
        if "lower" not in methods:
            methods.append("lower")
    return bound_chain(
        net,
        norm,
        methods,
        levels,
        target,
        _domain(net, domain, make_domain),
        seed=seed,
        time_limit=time_limit,
        max_memory_bytes=float(max_memory_gb) * 1e9,
        progress=progress,
        options=options,
    )


def _network(model: Any, input_shape: Sequence[int] | None, trust_pickle: bool) -> Network:
    from .loaders import load_network

    if isinstance(model, Network) and input_shape is None:
        return model
    kwargs: dict[str, Any] = {"input_shape": None if input_shape is None else tuple(input_shape)}
    if trust_pickle and isinstance(model, str | os.PathLike):
        kwargs["trust_pickle"] = True
    return load_network(model, **kwargs)


def _domain(net: Network, domain: Any, make_domain) -> Any:
    from .problems import Domain

    if domain is None or isinstance(domain, Domain):
        return domain
    if isinstance(domain, Mapping):
        unknown = set(domain) - {"center", "eps"}
        if unknown or "center" not in domain or "eps" not in domain:
            raise LipoptError("a domain mapping needs exactly the keys 'center' and 'eps'")
        center = domain["center"]
        if isinstance(center, str) and center == "x0":
            if net.x0 is None:
                raise LipoptError("domain center 'x0': the network stores no x0; give the centre as a vector")
            center = net.x0
        return make_domain(net, center=np.asarray(center, dtype=float), eps=float(domain["eps"]))
    if isinstance(domain, tuple | list) and len(domain) == 2:
        return make_domain(net, box=(domain[0], domain[1]))
    raise LipoptError(
        "domain must be None (global), a box (lo, hi), {'center': x0, 'eps': r} or a Domain, "
        f"got {type(domain).__name__}"
    )

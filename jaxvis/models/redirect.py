"""Lucid's redirected ReLU gradient, for any JAX model: its ReLUs are found in the traced program.

:func:`redirected_relu` is ``relu`` whose gradient, while a switch is on, lets the cotangent through
where it would push a never-firing unit up (Lucid's ``redirected_relu_grad``), so a filter that is dead
at its start image can still be reached. :func:`with_redirected_relus` applies it to every
``jax.nn.relu`` / ``jax.nn.relu6`` call (Flax's ``nn.relu`` is ``jax.nn.relu``) of a function: it traces
the function to a jaxpr and evaluates that jaxpr with those calls replaced. Everything else is bound as
traced, so outputs are the function's own, bit for bit. ReLUs inside ``lax`` control flow (``scan``,
``cond``, ``while``) keep their usual gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend import core as jcore


@jax.custom_vjp
def redirected_relu(x: jax.Array, active: jax.Array) -> jax.Array:
    """``relu(x)`` whose gradient, while ``active`` (a 0-d float, 1.0 = on), is Lucid's redirected one.

    Forward: exactly ``jax.nn.relu``. Backward, for each batch entry (leading axis) whose ReLU gradient
    is zero everywhere (the unit never fired, so nothing would flow back), the cotangent passes through
    where it pushes the input *up* (cotangent > 0: the quantity being differentiated is maximized, as
    in jaxvis; Lucid differentiates a loss and tests ``grad < 0``), instead of being blocked. With
    ``active == 0`` or any entry that already has gradient, the gradient is ``relu``'s.
    """
    return jax.nn.relu(x)


def _rr_fwd(x, active):
    return jax.nn.relu(x), (x, active)


def _rr_bwd(res, g):
    x, active = res
    relu_g = jnp.where(x > 0, g, jnp.zeros_like(g))
    redirected = jnp.where((x <= 0) & (g < 0), jnp.zeros_like(g), g)
    blocked = jnp.sum(jnp.abs(relu_g).reshape(relu_g.shape[0], -1), axis=1) == 0
    blocked = blocked.reshape((-1,) + (1,) * (x.ndim - 1)) & (active > 0)
    return jnp.where(blocked, redirected, relu_g), jnp.zeros_like(active)


redirected_relu.defvjp(_rr_fwd, _rr_bwd)


def redirected_relu6(x: jax.Array, active: jax.Array) -> jax.Array:
    """``relu6(x) = min(relu(x), 6)`` with :func:`redirected_relu`'s gradient below 0."""
    return jnp.minimum(redirected_relu(x, active), 6.0)


def with_redirected_relus(fn):
    """``fn(*args) -> out`` as ``g(active, *args) -> out`` with every ReLU redirected while ``active``."""
    def wrapped(active, *args):
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        out = _eval(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), active)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)
    return wrapped


def _relu_kind(eqn) -> str | None:
    """'relu' / 'relu6' when ``eqn`` is a ``custom_jvp_call`` of ``jax.nn.relu`` / ``relu6``: its body is
    the jitted function of that name computing ``max(x, 0)`` (then ``min(., 6)``); inside ``shard_map``
    the constants come through ``pvary``."""
    if eqn.primitive.name != 'custom_jvp_call':
        return None
    body, name = eqn.params['call_jaxpr'].jaxpr, None
    while len(body.eqns) == 1 and body.eqns[0].primitive.name in ('jit', 'pjit') and 'jaxpr' in body.eqns[0].params:
        name = body.eqns[0].params.get('name', name)
        body = body.eqns[0].params['jaxpr'].jaxpr
    ops = [e.primitive.name for e in body.eqns if e.primitive.name != 'pvary']
    if name == 'relu' and ops == ['max']:
        return 'relu'
    if name == 'relu6' and ops == ['max', 'min']:
        return 'relu6'
    return None


def _eval(jaxpr, consts, args, active):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = val
    for v, val in zip(jaxpr.invars, args):
        env[v] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        kind = _relu_kind(eqn)
        if kind is not None:
            x = invals[eqn.params['num_consts']]
            outs = [(redirected_relu if kind == 'relu' else redirected_relu6)(x, active)]
        elif eqn.primitive.name in ('jit', 'pjit') and 'jaxpr' in eqn.params:
            inner = eqn.params['jaxpr']
            outs = _eval(inner.jaxpr, inner.consts, invals, active)
        else:
            with eqn.ctx.manager:  # as jax.core.eval_jaxpr binds an equation
                outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for v, val in zip(eqn.outvars, outs):
            env[v] = val
    return [read(v) for v in jaxpr.outvars]

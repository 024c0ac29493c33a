"""Fixed-point sigmoid, exp, reciprocal and division against numpy, within the documented errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spdz_testkit import setup_from_input

from mpc.errors import ConfigError
from mpc.session import Session
from parties.testing import run_local
from protocols import spdz
from protocols.spdz import functions as fn

ULP = 2.0**-16


def encoded(x: np.ndarray) -> np.ndarray:
    """What the engine holds for an input (round to the nearest 2^-16)."""
    return np.round(np.asarray(x) / ULP) * ULP


def plain_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / 2))  # no overflow warnings for large |x|


async def prog_functions(s: Session, inp: dict[str, Any]) -> Any:
    setup_from_input(s, inp)
    x = await spdz.input(s, inp["x"], owner=0)
    e = await spdz.input(s, inp["e"], owner=0)
    r = await spdz.input(s, inp["r"], owner=s.n_parties - 1)
    rounds = {}
    outs = []
    for name, make in [
        ("piecewise", lambda: fn.sigmoid(x)),
        ("clip", lambda: fn.sigmoid(x, method="clip")),
        ("exp", lambda: fn.exp(e)),
        ("reciprocal", lambda: fn.reciprocal(r)),
    ]:
        start = s.stats.rounds
        outs.append(make())
        await spdz.flush(s)
        rounds[name] = s.stats.rounds - start
    outs += [fn.divide(x[: r.shape[0]], r), fn.exp(e * 0.25, bound=4), spdz.sigmoid(x.reshape(1, -1))]
    return rounds, await spdz.reveal(s, outs)


def inputs(n: int, seed: bytes, x: np.ndarray, e: np.ndarray, r: np.ndarray) -> list[dict[str, Any]]:
    out = [{"seed": seed, "x": None, "e": None, "r": None} for _ in range(n)]
    out[0].update(x=x, e=e)
    out[-1]["r"] = r
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_functions_within_documented_error(seed: bytes, n: int) -> None:
    size = 201 if n == 2 else 41
    x = np.concatenate([np.linspace(-20, 20, size), [-1e4, 1e4, 0.0, -10.0, 10.0, 2.0, -2.0]])
    e = np.linspace(-16, 16, size)
    r = np.concatenate([2.0 ** np.linspace(-8, 21.99, size), [2.0**-8, 1.0, 3.0, 2.0**21]])
    for rounds, (pw, clip, ex, rc, div, ex4, pw2) in run_local(prog_functions, inputs(n, seed, x, e, r)):
        assert rounds == {"piecewise": 9, "clip": 7, "exp": 16, "reciprocal": 22}
        ex_ = encoded(x)
        assert np.max(np.abs(pw - plain_sigmoid(ex_))) <= 1e-4
        assert pw2.shape == (1, x.size) and np.max(np.abs(pw2[0] - plain_sigmoid(ex_))) <= 1e-4
        assert np.max(np.abs(clip - np.clip(ex_ / 4 + 0.5, 0, 1))) <= ULP
        assert np.max(np.abs(clip - plain_sigmoid(ex_))) <= 0.1193
        ee = encoded(e)
        assert np.all(np.abs(ex - np.exp(ee)) <= 16 * 2.0**-15 * np.exp(ee) + 3 * ULP)
        assert np.all(np.abs(ex4 - np.exp(ee * 0.25)) <= 4 * 2.0**-15 * np.exp(ee * 0.25) + 3 * ULP)
        er = encoded(r)
        assert np.all(np.abs(rc - 1 / er) <= 2.0**-15 + 2.0**-13 / er)
        q = ex_[: r.size] / er
        assert np.all(np.abs(div - q) <= np.abs(ex_[: r.size]) * (2.0**-15 + 2.0**-13 / er) + 2 * ULP)


async def prog_polyval(s: Session, inp: dict[str, Any]) -> Any:
    setup_from_input(s, inp)
    u = await spdz.input(s, inp["x"], owner=0)
    k = await spdz.input(s, np.array([1, -1, 2]), owner=0)  # integers are promoted
    return await spdz.reveal(s, [fn.polyval(u, [0.25, -1.0, 0.5, 0.125]), fn.polyval(u, [3.0]), fn.sigmoid(k)])


def test_polyval_and_integer_operands(seed: bytes) -> None:
    u = np.linspace(-1, 1, 9)
    for p, c, sk in run_local(prog_polyval, [{"seed": seed, "x": u}, {"seed": seed, "x": None}]):
        np.testing.assert_allclose(p, 0.25 - u + 0.5 * u**2 + 0.125 * u**3, atol=4 * ULP)
        np.testing.assert_array_equal(c, np.full(u.shape, 3.0))
        assert np.max(np.abs(sk - plain_sigmoid(np.array([1.0, -1.0, 2.0])))) <= 1e-4


def test_function_parameters_are_checked(seed: bytes) -> None:
    async def prog(s: Session, inp: Any) -> Any:
        setup_from_input(s, {"seed": seed})
        x = spdz.constant(s, np.ones(2))
        with pytest.raises(ConfigError):
            fn.sigmoid(x, method="tanh")
        with pytest.raises(ConfigError):
            fn.exp(x, bound=32)
        with pytest.raises(ConfigError):
            fn.sigmoid(np.ones(2))  # type: ignore[arg-type]
        return await spdz.reveal(s, fn.exp(x, bound=1))

    for res in run_local(prog, [None, None]):
        np.testing.assert_allclose(res, np.e, atol=2 * 2.0**-15 * np.e + 3 * ULP)

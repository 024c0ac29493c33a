"""Exact comparisons: the bitwise protocol without a network, then the operators against numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spdz_testkit import BitsOnly, dealers, drive, mac_key, open_checked, prog_less_reveal, setup_from_input

from mpc.errors import ConfigError, MacCheckFailure, PreprocessingExhausted
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz
from protocols.spdz import compare as cmp
from protocols.spdz import online
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.shares import AuthShare
from transport.faults import Fault, FaultPlan

EDGES = np.array(
    [0, 1, -1, 2, -2, 3, 2**61, -(2**61), 2**62, -(2**62), 2**62 - 1, 2**63 - 1, -(2**63), -(2**63) + 1, 12345, -12345],
    dtype=np.int64,
)
WANTS = [cmp.Want(lt=True), cmp.Want(lt=False, eq=True), cmp.Want(lt=True, eq=True)]


def share(ds: list[InsecureDealer], x: np.ndarray) -> list[AuthShare]:
    masks = [d.input_masks(0, x.shape) for d in ds]
    d = online.input_masked(x, masks[0].value)  # type: ignore[arg-type]
    return [online.input_share(m.mask, d, i, ds[i].mac_key_share()) for i, m in enumerate(masks)]


def expected(x: np.ndarray, want: cmp.Want) -> np.ndarray:
    out = []
    if want.lt:
        out.append(x < 0)
    if want.eq:
        out.append(x == 0)
    return np.stack(out).astype(np.uint64)


# -- the protocol, all parties simulated ------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("want", WANTS, ids=["lt", "eq", "both"])
@pytest.mark.parametrize("masks", [True, False], ids=["masks", "bits"])
def test_compare_steps_exact_on_edges_and_random(prg: PRG, seed: bytes, n: int, want: cmp.Want, masks: bool) -> None:
    x = np.concatenate([EDGES, prg.uint64(300).view(np.int64), prg.uint64(4).view(np.int64) >> np.int64(2)])
    wrap = (lambda d: d) if masks else BitsOnly
    need = cmp.cost(want, x.size, wrap(dealers(1, seed)[0])) + spdz.Requirements(input_masks={0: x.size})
    ds = dealers(n, seed, capacity=need)
    xs = share(ds, x.view(np.uint64))
    provs = [wrap(d) for d in ds]
    gens = [cmp.compare_steps(d, i, d.mac_key_share(), xi, want) for i, (d, xi) in enumerate(zip(provs, xs))]
    results, rounds = drive(gens)
    assert rounds == cmp.rounds(want) == 6
    np.testing.assert_array_equal(open_checked(results, mac_key(ds)), expected(x, want))
    assert all(v == 0 for d in ds for v in d.remaining().values())  # consumed exactly cost()


@pytest.mark.parametrize("shape", [(), (3, 1, 2)])
def test_compare_steps_keep_shape(prg: PRG, seed: bytes, shape: tuple[int, ...]) -> None:
    ds = dealers(2, seed)
    x = prg.uint64(shape)
    gens = [cmp.compare_steps(d, i, d.mac_key_share(), xi, WANTS[2]) for i, (d, xi) in enumerate(zip(ds, share(ds, x)))]
    results, _ = drive(gens)
    out = open_checked(results, mac_key(ds))
    assert out.shape == (2, *shape)
    np.testing.assert_array_equal(out, expected(x.view(np.int64), WANTS[2]))


def test_compare_steps_need_their_preprocessing(seed: bytes) -> None:
    want = cmp.Want(lt=True)
    short = cmp.cost(want, 4, dealers(1, seed)[0])
    short = spdz.Requirements(triples=short.triples - 1, comparison_masks=4, input_masks={0: 4})
    ds = dealers(2, seed, capacity=short)
    xs = share(ds, np.arange(4, dtype=np.uint64))
    gens = [cmp.compare_steps(d, i, d.mac_key_share(), xi, want) for i, (d, xi) in enumerate(zip(ds, xs))]
    with pytest.raises(PreprocessingExhausted):
        drive(gens)


def test_leaf_tables_match_the_plain_circuit(prg: PRG) -> None:
    """Evaluate the LTZ/EQZ leaves and tree on plain bits: the circuit itself is right."""
    c, r = prg.uint64(2000), prg.uint64(2000)
    c[:4] = r[:4]  # x = 0
    cv, rv = cmp.chunk_values(c), cmp.chunk_values(r)
    g_t, p_t = cmp.ltz_leaves(cv)
    pick = np.take_along_axis
    g = pick(g_t, rv[..., None].astype(np.int64), axis=-1)[..., 0]
    p = pick(p_t, rv[..., None].astype(np.int64), axis=-1)[..., 0]
    e = pick(cmp.eqz_leaves(cv), rv[..., None].astype(np.int64), axis=-1)[..., 0]
    with np.errstate(over="ignore"):
        while g.shape[1] > 1:
            g, p = g[:, 1::2] + p[:, 1::2] * g[:, 0::2], p[:, 1::2] * p[:, 0::2]
            e = e[:, 1::2] * e[:, 0::2]
        x = (c - r).view(np.int64)
    np.testing.assert_array_equal(g[:, 0], (x < 0).astype(np.uint64))
    np.testing.assert_array_equal(e[:, 0], (x == 0).astype(np.uint64))


@pytest.mark.parametrize("n", [2, 3])
def test_select_with_stacked_tables_matches_the_table(prg: PRG, seed: bytes, n: int) -> None:
    """``select`` evaluates public tables on shared 2-bit values, tables broadcast over the bits."""
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    m = 40
    bits = [d.bits((2, 1, m)) for d in ds]
    r0, r1 = [b[0] for b in bits], [b[1] for b in bits]
    gens = [cmp.multiply_steps(d, [a], [b]) for d, a, b in zip(ds, r0, r1)]
    products, _ = drive(gens)
    q = [res[0] for res in products]
    table = prg.uint64((2, m, 4))
    out = [cmp.select(table, a, b, qi, i, d.mac_key_share()) for i, (d, a, b, qi) in enumerate(zip(ds, r0, r1, q))]
    v = (open_checked(r0, alpha) + 2 * open_checked(r1, alpha)).astype(np.intp)  # (1, m)
    expected = np.take_along_axis(table, np.broadcast_to(v, (2, m))[..., None], axis=-1)[..., 0]
    np.testing.assert_array_equal(open_checked(out, alpha), expected)


def test_cost_table(seed: bytes) -> None:
    assert cmp.cost(cmp.Want(lt=True)).counts() == {"triples": 89, "bits": 64, "random_values": 1}
    assert cmp.cost(cmp.Want(lt=False, eq=True)).triples == 63
    assert cmp.cost(cmp.Want(lt=True, eq=True), 10).triples == 1200
    dealer = dealers(1, seed)[0]
    assert cmp.cost(cmp.Want(lt=True), 2, dealer).counts() == {"triples": 114, "comparison_masks": 2}
    assert cmp.cost(cmp.Want(lt=False, eq=True), 1, dealer).triples == 31
    assert cmp.cost(cmp.Want(lt=True, eq=True), 1, BitsOnly(dealer)).triples == 120
    # a dealer limited to a reservation without masks serves comparisons from bits
    limited = InsecureDealer(0, 1, seed, allow_insecure=True, capacity=cmp.cost(cmp.Want(lt=True), 3))
    assert not limited.offers_comparison_masks and cmp.mask_source(limited) is None
    assert cmp.cost(cmp.Want(lt=True), 3, limited) == cmp.cost(cmp.Want(lt=True), 3)
    with pytest.raises(ConfigError):
        cmp.Want(lt=False, eq=False)


# -- the operators on the mesh, against numpy --------------------------------------------------------


async def prog_ops(s: Session, inp: dict[str, Any]) -> Any:
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True)
    spdz.setup(s, BitsOnly(dealer) if inp["provider"] == "bits" else dealer)
    xs = await spdz.input_all(s, inp["x"])
    a, b = xs[0], xs[-1]
    start = s.stats.rounds
    outs = [a < b, a <= b, a > b, a >= b, a == b, a != b, a.sign(), a < 0, 0 > b, a == 0]
    await spdz.flush(s)
    rounds = s.stats.rounds - start  # every comparison above in one batch
    outs += [abs(a), a.relu(), spdz.maximum(a, b), spdz.minimum(a, b)]
    return rounds, await spdz.reveal(s, outs)


def int_pairs(prg: PRG, n: int) -> list[np.ndarray]:
    big = 2**62 - 1
    base = np.array([0, 1, -1, 2**61, -(2**61), big, -big, 5, 5, -7, 0, big], dtype=np.int64)
    other = np.array([0, 0, 1, 2**61, 2**61, -big, big, 5, 6, -7, -1, big - 1], dtype=np.int64)
    rnd = [(prg.uint64(8) >> np.uint64(2)).view(np.int64) - np.int64(2**61) for _ in range(n)]
    return [np.concatenate([base if i == 0 else other, rnd[i]]) for i in range(n)]


@pytest.mark.parametrize("n,provider", [(2, "masks"), (3, "masks"), (5, "masks"), (3, "bits")])
def test_integer_comparisons_match_numpy(prg: PRG, seed: bytes, n: int, provider: str) -> None:
    xs = int_pairs(prg, n)
    a, b = xs[0], xs[-1]
    for rounds, got in run_local(prog_ops, [{"seed": seed, "x": x, "provider": provider} for x in xs]):
        assert rounds == 6
        want = [a < b, a <= b, a > b, a >= b, a == b, a != b, np.sign(a), a < 0, 0 > b, a == 0, np.abs(a),
                np.maximum(a, 0), np.maximum(a, b), np.minimum(a, b)]
        for g, w in zip(got, want):
            assert g.dtype == np.int64
            np.testing.assert_array_equal(g, w.astype(np.int64))


async def prog_fixed_ops(s: Session, inp: dict[str, Any]) -> Any:
    setup_from_input(s, inp)
    a, b = await spdz.input_all(s, inp["x"])
    k = spdz.constant(s, np.array([1, -2, 0, 3, 0, 0]))
    outs = [a < b, a >= 0.5, 2.25 > a, np.array([0.0, 1, 2, 3, 4, 5]) < a, a == b, a < k, a.relu(), abs(a),
            spdz.maximum(a, b), spdz.minimum(a, -0.75), a.sign()]
    return await spdz.reveal(s, outs)


def test_fixed_point_comparisons_match_numpy(seed: bytes) -> None:
    a = np.array([-3.5, 0.5, 2.25, -0.0, 1e6, -2.0**45])
    b = np.array([-3.5, 0.5 + 2**-16, 2.0, 0.0, -1e6, 2.0**45])
    for got in run_local(prog_fixed_ops, [{"seed": seed, "x": a}, {"seed": seed, "x": b}]):
        k = np.array([1, -2, 0, 3, 0, 0])
        want = [a < b, a >= 0.5, 2.25 > a, np.arange(6.0) < a, a == b, a < k, np.maximum(a, 0), np.abs(a),
                np.maximum(a, b), np.minimum(a, -0.75), np.sign(a)]
        for i, (g, w) in enumerate(zip(got, want)):
            if i < 6 or i == 10:
                assert g.dtype == np.int64, i
            np.testing.assert_array_equal(g, w, err_msg=str(i))  # exact: inputs are representable


async def prog_reductions(s: Session, inp: dict[str, Any]) -> Any:
    setup_from_input(s, inp)
    x = await spdz.input(s, inp["x"], owner=0)
    outs = [x.max(), x.min(), x.max(axis=0), x.min(axis=1), x.argmax(axis=1), x.argmin(axis=0), x.argmax(),
            x.argmax(axis=-1, one_hot=True), x.argmin(axis=0, one_hot=True), x.argmax(one_hot=True)]
    idx, best = spdz.argmax(x, axis=1, with_value=True)
    outs += [idx, best, spdz.reduce_max(x[:1], axis=0), x[:, :1].argmax(axis=1)]
    return await spdz.reveal(s, outs)


@pytest.mark.parametrize("n,kind", [(2, "int"), (3, "int"), (5, "int"), (2, "fixed"), (3, "fixed")])
def test_reductions_match_numpy(prg: PRG, seed: bytes, n: int, kind: str) -> None:
    x = (prg.below(9, (5, 7)) - 4).astype(np.int64)  # small range: many ties
    x[2, :] = 3  # a row of equal values
    x[4, 6] = 2**61 if kind == "int" else 4
    data: Any = x if kind == "int" else x / 4
    for got in run_local(prog_reductions, [{"seed": seed, "x": data}] + [{"seed": seed, "x": None}] * (n - 1)):
        d = data
        want = [d.max(), d.min(), d.max(axis=0), d.min(axis=1), d.argmax(axis=1), d.argmin(axis=0), d.argmax(),
                np.eye(7)[d.argmax(axis=-1)], np.eye(5)[d.argmin(axis=0)], np.eye(35)[d.argmax()],
                d.argmax(axis=1), d.max(axis=1), d[:1].max(axis=0), d[:, :1].argmax(axis=1)]
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(g, w, err_msg=str(i))


async def prog_reduction_rounds(s: Session, inp: dict[str, Any]) -> Any:
    setup_from_input(s, inp)
    x = await spdz.input(s, inp["x"], owner=0)
    start = s.stats.rounds
    m = x.max(axis=1)
    i = x.argmax(axis=1, one_hot=True)
    await spdz.flush(s)
    return s.stats.rounds - start, await spdz.reveal(s, [m, i])


def test_reduction_rounds_follow_the_tournament(prg: PRG, seed: bytes) -> None:
    x = prg.below(100, (3, 5)).astype(np.int64)
    for rounds, (m, i) in run_local(prog_reduction_rounds, [{"seed": seed, "x": x}, {"seed": seed, "x": None}]):
        assert rounds == 3 * 7  # ceil(lg 5) levels of a comparison (6) and a selection (1), shared
        np.testing.assert_array_equal(m, x.max(axis=1))
        np.testing.assert_array_equal(i, np.eye(5)[x.argmax(axis=1)])


def test_reduction_errors(seed: bytes) -> None:
    async def prog(s: Session, inp: Any) -> Any:
        setup_from_input(s, {"seed": seed})
        x = spdz.constant(s, np.zeros((2, 0), dtype=np.int64))
        with pytest.raises(ConfigError):
            x.max(axis=1)
        with pytest.raises(ConfigError):
            x.max(axis=2)
        with pytest.raises(ConfigError):
            spdz.less(1, 2)
        return await spdz.reveal(s, x < 1)  # empty: no protocol, an empty result

    for res in run_local(prog, [None, None]):
        assert res.shape == (2, 0)


# -- active security ------------------------------------------------------------------------------


def _off(b: AuthShare, delta: int) -> AuthShare:
    """``b`` with every value share (not the MAC shares) off by ``delta``.

    A wrong share that never reaches an opened value changes nothing (e.g. a bit of a chunk
    whose leaf the public ``c`` does not select), so the cheater errs everywhere: some error
    then reaches an opening for sure.
    """
    data = b.data.copy()
    data.lo[0] += np.uint64(delta)  # wraps modulo 2^64
    return AuthShare(data)


class BadBits(InsecureDealer):
    """A cheating party's provider: its shares of random bits (or pair products) are off by ``delta``."""

    def __init__(self, *args: Any, delta: int, where: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delta, self._where = delta, where

    def bits(self, shape: tuple[int, ...]) -> AuthShare:
        return _off(super().bits(shape), self._delta)

    def comparison_masks(self, count: int) -> Any:
        mask = super().comparison_masks(count)
        if self._where == "bits":
            return type(mask)(mask.value, _off(mask.bits, self._delta), mask.pair_products)
        if self._where == "value":
            return type(mask)(_off(mask.value, self._delta), mask.bits, mask.pair_products)
        return type(mask)(mask.value, mask.bits, _off(mask.pair_products, self._delta))


async def prog_cheat_bits(s: Session, inp: dict[str, Any]) -> Any:
    where = inp["where"]
    if s.party_id == 1:
        prov: Any = BadBits(s.party_id, s.n_parties, inp["seed"], allow_insecure=True, delta=inp["delta"], where=where)
    else:
        prov = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True)
    spdz.setup(s, BitsOnly(prov) if where == "plain-bits" else prov)
    xs = await spdz.input_all(s, inp["x"])
    return await spdz.reveal(s, xs[0] < xs[-1])


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("delta", [1, 2**63])
@pytest.mark.parametrize("where", ["bits", "value", "pairs", "plain-bits"])
def test_tampered_bit_share_fails_everywhere(prg: PRG, seed: bytes, n: int, delta: int, where: str) -> None:
    xs = [(prg.below(100, (4,)) - 50).astype(np.int64) for _ in range(n)]
    ins = [{"seed": seed, "x": x, "delta": delta, "where": where} for x in xs]
    outcomes = run_parties(prog_cheat_bits, ins, recv_timeout=2.0)
    for o in outcomes:
        assert isinstance(o.error, MacCheckFailure), (o.name, o.error)


@pytest.mark.parametrize("after,offset", [(1, -33), (3, -65), (6, -65)])
def test_transport_tamper_of_a_comparison_open_fails_everywhere(prg: PRG, seed: bytes, after: int, offset: int) -> None:
    """A tampered opening never yields a wrong output: every party aborts, or all are correct.

    Data frame 1 from party-1 is its share of the masked values (a (2, 4) array: low limbs, then
    high ones); offset -33 hits the top byte of the last low limb: a change modulo 2^64, always
    caught. Later frames are tree levels ((2, m) arrays with m from 4 to ~120), where offset -65
    may hit a high limb instead: a change only in bits 64-127 of an opened value, which does not
    change any result modulo 2^64, and which SPDZ2k's check catches only with probability
    1 - 2^-(128 - bit) (here at least 63/64). So the property asserted is correctness or
    unanimous abort, and for the low-limb case, abort.
    """
    xs = [(prg.below(100, (4,)) - 50).astype(np.int64) for _ in range(3)]
    plan = FaultPlan([Fault("tamper", src="party-1", dst="party-0", after=after, offset=offset, mask=0x04)])
    outcomes = run_parties(prog_less_reveal, [{"seed": seed, "x": x} for x in xs], faults=plan, recv_timeout=1.0)
    errors = [o.error for o in outcomes]
    if after == 1 or any(e is not None for e in errors):
        assert all(isinstance(e, MacCheckFailure) for e in errors), errors
    else:
        expected = (xs[0] < xs[1]).astype(np.int64)
        for o in outcomes:
            assert np.array_equal(np.asarray(o.result).astype(np.int64), expected)
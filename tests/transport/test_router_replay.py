"""The router's replay state: exact (same rule as a set of every tag) and bounded in size.

A second message with the same ``(peer, tag)`` in a session is rejected ("replay"), the first
stands and the session goes on; the state behind the rule holds one run of ``k`` per
``(peer, key)`` (plus one per gap, plus tags not of the form ``key#k``), whatever the number
of messages, and only tags the program received.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.errors import ConfigError, ProtocolViolation
from transport.link import Delivered
from transport.router import Router, RouterChannel, _TagSet

PARTIES = ("alice", "bob", "carol")
OPEN = "/spdz#0/open"  # a key as mpc.Session makes them: tags f"{OPEN}#{k}"

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


async def _send(peer: str, session_id: str, tag: str, payload: Any) -> int:
    return 1


def msg(tag: str, payload: Any = 1, nbytes: int = 10) -> Delivered:
    return Delivered(session_id="s1", tag=tag, payload=payload, nbytes=nbytes)


def make(**limits: int) -> tuple[Router, RouterChannel]:
    router = Router("alice", _send, recv_timeout=1.0, **limits)
    return router, router.open_channel("s1", PARTIES)


def runs_of(ch: RouterChannel, peer: str, key: str) -> list[Any]:
    return ch._state.received.runs[peer][key]


def replays(router: Router) -> int:
    return router.stats()["dropped"].get("replay", 0)


async def take(router: Router, ch: RouterChannel, peer: int, tag: str, payload: Any = 1) -> None:
    """The message arrives first, then the program receives it."""
    router.deliver(PARTIES[peer], msg(tag, payload))
    assert await ch.recv(peer, tag) == payload


async def test_replay_below_the_run_end_rejected_and_the_session_goes_on() -> None:
    router, ch = make()
    for k in range(10):
        await take(router, ch, 1, f"{OPEN}#{k}", k)
    assert runs_of(ch, "bob", OPEN) == ["10", 0, 10]
    for k in (0, 5, 9):
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(f"{OPEN}#{k}", "again"))
    assert replays(router) == 3
    await take(router, ch, 1, f"{OPEN}#10", "next")
    await take(router, ch, 2, f"{OPEN}#0", "carol's own")  # another peer: another message
    assert router.stats()["replay_entries"] == 2


async def test_out_of_order_k_kept_as_runs_and_replays_rejected() -> None:
    router, ch = make()
    for k in (5, 7, 3):
        await take(router, ch, 1, f"{OPEN}#{k}", k)
    assert runs_of(ch, "bob", OPEN) == ["8", 3, 4, 5, 6, 7, 8]
    assert ch._state.received.entries == 3
    for k in (3, 5, 7):  # each in a run of its own (above, between and below the gaps)
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(f"{OPEN}#{k}"))
    await take(router, ch, 1, f"{OPEN}#4")  # fills a gap: two runs merge
    assert runs_of(ch, "bob", OPEN) == ["8", 3, 6, 7, 8] and ch._state.received.entries == 2
    await take(router, ch, 1, f"{OPEN}#6")
    assert runs_of(ch, "bob", OPEN) == ["8", 3, 8] and ch._state.received.entries == 1
    for k in (4, 6):
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(f"{OPEN}#{k}"))
    await take(router, ch, 1, f"{OPEN}#0")  # below every run: a run of its own
    assert runs_of(ch, "bob", OPEN) == ["8", 0, 1, 3, 8]
    assert replays(router) == 5


async def test_replay_of_a_buffered_message_rejected_the_first_stands() -> None:
    router, ch = make()
    await take(router, ch, 1, f"{OPEN}#0")
    for k in (1, 9, 4):  # the next k, and k ahead of it
        router.deliver("bob", msg(f"{OPEN}#{k}", f"first {k}"))
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(f"{OPEN}#{k}", f"second {k}"))
    for k in (1, 9, 4):
        assert await ch.recv(1, f"{OPEN}#{k}") == f"first {k}"
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(f"{OPEN}#{k}", f"third {k}"))
    assert replays(router) == 6
    assert runs_of(ch, "bob", OPEN) == ["10", 0, 2, 4, 5, 9, 10]


async def test_replay_after_delivery_to_a_waiting_receive_rejected() -> None:
    router, ch = make()
    await take(router, ch, 1, f"{OPEN}#0")
    for k in (1, 5):  # the next k (prepared by the receive), and one ahead of it
        task = asyncio.create_task(ch.recv(1, f"{OPEN}#{k}"))
        await asyncio.sleep(0)
        router.deliver("bob", msg(f"{OPEN}#{k}", "first"))
        with pytest.raises(ProtocolViolation, match="replayed"):  # before the receive resumes
            router.deliver("bob", msg(f"{OPEN}#{k}", "second"))
        with pytest.raises(ProtocolViolation, match="already received"):
            await ch.recv(1, f"{OPEN}#{k}")
        assert await task == "first"
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(f"{OPEN}#{k}", "third"))
    assert runs_of(ch, "bob", OPEN) == ["6", 0, 2, 5, 6]


async def test_tags_without_a_round_counter_get_replay_protection() -> None:
    router, ch = make()
    tags = ["t", "hello", "a/b", "control-like"]
    for tag in tags:
        await take(router, ch, 1, tag, tag)
    for tag in tags:
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(tag))
        with pytest.raises(ProtocolViolation, match="already received"):
            await ch.recv(1, tag)
    await take(router, ch, 2, "t", "carol")
    assert ch._state.received.exact == {("bob", t) for t in tags} | {("carol", "t")}
    assert replays(router) == len(tags)


async def test_non_canonical_k_are_distinct_exact_tags_that_cannot_alias() -> None:
    router, ch = make()
    canonical = ["x#1", "x#10"]
    others = [
        "x#01", "x#001", "x#+1", "x#-1", "x# 1", "x#1 ", "x#1_0", "x#010", "x#0x1",
        "x#\u0661", "x#\u00b9", "x#", "#1", "#0", "x#" + "9" * 19, "x#" + "1" * 40,
    ]  # fmt: skip
    # Aliases first, then the canonical form: each is a message of its own.
    for tag in others + canonical:
        await take(router, ch, 1, tag, tag)
    seen = ch._state.received
    assert runs_of(ch, "bob", "x") == ["11", 1, 2, 10, 11]
    assert seen.exact == {("bob", t) for t in others}
    assert seen.entries == 2 + len(others)
    for tag in others + canonical:
        with pytest.raises(ProtocolViolation, match="replayed"):
            router.deliver("bob", msg(tag))
    assert replays(router) == len(others) + len(canonical)
    # Never received: "x#0", "x#2", "x#9" are not aliases of anything above.
    for tag in ("x#0", "x#2", "x#9"):
        await take(router, ch, 1, tag, tag)
    assert runs_of(ch, "bob", "x") == ["11", 0, 3, 9, 11]


async def test_state_stays_bounded_after_100000_in_order_messages() -> None:
    router, ch = make()
    keys = [OPEN, "/spdz#0/mac-seed", "/spdz#0/input#3/open"]
    n = 100_000
    for i in range(n):
        key = keys[i % 3]
        tag = f"{key}#{i // 3}"
        if i % 100 == 0:  # sometimes the receive waits for the message
            task = asyncio.create_task(ch.recv(1, tag))
            await asyncio.sleep(0)
            router.deliver("bob", msg(tag, i))
            assert await task == i
        else:
            router.deliver("bob", msg(tag, i))
            assert await ch.recv(1, tag) == i
        await ch.send(2, tag, i)
    seen, sent = ch._state.received, ch._state.sent
    assert seen.entries == 3 and not seen.exact
    assert {key: runs_of(ch, "bob", key) for key in keys} == {
        OPEN: ["33334", 0, 33334],
        "/spdz#0/mac-seed": ["33333", 0, 33333],
        "/spdz#0/input#3/open": ["33333", 0, 33333],
    }
    assert sent.entries == 3 and len(sent.runs["carol"]) == 3
    assert router.stats()["replay_entries"] == 3
    assert ch.stats.messages_received == n
    with pytest.raises(ProtocolViolation, match="replayed"):
        router.deliver("bob", msg(f"{OPEN}#17"))


async def test_out_of_order_flood_fails_the_session_at_the_buffer_bound() -> None:
    router, ch = make(max_buffered_messages=4)
    await take(router, ch, 1, f"{OPEN}#0")
    for k in (10**17, 999_999, 10**30, 3):  # wildly ahead, and beyond 18 digits
        router.deliver("bob", msg(f"{OPEN}#{k}"))
    assert router.stats()["replay_entries"] == 1  # buffered messages are not recorded
    with pytest.raises(ProtocolViolation, match="overflow"):
        router.deliver("bob", msg(f"{OPEN}#77"))
    with pytest.raises(ProtocolViolation, match="overflow"):
        await ch.recv(1, f"{OPEN}#3")
    with pytest.raises(ProtocolViolation, match="failed session"):
        router.deliver("carol", msg(f"{OPEN}#0"))
    assert router.stats()["buffered_messages"] == 0


async def test_replay_state_beyond_its_bound_fails_the_session() -> None:
    router, ch = make(max_replay_entries=3)
    for k in (0, 2, 4):  # three runs (the program receives every other round of bob's)
        await take(router, ch, 1, f"{OPEN}#{k}")
    await take(router, ch, 1, f"{OPEN}#5")  # extends a run: no new entry
    router.deliver("bob", msg(f"{OPEN}#8"))
    with pytest.raises(ProtocolViolation, match="replay state overflow"):
        await ch.recv(1, f"{OPEN}#8")
    with pytest.raises(ProtocolViolation, match="replay state overflow"):
        await ch.recv(2, "anything")
    with pytest.raises(ProtocolViolation, match="failed session"):
        router.deliver("bob", msg(f"{OPEN}#9"))
    assert router.stats()["dropped"] == {"replay-overflow": 1, "failed-session": 1}

    # The same through a waiting receive: the delivery fails the session.
    router, ch = make(max_replay_entries=2)
    await take(router, ch, 1, "t")
    await take(router, ch, 2, "t")
    task = asyncio.create_task(ch.recv(1, "u"))
    await asyncio.sleep(0)
    with pytest.raises(ProtocolViolation, match="replay state overflow"):
        router.deliver("bob", msg("u"))
    with pytest.raises(ProtocolViolation, match="replay state overflow"):
        await task
    with pytest.raises(ConfigError):
        Router("alice", _send, max_replay_entries=0)


async def test_close_clears_the_replay_state() -> None:
    router, ch = make()
    for k in range(3):
        await take(router, ch, 1, f"{OPEN}#{2 * k}")
        await ch.send(2, f"{OPEN}#{k}", k)
    await take(router, ch, 2, "t")
    state = ch._state
    assert state.received.entries == 4 and state.sent.entries == 1
    await ch.close()
    assert state.received.entries == 0 and state.sent.entries == 0
    assert not state.received.exact and not any(state.received.runs.values())
    assert not any(state.sent.runs.values())
    ch2 = router.open_channel("s1", PARTIES)
    await take(router, ch2, 1, f"{OPEN}#0", "new session")


async def test_failed_send_frees_its_tag_wherever_it_is_in_the_runs() -> None:
    calls = {"n": 0}

    async def flaky(peer: str, session_id: str, tag: str, payload: Any) -> int:
        calls["n"] += 1
        if payload == "fail":
            raise ConnectionError("down")
        return 1

    ch = Router("alice", flaky).open_channel("s1", PARTIES)
    for k in range(6):
        await ch.send(1, f"{OPEN}#{k}", k)
    with pytest.raises(ProtocolViolation, match="already sent"):
        await ch.send(1, f"{OPEN}#3", "again")
    with pytest.raises(ConnectionError):
        await ch.send(1, f"{OPEN}#6", "fail")
    assert ch._state.sent.runs["bob"][OPEN] == ["6", 0, 6]
    await ch.send(1, f"{OPEN}#6", 6)  # the failed send did not take the tag
    with pytest.raises(ProtocolViolation, match="already sent"):
        await ch.send(1, f"{OPEN}#6", "again")


# -- the same rule as a plain set: property tests --------------------------------------------

_TAGS = st.one_of(
    st.integers(0, 12).map(lambda k: f"{OPEN}#{k}"),
    st.integers(0, 4).map(lambda k: f"/a#{k}/b#{k % 2}"),
    st.sampled_from(["t", "x#01", "x#1", "x#", "#2", "/a#0/b#00", f"{OPEN}#007"]),
)
_OPS = st.lists(
    st.tuples(st.sampled_from(["deliver", "recv", "wait"]), st.sampled_from([1, 2]), _TAGS),
    max_size=60,
)


@FUZZ
@given(_OPS)
def test_replay_decisions_match_a_set_of_every_tag(ops: list[tuple[str, int, str]]) -> None:
    """Messages delivered before their receive ("recv" takes a buffered one) or into a waiting
    one ("wait" starts a receive), in any order, against a set of every (peer, tag) accepted."""

    async def run() -> None:
        router, ch = make(max_buffered_messages=1000)
        accepted: set[tuple[str, str]] = set()  # the reference: every (peer, tag) accepted
        buffered: set[tuple[str, str]] = set()
        waiting: dict[tuple[str, str], asyncio.Task[Any]] = {}
        handed: list[tuple[asyncio.Task[Any], str]] = []
        for op, peer, tag in ops:
            key = (PARTIES[peer], tag)
            if op == "deliver":
                if key in accepted:
                    with pytest.raises(ProtocolViolation, match="replayed"):
                        router.deliver(key[0], msg(tag))
                    continue
                router.deliver(key[0], msg(tag, tag))
                accepted.add(key)
                if key in waiting:
                    handed.append((waiting.pop(key), tag))
                else:
                    buffered.add(key)
            elif key in buffered:
                assert await ch.recv(peer, tag) == tag
                buffered.discard(key)
            elif key in waiting:
                with pytest.raises(ProtocolViolation, match="already being awaited"):
                    await ch.recv(peer, tag)
            elif key in accepted:
                with pytest.raises(ProtocolViolation, match="already received"):
                    await ch.recv(peer, tag)
            elif op == "wait":
                waiting[key] = asyncio.create_task(ch.recv(peer, tag))
                await asyncio.sleep(0)
        for task, tag in handed:
            assert await task == tag
        for task in waiting.values():
            task.cancel()
        # The state is the canonical form of the tags handed to receives.
        expected = _TagSet(PARTIES[1:])
        for key in sorted(accepted - buffered):
            assert expected.add(key)
        state = ch._state.received
        assert (state.runs, state.exact, state.entries) == (
            expected.runs,
            expected.exact,
            expected.entries,
        )

    asyncio.run(run())


def test_tag_set_discard_splits_and_trims_runs() -> None:
    tags = _TagSet(["p"])
    for k in range(6):
        assert tags.add(("p", f"{OPEN}#{k}"))
    assert not tags.add(("p", f"{OPEN}#3"))
    tags.discard(("p", f"{OPEN}#2"))  # splits [0, 6)
    assert tags.runs["p"][OPEN] == ["6", 0, 2, 3, 6] and tags.entries == 2
    assert [k for k in range(7) if ("p", f"{OPEN}#{k}") in tags] == [0, 1, 3, 4, 5]
    for k in (0, 5, 9):  # trims a run's start and end; absent: nothing
        tags.discard(("p", f"{OPEN}#{k}"))
    assert tags.runs["p"][OPEN] == ["5", 1, 2, 3, 5] and tags.entries == 2
    for k in (1, 3, 4):
        tags.discard(("p", f"{OPEN}#{k}"))
    assert tags.runs["p"] == {} and tags.entries == 0
    tags.add(("p", "t"))
    tags.discard(("p", "t"))
    assert not tags.exact and tags.entries == 0


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(["p", "q"]),
            st.one_of(st.integers(0, 6).map(lambda k: f"{OPEN}#{k}"), _TAGS),
        ),
        max_size=80,
    )
)
def test_tag_set_add_and_discard_match_a_set(ops: list[tuple[bool, str, str]]) -> None:
    tags = _TagSet(["p", "q"])
    reference: set[tuple[str, str]] = set()
    for add, peer, tag in ops:
        key = (peer, tag)
        if add:
            assert tags.add(key) == (key not in reference)
            reference.add(key)
        else:
            tags.discard(key)
            reference.discard(key)
        assert all((k in tags) == (k in reference) for k in [key, *reference])
    rebuilt = _TagSet(["p", "q"])
    for key in sorted(reference):
        rebuilt.add(key)
    assert (tags.runs, tags.exact, tags.entries) == (rebuilt.runs, rebuilt.exact, rebuilt.entries)

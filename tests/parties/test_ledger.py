"""Privacy-budget ledger: refusal before overspending, durability across kill -9, concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mpc.errors import BudgetExceeded, ConfigError, PolicyRefused
from parties.ledger import Budget, PrivacyLedger

ROOT = Path(__file__).resolve().parents[2]


def make(tmp_path: Path, eps: float = 1.0, delta: float = 1e-5) -> PrivacyLedger:
    return PrivacyLedger(tmp_path / "ledger.sqlite", {"cohort": Budget(eps, delta)})


def test_charges_add_up_and_overspend_is_refused(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.charge("cohort", "job-1", 0.4, 2e-6)
    ledger.charge("cohort", "job-2", 0.6, 3e-6)  # exactly the budget: allowed
    with pytest.raises(BudgetExceeded) as info:
        ledger.charge("cohort", "job-3", 0.01, 0.0)
    assert info.value.rule == "budget"
    assert [c.job_id for c in ledger.charges("cohort")] == ["job-1", "job-2"]
    spent = ledger.spent("cohort")
    assert spent.epsilon == pytest.approx(1.0) and spent.delta == pytest.approx(5e-6)
    assert ledger.remaining("cohort").epsilon == 0.0


def test_delta_budget_is_enforced_too(tmp_path: Path) -> None:
    ledger = make(tmp_path, eps=10.0, delta=1e-6)
    with pytest.raises(BudgetExceeded):
        ledger.charge("cohort", "job-1", 0.1, 2e-6)
    assert ledger.charges() == []


def test_refusals_for_bad_input_unknown_dataset_infinite_epsilon_and_duplicates(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    with pytest.raises(BudgetExceeded) as info:
        ledger.charge("other", "job-1", 0.1, 0.0)
    assert info.value.rule == "no-budget"
    with pytest.raises(BudgetExceeded):
        ledger.charge("cohort", "job-1", float("inf"), 0.0)
    for eps, delta in ((-0.1, 0.0), (float("nan"), 0.0), (0.1, 1.0), (0.1, -1e-9)):
        with pytest.raises(ConfigError):
            ledger.charge("cohort", "job-1", eps, delta)
    with pytest.raises(ConfigError):
        ledger.charge("", "job-1", 0.1, 0.0)
    ledger.charge("cohort", "job-1", 0.1, 0.0)
    with pytest.raises(PolicyRefused) as dup:
        ledger.charge("cohort", "job-1", 0.1, 0.0)
    assert dup.value.rule == "duplicate-charge" and not isinstance(dup.value, BudgetExceeded)
    with pytest.raises(ConfigError):
        PrivacyLedger(tmp_path / "x.sqlite", {"d": Budget(-1.0, 0.0)})


def test_audit_log_records_release_and_failure(tmp_path: Path) -> None:
    ledger = make(tmp_path)
    ledger.charge("cohort", "job-1", 0.2, 0.0)
    ledger.charge("cohort", "job-2", 0.3, 0.0)
    ledger.record_release("cohort", "job-1", ["hospital-a", "hospital-b"])
    ledger.record_failure("cohort", "job-2", "peer-unavailable")
    rows = {c.job_id: c for c in ledger.charges()}
    assert rows["job-1"].status == "released" and rows["job-1"].receivers == ("hospital-a", "hospital-b")
    assert rows["job-2"].status == "failed" and rows["job-2"].note == "peer-unavailable"
    assert ledger.spent("cohort").epsilon == pytest.approx(0.5)  # a failed job stays spent
    with pytest.raises(ConfigError):
        ledger.record_release("cohort", "job-9", [])


def test_survives_restart(tmp_path: Path) -> None:
    make(tmp_path).charge("cohort", "job-1", 0.7, 0.0)
    reopened = make(tmp_path)
    assert reopened.spent("cohort").epsilon == pytest.approx(0.7)
    with pytest.raises(BudgetExceeded):
        reopened.charge("cohort", "job-2", 0.5, 0.0)


CHARGE_THEN_HANG = """
import sys, time
from parties.ledger import Budget, PrivacyLedger
ledger = PrivacyLedger(sys.argv[1], {"cohort": Budget(1.0, 1e-5)})
ledger.charge("cohort", "job-1", 0.8, 1e-6)
print("charged", flush=True)
time.sleep(60)  # the noised output would be released here
"""


def test_charge_survives_kill_9_between_charge_and_release(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHARGE_THEN_HANG, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "charged", proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    ledger = PrivacyLedger(path, {"cohort": Budget(1.0, 1e-5)})
    [row] = ledger.charges("cohort")
    assert (row.job_id, row.epsilon, row.status) == ("job-1", 0.8, "charged")
    with pytest.raises(BudgetExceeded):
        ledger.charge("cohort", "job-2", 0.3, 0.0)


def test_concurrent_charges_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    make(tmp_path)  # create the schema once
    results: list[str] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        ledger = PrivacyLedger(path, {"cohort": Budget(1.0, 1e-5)})
        for i in range(10):
            try:
                ledger.charge("cohort", f"job-{w}-{i}", 0.1, 0.0)
                outcome = "ok"
            except BudgetExceeded:
                outcome = "refused"
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("ok") == 10 and results.count("refused") == 30
    assert make(tmp_path).spent("cohort").epsilon == pytest.approx(1.0)


CONCURRENT_CHARGER = """
import sys
from mpc.errors import BudgetExceeded
from parties.ledger import Budget, PrivacyLedger
ledger = PrivacyLedger(sys.argv[1], {"cohort": Budget(1.0, 1e-5)})
ok = 0
for i in range(10):
    try:
        ledger.charge("cohort", f"{sys.argv[2]}-{i}", 0.1, 0.0)
        ok += 1
    except BudgetExceeded:
        pass
print(ok)
"""


def test_concurrent_processes_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    make(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT_CHARGER, str(path), f"p{k}"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    counts = [int(p.communicate(timeout=30)[0]) for p in procs]
    assert sum(counts) == 10
    assert make(tmp_path).spent("cohort").epsilon == pytest.approx(1.0)

"""Job lifecycle (issue #3 §2): PENDING -> RUNNING -> (PREEMPTED -> PENDING) ->
COMPLETED | FAILED | CANCELLED as a transition table; illegal moves raise; history kept."""

from __future__ import annotations

import itertools

import pytest

from aifactory.workload.job import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransitionError,
    Job,
    JobState,
)

S = JobState

# The lifecycle as the issue draws it, plus the edges the issue's text implies: a pending
# job can be cancelled or rejected (failed) and a preempted one cancelled.
EXPECTED_LEGAL = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.FAILED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.PREEMPTED),
    (S.PREEMPTED, S.PENDING),
    (S.PREEMPTED, S.CANCELLED),
}

# Shortest legal path from a fresh job to each state.
PATH_TO = {
    S.PENDING: [],
    S.RUNNING: [S.RUNNING],
    S.PREEMPTED: [S.RUNNING, S.PREEMPTED],
    S.COMPLETED: [S.RUNNING, S.COMPLETED],
    S.FAILED: [S.FAILED],
    S.CANCELLED: [S.CANCELLED],
}


def job_in(state: JobState) -> Job:
    job = Job("j", "a", 0.0, 1, 10.0)
    for t, to in enumerate(PATH_TO[state], start=1):
        job.move(to, float(t))
    assert job.state == state
    return job


def test_table_is_the_issues_lifecycle() -> None:
    assert set(TRANSITIONS) == EXPECTED_LEGAL
    assert all(why for why in TRANSITIONS.values()), "every edge says why it exists"


@pytest.mark.parametrize(
    ("src", "dst"), sorted(EXPECTED_LEGAL), ids=lambda s: str(s.value) if isinstance(s, S) else s
)
def test_every_legal_transition_is_allowed_and_recorded(src: JobState, dst: JobState) -> None:
    job = job_in(src)
    before = list(job.history)
    job.move(dst, 99.0)
    assert job.state == dst
    assert job.history == [*before, (99.0, dst)]


ILLEGAL = sorted(set(itertools.product(S, S)) - EXPECTED_LEGAL)


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=[f"{a.value}->{b.value}" for a, b in ILLEGAL])
def test_every_illegal_transition_raises_and_changes_nothing(src: JobState, dst: JobState) -> None:
    job = job_in(src)
    before = list(job.history)
    with pytest.raises(IllegalTransitionError, match=f"{src.value} -> {dst.value}"):
        job.move(dst, 99.0)
    assert job.state == src
    assert job.history == before


def test_terminal_states_have_no_way_out() -> None:
    assert {S.COMPLETED, S.FAILED, S.CANCELLED} == TERMINAL
    for src, _dst in TRANSITIONS:
        assert src not in TERMINAL


def test_full_history_of_a_preempted_then_completed_job() -> None:
    job = Job("j", "a", 5.0, 8, 100.0)
    assert job.history == [(5.0, S.PENDING)]
    assert not job.done
    job.move(S.RUNNING, 6.0)
    job.move(S.PREEMPTED, 10.0)
    job.move(S.PENDING, 10.0)
    job.move(S.RUNNING, 20.0)
    job.move(S.COMPLETED, 130.0)
    assert job.done
    assert job.history == [
        (5.0, S.PENDING),
        (6.0, S.RUNNING),
        (10.0, S.PREEMPTED),
        (10.0, S.PENDING),
        (20.0, S.RUNNING),
        (130.0, S.COMPLETED),
    ]


def test_history_is_a_copy_and_can_be_replaced_whole() -> None:
    """The history keeps its first entries in the job and the rest in a list: reading it
    gives a new list; assigning it (as the forecast does) replaces every entry."""
    job = Job("j", "a", 5.0, 8, 100.0)
    job.history.append((7.0, S.RUNNING))  # a copy: the job's own history is unchanged
    assert job.history == [(5.0, S.PENDING)]
    entries = [(float(t), S.PENDING if t % 2 else S.RUNNING) for t in range(6)]
    job.history = entries
    assert job.history == entries
    job.history = [(1.0, S.PENDING)]
    job.move(S.RUNNING, 2.0)
    assert job.history == [(1.0, S.PENDING), (2.0, S.RUNNING)]
    job.history = []
    assert job.history == []


def test_bad_job_fields_name_the_field() -> None:
    with pytest.raises(ValueError, match="gpus"):
        Job("j", "a", 0.0, 0, 10.0)
    with pytest.raises(ValueError, match="duration_s"):
        Job("j", "a", 0.0, 1, 0.0)


def test_estimate_defaults_to_true_run_time() -> None:
    assert Job("j", "a", 0.0, 1, 42.0).estimate_s == 42.0
    assert Job("j", "a", 0.0, 1, 42.0, estimate_s=7.0).estimate_s == 7.0


@pytest.mark.parametrize("runs", [1, 2, 3], ids=["first-start", "in-fields", "in-list"])
def test_withdraw_start_undoes_the_last_start_only(runs: int) -> None:
    """A pass that takes back a start it made (scheduler core, ``_withdraw``) leaves the
    job pending with the history it had before, wherever that entry was stored."""
    job = Job("j", "a", 0.0, 8, 100.0)
    for r in range(1, runs):
        job.move(S.RUNNING, 10.0 * r)
        job.move(S.PREEMPTED, 10.0 * r + 5)
        job.move(S.PENDING, 10.0 * r + 5)
    before = job.history
    job.move(S.RUNNING, 99.0)
    with pytest.raises(IllegalTransitionError, match=r"no start at 98\.0"):
        job.withdraw_start(98.0)
    job.withdraw_start(99.0)
    assert job.state is S.PENDING
    assert job.history == before
    with pytest.raises(IllegalTransitionError):
        job.withdraw_start(99.0)  # pending: nothing to take back
    job.move(S.RUNNING, 100.0)  # and it can start again
    assert job.history == [*before, (100.0, S.RUNNING)]

"""The ordering rules of releases at stage boundaries (chalicelib.domain.lanes), as pure functions."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.domain import lanes
from chalicelib.domain.lanes import Contender, Deployed, Lane, Target

NOW = "2026-11-27T12:00:00.000Z"
TARGET = Target("hello--prod", "arn:aws:iam::123456789012:role/deploy", "stagecoach-x", 600)


def contender(n: int, approval: bool = False) -> Contender:
    """Release r<n>, received n-th."""
    return Contender(f"r{n}", f"2026-11-27T12:00:0{n}.000Z#r{n}", f"token-{n}", NOW, TARGET, approval=approval)


def empty() -> Lane:
    return Lane("hello", "prod")


def superseded(step: lanes.Step) -> dict[str, str]:
    return {s.release_id: s.by for s in step.superseded}


def test_a_free_lane_is_granted_at_once() -> None:
    step = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW)
    assert [g.release_id for g in step.granted] == ["r1"]
    assert step.lane.holder is not None and step.lane.holder.release_id == "r1"
    assert step.lane.holder.phase == lanes.DEPLOYING


def test_a_stage_with_approval_is_held_while_preparing() -> None:
    step = lanes.arrive(empty(), contender(1, approval=True), "SUPERSEDED", NOW)
    assert step.lane.holder is not None and step.lane.holder.phase == lanes.PREPARING


def test_an_older_release_arriving_behind_a_newer_holder_is_superseded_by_it() -> None:
    held = lanes.arrive(empty(), contender(2), "SUPERSEDED", NOW).lane
    step = lanes.arrive(held, contender(1), "SUPERSEDED", NOW)
    assert superseded(step) == {"r1": "r2"}
    assert step.superseded[0].token == "token-1"
    assert not step.lane.waiters


def test_the_newest_waiter_wins_and_older_waiters_are_superseded() -> None:
    lane = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW).lane
    step2 = lanes.arrive(lane, contender(2), "SUPERSEDED", NOW)
    assert step2.parked[0][0].release_id == "r2" and step2.parked[0][1] == "r1"
    step3 = lanes.arrive(step2.lane, contender(3), "SUPERSEDED", NOW)
    assert superseded(step3) == {"r2": "r3"}
    assert [w.release_id for w in step3.lane.waiters] == ["r3"]
    late = lanes.arrive(step3.lane, contender(2), "SUPERSEDED", NOW)  # r2 again (a redelivery): still older
    assert superseded(late) == {"r2": "r3"}


def test_a_newer_release_takes_over_a_holder_that_only_waits_for_approval() -> None:
    lane = lanes.arrive(empty(), contender(1, approval=True), "SUPERSEDED", NOW).lane
    waiting = lanes.approval_requested(lane, "r1", "approval-1", "SUPERSEDED", NOW)
    assert waiting.lane.holder is not None and waiting.lane.holder.phase == lanes.AWAITING_APPROVAL
    step = lanes.arrive(waiting.lane, contender(2, approval=True), "SUPERSEDED", NOW)
    assert step.preempt is not None and step.preempt.approval_token == "approval-1"
    taken = step.then(lanes.preempted(step.lane, step.preempt, "SUPERSEDED", NOW))
    assert superseded(taken) == {"r1": "r2"}
    assert taken.superseded[0].target == TARGET  # its change set can be deleted
    assert [g.release_id for g in taken.granted] == ["r2"]
    assert taken.lane.holder is not None and taken.lane.holder.release_id == "r2"


def test_an_approval_decided_first_keeps_the_holder_and_the_newer_one_waits() -> None:
    lane = lanes.arrive(empty(), contender(1, approval=True), "SUPERSEDED", NOW).lane
    lane = lanes.approval_requested(lane, "r1", "approval-1", "SUPERSEDED", NOW).lane
    decided = lanes.approval_decided(lane, "r1")
    step = lanes.arrive(decided, contender(2), "SUPERSEDED", NOW)
    assert step.preempt is None
    assert step.parked[0][1] == "r1"


def test_a_newer_waiter_wins_the_approval_boundary() -> None:
    lane = lanes.arrive(empty(), contender(1, approval=True), "SUPERSEDED", NOW).lane
    lane = lanes.arrive(lane, contender(2, approval=True), "SUPERSEDED", NOW).lane  # r1 still PREPARING
    step = lanes.approval_requested(lane, "r1", "approval-1", "SUPERSEDED", NOW)
    assert superseded(step) == {"r1": "r2"}
    assert step.superseded[0].token == "approval-1"
    assert [g.release_id for g in step.granted] == ["r2"]


def test_queued_mode_never_takes_over_and_keeps_arrival_order() -> None:
    lane = lanes.arrive(empty(), contender(1, approval=True), "QUEUED", NOW).lane
    lane = lanes.approval_requested(lane, "r1", "approval-1", "QUEUED", NOW).lane
    lane = lanes.arrive(lane, contender(3), "QUEUED", NOW).lane
    lane = lanes.arrive(lane, contender(2), "QUEUED", NOW).lane
    assert [w.release_id for w in lane.waiters] == ["r2", "r3"]
    step = lanes.depart(lane, "r1", None, "QUEUED", NOW)
    assert [g.release_id for g in step.granted] == ["r2"]
    assert [w.release_id for w in step.lane.waiters] == ["r3"]


def test_queued_mode_waits_for_an_older_release_still_on_its_way() -> None:
    blocked = lanes.arrive(empty(), contender(2), "QUEUED", NOW, blocker=lambda c: "r1")
    assert blocked.parked[0][1] == "r1"
    assert blocked.lane.holder is None
    still = lanes.advance(blocked.lane, "QUEUED", NOW, blocker=lambda c: "r1")
    assert not still.granted
    free = lanes.advance(blocked.lane, "QUEUED", NOW)
    assert [g.release_id for g in free.granted] == ["r2"]


def test_no_release_moves_a_stage_back_to_an_older_commit() -> None:
    deployed = Deployed("r5", contender(5).order, "5" * 40, "five", NOW)
    lane = replace(empty(), deployed=deployed)
    for mode in lanes.MODES:
        step = lanes.arrive(lane, contender(3), mode, NOW)
        assert superseded(step) == {"r3": "r5"}, mode
        assert step.lane.holder is None


def test_leaving_records_what_runs_and_lets_the_newest_waiter_in() -> None:
    lane = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW).lane
    lane = lanes.arrive(lane, contender(2), "SUPERSEDED", NOW).lane
    deployed = Deployed("r1", contender(1).order, "1" * 40, "one", NOW)
    step = lanes.depart(lane, "r1", deployed, "SUPERSEDED", NOW)
    assert step.lane.deployed == deployed
    assert [g.release_id for g in step.granted] == ["r2"]
    again = lanes.depart(step.lane, "r1", deployed, "SUPERSEDED", NOW)
    assert again.ignored and not again.granted


def test_a_failed_holder_leaves_the_stage_as_it_was() -> None:
    lane = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW).lane
    step = lanes.depart(lane, "r1", None, "SUPERSEDED", NOW)
    assert step.lane.holder is None and step.lane.deployed is None


def test_a_draining_stage_stays_closed_until_cloudformation_settles() -> None:
    lane = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW).lane
    lane = lanes.arrive(lane, contender(2), "SUPERSEDED", NOW).lane
    draining = lanes.depart(lane, "r1", None, "SUPERSEDED", NOW, drain=True)
    assert draining.lane.holder is not None and draining.lane.holder.phase == lanes.DRAINING
    assert not draining.granted
    late = lanes.arrive(draining.lane, contender(3), "SUPERSEDED", NOW)
    assert late.parked and not late.granted and late.preempt is None
    deployed = Deployed("r1", contender(1).order, "1" * 40, "one", NOW)
    done = lanes.finish_drain(late.lane, "r1", deployed, "SUPERSEDED", NOW)
    assert done.lane.deployed == deployed
    assert [g.release_id for g in done.granted] == ["r3"]


def test_a_holder_entering_again_is_granted_again() -> None:
    lane = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW).lane
    again = lanes.arrive(lane, replace(contender(1), token="token-1b"), "SUPERSEDED", NOW)
    assert [g.token for g in again.granted] == ["token-1b"]
    assert again.lane == lane


def test_a_holder_resumed_by_a_new_execution_holds_the_stage_for_its_new_change_set() -> None:
    lane = lanes.arrive(empty(), contender(1), "SUPERSEDED", NOW).lane
    resumed = replace(contender(1), token="token-1-r2", target=replace(TARGET, change_set_name="stagecoach-r2"))
    again = lanes.arrive(lane, resumed, "SUPERSEDED", NOW)
    assert [g.token for g in again.granted] == ["token-1-r2"]
    assert again.lane.holder is not None and lane.holder is not None
    assert again.lane.holder.target == resumed.target
    assert again.lane.holder.since == lane.holder.since  # the deadline still counts from the first grant


def test_a_waiter_that_ends_withdraws_and_the_next_goes_in() -> None:
    lane = lanes.arrive(empty(), contender(1), "QUEUED", NOW).lane
    lane = lanes.arrive(lane, contender(2), "QUEUED", NOW).lane
    lane = lanes.arrive(lane, contender(3), "QUEUED", NOW).lane
    step = lanes.withdraw(lane, "r2", "QUEUED", NOW)
    assert [w.release_id for w in step.lane.waiters] == ["r3"]
    assert not step.granted  # r1 still holds it


def test_four_quick_pushes_end_on_the_newest_and_supersede_the_rest() -> None:
    """Builds finish in any order; every boundary lets the newest through (prod needs approval)."""
    stages = ["dev", "test", "prod"]
    state = {s: Lane("hello", s) for s in stages}
    where: dict[str, int] = {}  # release → index of the stage it holds or waits for
    ended: dict[str, str] = {}

    def apply(stage: str, step: lanes.Step) -> None:
        state[stage] = step.lane
        for gone in step.superseded:
            ended[gone.release_id] = f"SUPERSEDED by {gone.by}"
            where.pop(gone.release_id, None)

    def enter(n: int, index: int) -> None:
        stage = stages[index]
        c = contender(n, approval=stage == "prod")
        where[c.release_id] = index
        step = lanes.arrive(state[stage], c, "SUPERSEDED", NOW)
        if step.preempt is not None:
            step = step.then(lanes.preempted(step.lane, step.preempt, "SUPERSEDED", NOW))
        apply(stage, step)
        for granted in step.granted:
            advance(granted.release_id)

    def advance(release_id: str) -> None:
        """A release in a stage finishes it (prod: asks for approval) and moves on."""
        index = where.get(release_id)
        if index is None:
            return
        stage = stages[index]
        if stage == "prod":
            apply(stage, lanes.approval_requested(state[stage], release_id, f"approve-{release_id}", "SUPERSEDED", NOW))
            return
        n = int(release_id[1:])
        deployed = Deployed(release_id, contender(n).order, str(n) * 40, "", NOW)
        step = lanes.depart(state[stage], release_id, deployed, "SUPERSEDED", NOW)
        apply(stage, step)
        enter(n, index + 1)
        for granted in step.granted:
            advance(granted.release_id)

    for n in (1, 3, 2, 4):  # the order the builds finished
        enter(n, 0)
    assert ended == {"r1": "SUPERSEDED by r3", "r2": "SUPERSEDED by r3", "r3": "SUPERSEDED by r4"}
    assert state["prod"].holder is not None and state["prod"].holder.release_id == "r4"
    assert state["dev"].deployed is not None and state["dev"].deployed.release_id == "r4"
    assert state["test"].deployed is not None and state["test"].deployed.release_id == "r4"


def test_a_resumed_holder_starts_the_stage_over_with_its_new_change_set() -> None:
    lane = lanes.arrive(empty(), contender(1, approval=True), "SUPERSEDED", NOW).lane
    lane = lanes.approval_requested(lane, "r1", "approval-1", "SUPERSEDED", NOW).lane
    later = "2026-11-27T13:00:00.000Z"
    resumed = replace(contender(1, approval=True), target=replace(TARGET, change_set_name="stagecoach-y"))
    step = lanes.arrive(lane, resumed, "SUPERSEDED", later)
    holder = step.lane.holder
    assert holder is not None
    assert (holder.target, holder.phase, holder.since, holder.approval_token) == (
        resumed.target,
        lanes.PREPARING,
        later,
        "",
    )


def test_a_pinned_stage_holds_automatic_releases_and_lets_explicit_ones_in() -> None:
    pinned = lanes.pin(empty(), lanes.Pin("r1", "1" * 40, "alice", NOW, "bad deploy"))
    held = lanes.arrive(pinned, contender(3), "SUPERSEDED", NOW)
    assert [h.release_id for h in held.held] == ["r3"] and held.lane.holder is None
    promote = replace(contender(2), explicit=True)
    assert [g.release_id for g in lanes.arrive(pinned, promote, "SUPERSEDED", NOW).granted] == ["r2"]
    waiting = lanes.arrive(empty(), contender(1), "QUEUED", NOW).lane
    waiting = lanes.arrive(waiting, contender(3), "QUEUED", NOW).lane
    waiting = lanes.pin(waiting, lanes.Pin("r0", "0" * 40, "alice", NOW, "bad deploy"))
    freed = lanes.depart(waiting, "r1", None, "QUEUED", NOW)
    assert [h.release_id for h in freed.held] == ["r3"] and not freed.granted  # a waiter from before the pin


def test_a_rollback_may_move_a_stage_back_and_is_never_superseded_by_order() -> None:
    deployed = Deployed("r5", contender(5).order, "5" * 40, "five", NOW)
    lane = replace(empty(), deployed=deployed)
    back = replace(contender(2), explicit=True, rollback=True)
    assert [g.release_id for g in lanes.arrive(lane, back, "SUPERSEDED", NOW).granted] == ["r2"]
    busy = lanes.arrive(empty(), contender(6), "SUPERSEDED", NOW).lane
    parked = lanes.arrive(busy, back, "SUPERSEDED", NOW)
    assert parked.parked and not parked.superseded


def test_a_stage_remembers_what_it_ran_before() -> None:
    lane = empty()
    for n in (1, 2, 3):
        lane = lanes.deploy(lane, Deployed(f"r{n}", contender(n).order, str(n) * 40, "", NOW))
    assert lane.deployed is not None and lane.deployed.release_id == "r3"
    assert [d.release_id for d in lane.history] == ["r2", "r1"]
    assert lanes.deploy(lane, lane.deployed).history == lane.history  # a redeploy adds nothing

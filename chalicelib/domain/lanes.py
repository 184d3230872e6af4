"""Who may deploy a stage next: the ordering rules of releases at stage boundaries, as pure functions.

A *lane* is one stage of one stack. At most one release *holds* it (from entering the stage until it
leaves it); others *wait* for it, parked on a Step Functions task token. The rules:

- **No regression**: a release never enters a stage that already runs a commit received after its own
  (``order`` compares when commits were received); it is superseded by the release that deployed it.
- **SUPERSEDED** (default): the newest ready release wins at every boundary. A release that arrives
  behind a newer holder or waiter is superseded at once; a newer arrival supersedes older waiters and
  a holder that only waits for approval (a running change set is never interrupted). At most one
  release waits per lane.
- **QUEUED**: releases take the stage strictly in the order they were received: a release waits while
  the lane is held, while an older release waits for it, or while an older release still in flight has
  not passed this stage yet.
- **Pins**: a stage rolled back is pinned; releases that are not an explicit promote or rollback stop
  there, HELD, until someone unpins it. A rollback is the one release that may move a stage back.

Every function returns a :class:`Step`: the new lane and what the caller must do (resume granted
releases, end superseded ones, record parked ones). The caller persists the lane conditionally on its
``version`` and retries from a fresh read when it lost a race.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

MODES = ("SUPERSEDED", "QUEUED")
DEFAULT_MODE = "SUPERSEDED"

# Phases of the holder. Only AWAITING_APPROVAL can be taken over by a newer release (SUPERSEDED mode),
# and only by killing the holder's approval task token first (whoever completes the token first wins).
PREPARING = "PREPARING"
AWAITING_APPROVAL = "AWAITING_APPROVAL"
DEPLOYING = "DEPLOYING"
DRAINING = "DRAINING"  # its release ended while CloudFormation still updates the stack: nobody may enter
# What a stage shows: its holder's phase, else how its last deploy ended, else IDLE (never deployed).
STAGE_STATES = (
    "IDLE",
    PREPARING,
    AWAITING_APPROVAL,
    DEPLOYING,
    DRAINING,
    "SUCCEEDED",
    "FAILED",
    "BLOCKED",
    "CANCELLED",
)


@dataclass(frozen=True)
class Target:
    """What a release deploys at the stage: the CloudFormation stack, its change set, its time limit."""

    cfn_stack_name: str
    role_arn: str
    change_set_name: str = ""
    deploy_timeout_seconds: int = 3600


@dataclass(frozen=True)
class Contender:
    """A release that wants to enter the stage, with the task token that resumes it.

    ``explicit``: a promote or rollback someone asked for; it passes a pin. ``rollback``: it may move the
    stage back to an older commit (nothing else may).
    """

    release_id: str
    order: str
    token: str
    since: str
    target: Target
    approval: bool = False
    explicit: bool = False
    rollback: bool = False


@dataclass(frozen=True)
class Holder:
    """The release in the stage."""

    release_id: str
    order: str
    phase: str
    since: str
    approval_token: str = ""
    target: Target | None = None


@dataclass(frozen=True)
class Deployed:
    """The release whose commit the stage runs."""

    release_id: str
    order: str
    sha: str
    message: str
    deployed_at: str


@dataclass(frozen=True)
class Pin:
    """A stage held on a release (after a rollback): automatic releases stop before it."""

    release_id: str
    sha: str
    by: str
    at: str
    reason: str


HISTORY = 20


@dataclass(frozen=True)
class Lane:
    """One stage of one stack: holder, waiters (oldest first), what it runs, what it ran before."""

    stack_id: str
    stage: str
    holder: Holder | None = None
    waiters: tuple[Contender, ...] = ()
    deployed: Deployed | None = None
    version: int = 0
    history: tuple[Deployed, ...] = ()  # what it ran before ``deployed``, newest first
    pin: Pin | None = None

    def waiter(self, release_id: str) -> Contender | None:
        """The waiting contender of that release, if any."""
        return next((w for w in self.waiters if w.release_id == release_id), None)

    def without_waiter(self, release_id: str) -> Lane:
        """The lane with that release no longer waiting."""
        return replace(self, waiters=tuple(w for w in self.waiters if w.release_id != release_id))

    def with_waiter(self, contender: Contender) -> Lane:
        """The lane with ``contender`` waiting (replacing an earlier wait of the same release)."""
        others = [w for w in self.waiters if w.release_id != contender.release_id]
        return replace(self, waiters=tuple(sorted([*others, contender], key=lambda w: w.order)))

    @property
    def status(self) -> str:
        """What the stage is doing now, for views: the holder's phase, else IDLE."""
        return self.holder.phase if self.holder else "IDLE"


@dataclass(frozen=True)
class Superseded:
    """A release that must end SUPERSEDED: ``token`` is the task to fail (empty if none is waiting);
    ``target`` is set when it held the stage (its change set is never executed and can go)."""

    release_id: str
    by: str
    token: str
    target: Target | None = None


@dataclass(frozen=True)
class Step:
    """The outcome of a lane event: the new lane and the effects the caller carries out."""

    lane: Lane
    granted: tuple[Contender, ...] = ()
    superseded: tuple[Superseded, ...] = ()
    parked: tuple[tuple[Contender, str], ...] = ()  # (contender, the release it waits behind)
    held: tuple[Contender, ...] = ()  # stopped by the stage's pin
    preempt: Holder | None = None  # kill this holder's approval token, then call ``preempted``
    ignored: str = ""  # why nothing happened (the event was a duplicate or came too late)

    def then(self, other: Step) -> Step:
        """This step followed by ``other`` (which started from this step's lane)."""
        return Step(
            lane=other.lane,
            granted=self.granted + other.granted,
            superseded=self.superseded + other.superseded,
            parked=self.parked + other.parked,
            held=self.held + other.held,
            preempt=other.preempt,
            ignored=other.ignored,
        )


# ``blocker(contender)`` answers, in QUEUED mode, the id of an older release still in flight that has
# not passed this stage yet (None when nothing older is on its way).
Blocker = Callable[[Contender], "str | None"]


def _no_blocker(_contender: Contender) -> str | None:
    return None


def _outdated_by(lane: Lane, contender: Contender) -> str | None:
    """The release that makes ``contender`` a regression on this stage, if any (a rollback never is; a
    redeploy of the very commit the stage runs is not either)."""
    deployed = lane.deployed
    if contender.rollback or deployed is None or deployed.release_id == contender.release_id:
        return None
    if deployed.order > contender.order or (deployed.order == contender.order and not contender.explicit):
        return deployed.release_id
    return None


def deploy(lane: Lane, deployed: Deployed) -> Lane:
    """The lane now runs ``deployed``; what it ran before goes to its history."""
    if lane.deployed is None or lane.deployed.release_id == deployed.release_id:
        return replace(lane, deployed=deployed)
    return replace(lane, deployed=deployed, history=(lane.deployed, *lane.history)[:HISTORY])


def pin(lane: Lane, pinned: Pin) -> Lane:
    """Pin the stage (a rollback): automatic releases stop before it."""
    return replace(lane, pin=pinned)


def unpin(lane: Lane, mode: str, now: str, blocker: Blocker = _no_blocker) -> Step:
    """Unpin the stage; nothing waits for it (held releases have ended), so nothing else happens."""
    return advance(replace(lane, pin=None), mode, now, blocker)


def _grant(lane: Lane, contender: Contender, now: str) -> Step:
    phase = PREPARING if contender.approval else DEPLOYING
    holder = Holder(contender.release_id, contender.order, phase, now, target=contender.target)
    return Step(lane=replace(lane.without_waiter(contender.release_id), holder=holder), granted=(contender,))


def arrive(lane: Lane, contender: Contender, mode: str, now: str, blocker: Blocker = _no_blocker) -> Step:
    """A release asks to enter the stage (first time, again after a busy stack, or after a restart)."""
    holder = lane.holder
    in_stage = holder is not None and holder.release_id == contender.release_id
    if lane.pin is not None and not contender.explicit and not in_stage:
        return Step(lane=lane.without_waiter(contender.release_id), held=(contender,))
    if holder is not None and holder.release_id == contender.release_id:
        # It already holds the lane: resume it again (after a busy stack: same change set, same deadline). A
        # resumed release runs in a new execution whose change set has another name: it starts the stage over
        # (its old approval token died with the old execution, its deadline counts from now).
        if holder.target == contender.target:
            return Step(lane=lane, granted=(contender,))
        phase = PREPARING if contender.approval else DEPLOYING
        fresh = replace(holder, target=contender.target, phase=phase, since=now, approval_token="")
        return Step(lane=replace(lane, holder=fresh), granted=(contender,))
    by = _outdated_by(lane, contender)
    if by is not None:
        return Step(
            lane=lane.without_waiter(contender.release_id),
            superseded=(Superseded(contender.release_id, by, contender.token),),
        )
    if mode == "QUEUED":
        return _arrive_queued(lane, contender, now, blocker)
    return _arrive_superseding(lane, contender, now)


def _arrive_queued(lane: Lane, contender: Contender, now: str, blocker: Blocker) -> Step:
    older_waiter = next((w for w in lane.waiters if w.order < contender.order), None)
    behind = (lane.holder.release_id if lane.holder else None) or (older_waiter.release_id if older_waiter else None)
    behind = behind or blocker(contender)
    if behind is None:
        return _grant(lane, contender, now)
    return Step(lane=lane.with_waiter(contender), parked=((contender, behind),))


def _arrive_superseding(lane: Lane, contender: Contender, now: str) -> Step:
    # A rollback is asked for by a person and goes to an older commit on purpose: it is never superseded by
    # newer releases (the pin it brings stops the automatic ones); it waits for the stage like any other.
    newer_waiter = next((w for w in reversed(lane.waiters) if w.order > contender.order), None)
    if newer_waiter is not None and not contender.rollback:
        lane = lane.without_waiter(contender.release_id)
        return Step(lane=lane, superseded=(Superseded(contender.release_id, newer_waiter.release_id, contender.token),))
    holder = lane.holder
    if holder is not None and holder.order > contender.order and not contender.rollback:
        lane = lane.without_waiter(contender.release_id)
        return Step(lane=lane, superseded=(Superseded(contender.release_id, holder.release_id, contender.token),))
    older = tuple(
        Superseded(w.release_id, contender.release_id, w.token)
        for w in lane.waiters
        if w.release_id != contender.release_id
    )
    lane = replace(lane, waiters=tuple(w for w in lane.waiters if w.release_id == contender.release_id))
    if holder is None:
        return Step(lane=lane, superseded=older).then(_grant(lane, contender, now))
    if holder.phase == AWAITING_APPROVAL and holder.approval_token:
        return Step(lane=lane.with_waiter(contender), superseded=older, preempt=holder)
    return Step(lane=lane.with_waiter(contender), superseded=older, parked=((contender, holder.release_id),))


def preempted(lane: Lane, holder: Holder, mode: str, now: str, blocker: Blocker = _no_blocker) -> Step:
    """The holder's approval token was killed by a newer waiter: the holder ends SUPERSEDED, the newest enters."""
    if lane.holder is None or lane.holder.release_id != holder.release_id:
        return advance(lane, mode, now, blocker)
    newest = lane.waiters[-1] if lane.waiters else None
    by = newest.release_id if newest else ""
    lane = replace(lane, holder=None)
    step = Step(lane=lane, superseded=(Superseded(holder.release_id, by, "", holder.target),))
    return step.then(advance(lane, mode, now, blocker))


def approval_decided(lane: Lane, release_id: str) -> Lane:
    """The holder's approval token was completed by someone else: it can no longer be taken over."""
    if lane.holder is None or lane.holder.release_id != release_id:
        return lane
    return replace(lane, holder=replace(lane.holder, phase=DEPLOYING, approval_token=""))


def approval_requested(
    lane: Lane, release_id: str, token: str, mode: str, now: str, blocker: Blocker = _no_blocker
) -> Step:
    """The holder waits for approval now (its change set is ready).

    In SUPERSEDED mode a newer release already waiting for the stage wins this boundary: the holder is
    superseded (its approval is never asked for) and the newer one enters.
    """
    holder = lane.holder
    if holder is None or holder.release_id != release_id:
        return Step(lane=lane, ignored=f"release {release_id} does not hold the stage")
    newest = lane.waiters[-1] if lane.waiters else None
    if mode != "QUEUED" and newest is not None and newest.order > holder.order:
        lane = replace(lane, holder=None)
        gone = Superseded(release_id, newest.release_id, token, holder.target)
        return Step(lane=lane, superseded=(gone,)).then(advance(lane, mode, now, blocker))
    waiting = replace(holder, phase=AWAITING_APPROVAL, approval_token=token)
    return Step(lane=replace(lane, holder=waiting))


def depart(
    lane: Lane,
    release_id: str,
    deployed: Deployed | None,
    mode: str,
    now: str,
    blocker: Blocker = _no_blocker,
    drain: bool = False,
) -> Step:
    """The holder leaves the stage (``deployed`` when its commit now runs there); the next one enters.

    ``drain`` keeps the lane closed (phase DRAINING) because CloudFormation is still changing the stack
    of a release that ended; ``finish_drain`` opens it once the stack settled.
    """
    holder = lane.holder
    if holder is None or holder.release_id != release_id:
        return Step(lane=lane.without_waiter(release_id), ignored=f"release {release_id} does not hold the stage")
    if deployed is not None:
        lane = deploy(lane, deployed)
    if drain:
        return Step(lane=replace(lane, holder=replace(holder, phase=DRAINING, approval_token="")))
    lane = replace(lane, holder=None)
    return advance(lane, mode, now, blocker)


def withdraw(lane: Lane, release_id: str, mode: str, now: str, blocker: Blocker = _no_blocker) -> Step:
    """A release that ended (cancelled, failed elsewhere) stops waiting; the lane moves on if it can."""
    lane = lane.without_waiter(release_id)
    return advance(lane, mode, now, blocker)


def advance(lane: Lane, mode: str, now: str, blocker: Blocker = _no_blocker) -> Step:
    """Let the next waiter in if the lane is free (a pinned lane holds the automatic ones)."""
    if lane.holder is not None or not lane.waiters:
        return Step(lane=lane)
    if lane.pin is not None and any(not w.explicit for w in lane.waiters):
        held = tuple(w for w in lane.waiters if not w.explicit)
        rest = replace(lane, waiters=tuple(w for w in lane.waiters if w.explicit))
        return Step(lane=rest, held=held).then(advance(rest, mode, now, blocker))
    if mode == "QUEUED":
        first = lane.waiters[0]
        by = _outdated_by(lane, first)
        if by is not None:
            rest = lane.without_waiter(first.release_id)
            return Step(lane=rest, superseded=(Superseded(first.release_id, by, first.token),)).then(
                advance(rest, mode, now, blocker)
            )
        if blocker(first) is not None:
            return Step(lane=lane)
        return _grant(lane, first, now)
    newest = lane.waiters[-1]
    older = tuple(Superseded(w.release_id, newest.release_id, w.token) for w in lane.waiters[:-1])
    lane = replace(lane, waiters=(newest,))
    by = _outdated_by(lane, newest)
    if by is not None:
        return Step(
            lane=replace(lane, waiters=()), superseded=(*older, Superseded(newest.release_id, by, newest.token))
        )
    return Step(lane=lane, superseded=older).then(_grant(lane, newest, now))


def finish_drain(
    lane: Lane, release_id: str, deployed: Deployed | None, mode: str, now: str, blocker: Blocker = _no_blocker
) -> Step:
    """CloudFormation settled for a draining holder: record what the stage now runs and let the next in."""
    holder = lane.holder
    if holder is None or holder.release_id != release_id or holder.phase != DRAINING:
        return Step(lane=lane, ignored=f"release {release_id} is not draining the stage")
    if deployed is not None:
        lane = deploy(lane, deployed)
    lane = replace(lane, holder=None)
    return advance(lane, mode, now, blocker)

//! The request state machine: every way a request changes status, who may
//! make the change, and what it does.
//!
//! Each [`Transition`] has one [`Rule`]: the statuses it may start from, the
//! guard that must hold besides, the status it ends in, what happens to the
//! owner and the epoch, and the history event it writes. The store's SQL
//! implements these rules (its `WHERE` clauses list the statuses of
//! [`Rule::from`] and set [`Rule::to`]); [`RequestState::apply`] is the same
//! rule on a value, which the unit tests below check as a table and the
//! store's contract tests compare the SQL against.
//!
//! ```text
//!            submit                claim                 succeed
//!   ──────────────────▶ queued ─────────────▶ running ─────────────▶ succeeded
//!                          │                  │  ▲  │ sleep (stays running,
//!                          │                  │  │  │ no attempt, due later)
//!                          │        retry,    │  │  │
//!                          │      postpone,   ▼  │claim      fail
//!                          │   release, take over,  ───────────────▶ error
//!                          │   hand over, strand                      │
//!                          │                waiting_retry ◀───────────┘
//!                          │                      │         re-execute
//!                          └──── cancel ──────────┴───▶ cancelled
//! ```
//!
//! A hold is not a status: `held` is a flag beside it that keeps every
//! claim away (no retry, no wake-up, no run after a takeover) until a
//! resume; the statuses and transitions above go on as they are.

use std::fmt;

use crate::{Epoch, ServerId};

/// A request's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Created, not yet started.
    Queued,
    /// An attempt is executing, or the flow sleeps between attempts.
    Running,
    /// Waiting for its owner (or any server, after a handover) to retry it.
    WaitingRetry,
    /// Finished with an output.
    Succeeded,
    /// Finished without one after its last allowed retry.
    Error,
    /// Cancelled by an operator.
    Cancelled,
}

impl RequestStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Running,
        Self::WaitingRetry,
        Self::Succeeded,
        Self::Error,
        Self::Cancelled,
    ];

    /// The status as stored and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::WaitingRetry => "waiting_retry",
            Self::Succeeded => "succeeded",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or API status.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The console's plain label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::Running => "Running",
            Self::WaitingRetry => "Waiting for a retry",
            Self::Succeeded => "Succeeded",
            Self::Error => "Error",
            Self::Cancelled => "Cancelled",
        }
    }

    /// Whether the request can no longer change without an operator.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Error | Self::Cancelled)
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an entry of a request's history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The request was created.
    Created,
    /// An attempt started.
    Attempt,
    /// The flow went to sleep; its slot is free meanwhile.
    Sleeping,
    /// The flow returned an output.
    Succeeded,
    /// The flow failed and will be retried.
    Retry,
    /// The flow failed for good.
    Error,
    /// The attempt could not run for a passing reason outside the flow.
    Postponed,
    /// An attempt stopped without an outcome; the request is due again.
    Released,
    /// An operator cancelled the request.
    Cancelled,
    /// An operator re-executed the request.
    Reexecuted,
    /// A live server took the request over from a dead one.
    TakenOver,
    /// A server stopping cleanly handed the request over to the cluster.
    HandedOver,
    /// The request's server is down and its flow must stay on it.
    OwnerDown,
    /// An operator held the request: it does not run until resumed.
    Held,
    /// An operator resumed a held request.
    Resumed,
    /// An operator forked a new request from this one's journal.
    Forked,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 16] = [
        Self::Created,
        Self::Attempt,
        Self::Sleeping,
        Self::Succeeded,
        Self::Retry,
        Self::Error,
        Self::Postponed,
        Self::Released,
        Self::Cancelled,
        Self::Reexecuted,
        Self::TakenOver,
        Self::HandedOver,
        Self::OwnerDown,
        Self::Held,
        Self::Resumed,
        Self::Forked,
    ];

    /// The kind as stored and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Attempt => "attempt",
            Self::Sleeping => "sleeping",
            Self::Succeeded => "succeeded",
            Self::Retry => "retry",
            Self::Error => "error",
            Self::Postponed => "postponed",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
            Self::Reexecuted => "reexecuted",
            Self::TakenOver => "taken_over",
            Self::HandedOver => "handed_over",
            Self::OwnerDown => "owner_down",
            Self::Held => "held",
            Self::Resumed => "resumed",
            Self::Forked => "forked",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }

    /// Whether an attempt starts running the request on a server here:
    /// the console draws these on the request's timeline.
    pub fn starts_a_run(self) -> bool {
        matches!(self, Self::Attempt | Self::TakenOver)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way a request changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A server receives the request and will run it.
    Submit,
    /// A server receives the request and starts its first attempt at once.
    SubmitAndClaim,
    /// A server starts an attempt of a due request.
    Claim,
    /// The attempt commits a checkpoint.
    Checkpoint,
    /// The attempt's flow sleeps durably; no attempt runs meanwhile.
    Sleep,
    /// The attempt's flow returned an output.
    Succeed,
    /// The attempt's flow failed with retries left.
    Retry,
    /// The attempt's flow failed for good.
    Fail,
    /// The attempt could not go on for a passing reason outside the flow.
    Postpone,
    /// The attempt stopped without an outcome (its server stopping, or a
    /// request left `running` without an attempt).
    Release,
    /// An operator cancels the request.
    Cancel,
    /// An operator runs the request again from another server.
    Reexecute,
    /// A live server adopts a dead server's request whose flow may move.
    TakeOver,
    /// A dead server's request whose flow must stay is shown as waiting.
    Strand,
    /// A server stopping cleanly leaves its requests that may move to the
    /// cluster.
    HandOver,
    /// A restarted server makes its requests whose attempts died with its
    /// previous incarnation due again.
    Recover,
}

/// What must hold, besides the status, for a transition to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing more.
    None,
    /// Made by the attempt that holds the request: the owner and epoch are
    /// those its claim returned, and an attempt runs (the request does not
    /// sleep).
    Attempt,
    /// Made by a server for itself: the request is due, owned by that server
    /// or by nobody, and when `running`, asleep and its own.
    Due,
    /// The request's owner is nobody or a server that is down, unless the
    /// request is in `error`.
    OwnerDownUnlessError,
    /// The owner is down and the flow may move to another server.
    OwnerDownMayMove,
    /// The owner is down and the flow must stay on it.
    OwnerDownMustStay,
    /// The owner is stopping and the flow may move to another server.
    OwnerStoppingMayMove,
    /// The owner restarts, and an attempt of its previous incarnation
    /// held the request (it does not sleep).
    OwnerRestartsWithAttempt,
}

/// Who owns the request after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerAfter {
    /// Unchanged.
    Same,
    /// The server making the transition.
    Actor,
    /// Nobody: the first live server to claim it.
    Nobody,
}

/// One transition's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The statuses it may start from.
    pub from: &'static [RequestStatus],
    /// What must hold besides.
    pub guard: Guard,
    /// The status it ends in.
    pub to: RequestStatus,
    /// The owner afterwards.
    pub owner: OwnerAfter,
    /// Whether the epoch moves on, fencing every attempt that started
    /// before.
    pub bumps_epoch: bool,
    /// The history event it writes.
    pub event: Option<EventKind>,
}

use RequestStatus::{Cancelled, Error, Queued, Running, WaitingRetry};

const UNFINISHED: &[RequestStatus] = &[Queued, Running, WaitingRetry];

impl Transition {
    /// Every transition.
    pub const ALL: [Self; 16] = [
        Self::Submit,
        Self::SubmitAndClaim,
        Self::Claim,
        Self::Checkpoint,
        Self::Sleep,
        Self::Succeed,
        Self::Retry,
        Self::Fail,
        Self::Postpone,
        Self::Release,
        Self::Cancel,
        Self::Reexecute,
        Self::TakeOver,
        Self::Strand,
        Self::HandOver,
        Self::Recover,
    ];

    /// The transition's rule.
    pub const fn rule(self) -> Rule {
        const fn rule(
            from: &'static [RequestStatus],
            guard: Guard,
            to: RequestStatus,
            owner: OwnerAfter,
            bumps_epoch: bool,
            event: Option<EventKind>,
        ) -> Rule {
            Rule {
                from,
                guard,
                to,
                owner,
                bumps_epoch,
                event,
            }
        }
        use EventKind as E;
        use Guard as G;
        use OwnerAfter::{Actor, Nobody, Same};
        match self {
            // A new request has no status before; `from` is empty.
            Self::Submit => rule(&[], G::None, Queued, Actor, false, Some(E::Created)),
            Self::SubmitAndClaim => rule(&[], G::None, Running, Actor, true, Some(E::Attempt)),
            Self::Claim => rule(UNFINISHED, G::Due, Running, Actor, true, Some(E::Attempt)),
            Self::Checkpoint => rule(&[Running], G::Attempt, Running, Same, false, None),
            Self::Sleep => rule(
                &[Running],
                G::Attempt,
                Running,
                Same,
                false,
                Some(E::Sleeping),
            ),
            Self::Succeed => rule(
                &[Running],
                G::Attempt,
                RequestStatus::Succeeded,
                Same,
                false,
                Some(E::Succeeded),
            ),
            Self::Retry => rule(
                &[Running],
                G::Attempt,
                WaitingRetry,
                Same,
                false,
                Some(E::Retry),
            ),
            Self::Fail => rule(&[Running], G::Attempt, Error, Same, false, Some(E::Error)),
            Self::Postpone => rule(
                &[Running],
                G::Attempt,
                WaitingRetry,
                Same,
                false,
                Some(E::Postponed),
            ),
            Self::Release => rule(
                &[Running],
                G::Attempt,
                WaitingRetry,
                Same,
                false,
                Some(E::Released),
            ),
            Self::Cancel => rule(
                UNFINISHED,
                G::None,
                Cancelled,
                Same,
                true,
                Some(E::Cancelled),
            ),
            Self::Reexecute => rule(
                &[WaitingRetry, Error],
                G::OwnerDownUnlessError,
                WaitingRetry,
                Actor,
                true,
                Some(E::Reexecuted),
            ),
            Self::TakeOver => rule(
                UNFINISHED,
                G::OwnerDownMayMove,
                WaitingRetry,
                Actor,
                true,
                Some(E::TakenOver),
            ),
            Self::Strand => rule(
                &[Queued, Running],
                G::OwnerDownMustStay,
                WaitingRetry,
                Same,
                true,
                Some(E::OwnerDown),
            ),
            Self::HandOver => rule(
                UNFINISHED,
                G::OwnerStoppingMayMove,
                WaitingRetry,
                Nobody,
                true,
                Some(E::HandedOver),
            ),
            Self::Recover => rule(
                &[Running],
                G::OwnerRestartsWithAttempt,
                WaitingRetry,
                Same,
                false,
                None,
            ),
        }
    }

    /// The past participle an operator reads in a refusal.
    pub fn done(self) -> &'static str {
        match self {
            Self::Submit | Self::SubmitAndClaim => "submitted",
            Self::Claim => "claimed",
            Self::Checkpoint => "checkpointed",
            Self::Sleep => "put to sleep",
            Self::Succeed => "finished",
            Self::Retry => "retried",
            Self::Fail => "failed",
            Self::Postpone => "postponed",
            Self::Release => "released",
            Self::Cancel => "cancelled",
            Self::Reexecute => "re-executed",
            Self::TakeOver => "taken over",
            Self::Strand => "stranded",
            Self::HandOver => "handed over",
            Self::Recover => "recovered",
        }
    }
}

/// What the state machine knows of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    /// Status.
    pub status: RequestStatus,
    /// Owning server.
    pub owner: Option<ServerId>,
    /// Fencing epoch.
    pub epoch: Epoch,
    /// `running` without an attempt: the flow sleeps until a due time.
    pub asleep: bool,
    /// Whether an attempt may be due now (`queued`, `waiting_retry`, or a
    /// sleeper whose wake-up time has come).
    pub due: bool,
    /// Whether the flow may move to another server
    /// (`other_server_retry`).
    pub may_move: bool,
}

/// Who makes a transition and what they know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The server making it.
    pub server: ServerId,
    /// For an attempt's own writes: the epoch its claim returned.
    pub attempt_epoch: Option<Epoch>,
    /// The state of the request's owner, as the actor judged it.
    pub owner: OwnerHealth,
}

/// The state of a request's owning server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerHealth {
    /// Heartbeating within the lease.
    Live,
    /// Missed its lease, or stopped, or terminated.
    Down,
    /// Stopping cleanly: handing its requests over.
    Stopping,
    /// Restarting: its previous incarnation's attempts are gone.
    Restarting,
}

/// A transition that does not apply, and why, in an operator's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot be {done}: {why}")]
pub struct Refusal {
    /// What was refused.
    pub done: &'static str,
    /// Why.
    pub why: String,
}

impl Transition {
    /// Why this transition does not apply to a request in `status` (the
    /// guard aside, for statuses [`Rule::from`] lists).
    pub fn refusal(self, status: RequestStatus) -> Refusal {
        let why = match self {
            Self::Reexecute if status == WaitingRetry => {
                "it is waiting for a retry by a server that is still running".to_owned()
            }
            Self::Reexecute => format!(
                "it is {status}; only requests in error, or waiting for a retry whose server is down, can be re-executed"
            ),
            Self::Cancel => format!("it is already {status}"),
            _ if self.rule().from.contains(&status) => {
                "the request is not in the state this needs".to_owned()
            }
            _ => format!("it is {status}"),
        };
        Refusal {
            done: self.done(),
            why,
        }
    }
}

impl RequestState {
    /// A request as `submit` creates it, owned by `receiver`.
    pub fn submitted(receiver: ServerId, may_move: bool, claim: bool) -> Self {
        let transition = if claim {
            Transition::SubmitAndClaim
        } else {
            Transition::Submit
        };
        let rule = transition.rule();
        Self {
            status: rule.to,
            owner: Some(receiver),
            epoch: if rule.bumps_epoch {
                Epoch::CREATED.next()
            } else {
                Epoch::CREATED
            },
            asleep: false,
            due: !claim,
            may_move,
        }
    }

    /// Whether `transition`'s guard holds for `actor`.
    fn guard_holds(&self, guard: Guard, actor: &Actor) -> bool {
        let owned_by_actor = self.owner.as_ref() == Some(&actor.server);
        match guard {
            Guard::None => true,
            Guard::Attempt => {
                owned_by_actor && actor.attempt_epoch == Some(self.epoch) && !self.asleep
            }
            Guard::Due => {
                self.due
                    && (owned_by_actor || self.owner.is_none())
                    && (self.status != Running || (owned_by_actor && self.asleep))
            }
            Guard::OwnerDownUnlessError => {
                self.status == Error || self.owner.is_none() || actor.owner == OwnerHealth::Down
            }
            Guard::OwnerDownMayMove => actor.owner == OwnerHealth::Down && self.may_move,
            Guard::OwnerDownMustStay => actor.owner == OwnerHealth::Down && !self.may_move,
            Guard::OwnerStoppingMayMove => actor.owner == OwnerHealth::Stopping && self.may_move,
            Guard::OwnerRestartsWithAttempt => {
                actor.owner == OwnerHealth::Restarting && owned_by_actor && !self.asleep
            }
        }
    }

    /// The request after `transition` made by `actor`, or why it does not
    /// apply.
    pub fn apply(&self, transition: Transition, actor: &Actor) -> Result<Self, Refusal> {
        let rule = transition.rule();
        if !rule.from.contains(&self.status) || !self.guard_holds(rule.guard, actor) {
            return Err(transition.refusal(self.status));
        }
        let mut next = self.clone();
        next.status = rule.to;
        match rule.owner {
            OwnerAfter::Same => {}
            OwnerAfter::Actor => next.owner = Some(actor.server.clone()),
            OwnerAfter::Nobody => next.owner = None,
        }
        if rule.bumps_epoch {
            next.epoch = next.epoch.next();
        }
        next.asleep = transition == Transition::Sleep;
        next.due = match transition {
            Transition::Submit
            | Transition::Release
            | Transition::Reexecute
            | Transition::Recover => true,
            // A moved request that slept or waited for a retry keeps its
            // due time; one whose attempt died is due now.
            Transition::TakeOver | Transition::Strand | Transition::HandOver => {
                if self.status == WaitingRetry || self.asleep {
                    self.due
                } else {
                    true
                }
            }
            // Due at the wake-up or retry time, or never again.
            Transition::SubmitAndClaim
            | Transition::Claim
            | Transition::Checkpoint
            | Transition::Sleep
            | Transition::Retry
            | Transition::Postpone
            | Transition::Succeed
            | Transition::Fail
            | Transition::Cancel => false,
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ServerId {
        ServerId::new("me")
    }

    fn other() -> ServerId {
        ServerId::new("other")
    }

    fn state(status: RequestStatus, owner: Option<ServerId>) -> RequestState {
        RequestState {
            status,
            owner,
            epoch: Epoch(3),
            asleep: false,
            due: matches!(status, Queued | WaitingRetry),
            may_move: true,
        }
    }

    fn actor(owner: OwnerHealth) -> Actor {
        Actor {
            server: me(),
            attempt_epoch: None,
            owner,
        }
    }

    /// The table of operator transitions: which statuses each applies to.
    #[test]
    fn operators_cancel_unfinished_requests_and_reexecute_failed_or_orphaned_ones() {
        let table = [
            // status, cancel, re-execute (owner live), re-execute (owner down)
            (Queued, true, false, false),
            (Running, true, false, false),
            (WaitingRetry, true, false, true),
            (RequestStatus::Succeeded, false, false, false),
            (Error, false, true, true),
            (Cancelled, false, false, false),
        ];
        for (status, cancel, reexecute_live, reexecute_down) in table {
            let request = state(status, Some(other()));
            assert_eq!(
                request
                    .apply(Transition::Cancel, &actor(OwnerHealth::Live))
                    .is_ok(),
                cancel,
                "cancel from {status}"
            );
            assert_eq!(
                request
                    .apply(Transition::Reexecute, &actor(OwnerHealth::Live))
                    .is_ok(),
                reexecute_live,
                "re-execute from {status}, owner live"
            );
            assert_eq!(
                request
                    .apply(Transition::Reexecute, &actor(OwnerHealth::Down))
                    .is_ok(),
                reexecute_down,
                "re-execute from {status}, owner down"
            );
        }
    }

    #[test]
    fn no_transition_leaves_succeeded_or_cancelled() {
        for status in [RequestStatus::Succeeded, Cancelled] {
            for transition in Transition::ALL {
                for health in [
                    OwnerHealth::Live,
                    OwnerHealth::Down,
                    OwnerHealth::Stopping,
                    OwnerHealth::Restarting,
                ] {
                    let actor = Actor {
                        attempt_epoch: Some(Epoch(3)),
                        ..actor(health)
                    };
                    assert!(
                        state(status, Some(me())).apply(transition, &actor).is_err(),
                        "{transition:?} left {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_move_of_the_request_to_another_holder_fences_the_attempts_before() {
        for transition in Transition::ALL {
            let rule = transition.rule();
            if rule.owner != OwnerAfter::Same || rule.to == Cancelled {
                assert!(
                    rule.bumps_epoch || rule.from.is_empty() && transition == Transition::Submit,
                    "{transition:?} changes the holder without a new epoch"
                );
            }
        }
    }

    #[test]
    fn only_the_attempt_at_the_current_epoch_ends_it() {
        let running = state(Running, Some(me()));
        let current = Actor {
            attempt_epoch: Some(Epoch(3)),
            ..actor(OwnerHealth::Live)
        };
        let stale = Actor {
            attempt_epoch: Some(Epoch(2)),
            ..actor(OwnerHealth::Live)
        };
        let elsewhere = Actor {
            server: other(),
            ..current.clone()
        };
        for transition in [
            Transition::Checkpoint,
            Transition::Sleep,
            Transition::Succeed,
            Transition::Retry,
            Transition::Fail,
            Transition::Postpone,
            Transition::Release,
        ] {
            let after = running.apply(transition, &current).unwrap();
            assert_eq!(after.status, transition.rule().to);
            assert_eq!(after.epoch, Epoch(3), "{transition:?} keeps the epoch");
            assert!(running.apply(transition, &stale).is_err());
            assert!(running.apply(transition, &elsewhere).is_err());
        }
        let asleep = running.apply(Transition::Sleep, &current).unwrap();
        assert!(asleep.asleep && !asleep.due);
        assert!(
            asleep.apply(Transition::Succeed, &current).is_err(),
            "a sleeper has no attempt to end"
        );
    }

    #[test]
    fn a_claim_takes_a_due_request_of_its_own_or_of_nobody() {
        let claim = actor(OwnerHealth::Live);
        let mine = state(WaitingRetry, Some(me()));
        let after = mine.apply(Transition::Claim, &claim).unwrap();
        assert_eq!(
            (after.status, after.epoch, after.owner.clone()),
            (Running, Epoch(4), Some(me()))
        );
        assert!(
            after.apply(Transition::Claim, &claim).is_err(),
            "claimed twice"
        );
        assert!(
            state(WaitingRetry, None)
                .apply(Transition::Claim, &claim)
                .is_ok()
        );
        assert!(
            state(WaitingRetry, Some(other()))
                .apply(Transition::Claim, &claim)
                .is_err()
        );
        let not_due = RequestState {
            due: false,
            ..mine.clone()
        };
        assert!(not_due.apply(Transition::Claim, &claim).is_err());
        let woken = RequestState {
            status: Running,
            asleep: true,
            due: true,
            ..mine
        };
        assert!(woken.apply(Transition::Claim, &claim).is_ok());
        let running_elsewhere = RequestState {
            owner: Some(other()),
            ..woken
        };
        assert!(running_elsewhere.apply(Transition::Claim, &claim).is_err());
    }

    #[test]
    fn a_dead_servers_requests_move_or_wait_by_their_flow() {
        let down = actor(OwnerHealth::Down);
        for status in [Queued, Running, WaitingRetry] {
            let movable = state(status, Some(other()));
            let moved = movable.apply(Transition::TakeOver, &down).unwrap();
            assert_eq!(
                (moved.status, moved.owner, moved.epoch),
                (WaitingRetry, Some(me()), Epoch(4))
            );
            assert!(movable.apply(Transition::Strand, &down).is_err());
            assert!(
                movable
                    .apply(Transition::TakeOver, &actor(OwnerHealth::Live))
                    .is_err()
            );
            let stays = RequestState {
                may_move: false,
                ..state(status, Some(other()))
            };
            assert!(stays.apply(Transition::TakeOver, &down).is_err());
            // A stay-put request already waiting keeps waiting as it was.
            assert_eq!(
                stays.apply(Transition::Strand, &down).is_ok(),
                status != WaitingRetry
            );
            let handed = movable
                .apply(Transition::HandOver, &actor(OwnerHealth::Stopping))
                .unwrap();
            assert_eq!((handed.owner, handed.due), (None, true));
        }
    }

    #[test]
    fn a_restart_makes_its_dead_attempts_due_and_leaves_sleepers_asleep() {
        let restart = actor(OwnerHealth::Restarting);
        let running = state(Running, Some(me()));
        let recovered = running.apply(Transition::Recover, &restart).unwrap();
        assert_eq!((recovered.status, recovered.due), (WaitingRetry, true));
        let asleep = RequestState {
            asleep: true,
            ..running
        };
        assert!(asleep.apply(Transition::Recover, &restart).is_err());
    }

    #[test]
    fn statuses_and_event_kinds_round_trip() {
        for status in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{status}\"")
            );
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RequestStatus::parse("done"), None);
    }

    #[test]
    fn refusals_say_why_in_an_operators_words() {
        assert_eq!(
            Transition::Cancel
                .refusal(RequestStatus::Succeeded)
                .to_string(),
            "cannot be cancelled: it is already succeeded"
        );
        assert_eq!(
            Transition::Reexecute.refusal(WaitingRetry).to_string(),
            "cannot be re-executed: it is waiting for a retry by a server that is still running"
        );
    }
}

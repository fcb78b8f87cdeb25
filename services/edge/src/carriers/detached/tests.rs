//! The detached-session machine as a table of steps and the verdicts they lead to.

use super::*;

const GRACE: Duration = Duration::from_secs(30);
const FIRST_POLL: Duration = Duration::from_secs(10);

/// One step of a scenario, at an offset in seconds from the session's start.
#[derive(Debug, Clone, Copy)]
enum Step {
    Attach,
    /// Detaches the downstream of this generation.
    Detach(u64),
    /// A second downstream or a send took the slot (`true`) or found the app full.
    PutInUse {
        slot_free: bool,
    },
    Stop,
    /// The source looks.
    Check,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Nothing,
    Verdict(Verdict),
    /// `put_in_use` answered this.
    InUse(bool),
    /// `detach` answered this (whether it detached the current downstream).
    Detached(bool),
}

fn run(steps: &[(u64, Step, Expect)]) -> Detached {
    let start = Instant::now();
    let timing = Timing {
        grace: GRACE,
        first_poll_grace: FIRST_POLL,
    };
    let mut machine = Detached::new(timing, start, false);
    for (at, step, expected) in steps {
        let now = start + Duration::from_secs(*at);
        let got = match *step {
            Step::Attach => {
                machine.attach();
                Expect::Nothing
            }
            Step::Detach(generation) => Expect::Detached(machine.detach(generation, now)),
            Step::PutInUse { slot_free } => Expect::InUse(machine.settle_probation(slot_free)),
            Step::Stop => {
                machine.stop();
                Expect::Nothing
            }
            Step::Check => Expect::Verdict(machine.check(now)),
        };
        assert_eq!(&got, expected, "at {at}s, {step:?}");
    }
    machine
}

#[test]
fn a_session_nobody_polls_again_ends_when_probation_does() {
    let machine = run(&[
        (0, Step::Attach, Expect::Nothing),
        (1, Step::Detach(1), Expect::Detached(true)),
        (10, Step::Check, Expect::Verdict(Verdict::Gone)),
    ]);
    assert!(machine.is_stopping());
    assert!(machine.done_lingering());
}

#[test]
fn probation_ends_while_attached_takes_a_slot_or_refuses() {
    for (slot_free, verdict) in [(true, Verdict::Wait(None)), (false, Verdict::Refused)] {
        let machine = run(&[
            (0, Step::Attach, Expect::Nothing),
            // The source is told to take the slot, and looks again with the answer.
            (10, Step::Check, Expect::Verdict(Verdict::TakeSlot)),
            (10, Step::PutInUse { slot_free }, Expect::InUse(slot_free)),
            (10, Step::Check, Expect::Verdict(verdict)),
        ]);
        assert_eq!(machine.refusal().is_some(), !slot_free);
        // A refused session waits for a downstream to take its close.
        assert!(!machine.done_lingering());
    }
}

#[test]
fn a_second_downstream_ends_probation_once() {
    let machine = run(&[
        (0, Step::Attach, Expect::Nothing),
        (1, Step::Detach(1), Expect::Detached(true)),
        (2, Step::Attach, Expect::Nothing),
        (2, Step::PutInUse { slot_free: true }, Expect::InUse(true)),
        // Already in use: no second slot is taken, so a full app does not refuse it now.
        (3, Step::PutInUse { slot_free: false }, Expect::InUse(true)),
        (40, Step::Check, Expect::Verdict(Verdict::Wait(None))),
    ]);
    assert!(machine.refusal().is_none());
}

#[test]
fn a_second_downstream_over_the_ceiling_is_refused() {
    run(&[
        (0, Step::Attach, Expect::Nothing),
        (1, Step::Attach, Expect::Nothing),
        (1, Step::PutInUse { slot_free: false }, Expect::InUse(false)),
        (1, Step::Check, Expect::Verdict(Verdict::Refused)),
    ]);
}

#[test]
fn a_superseded_downstream_ending_does_not_detach_the_session() {
    run(&[
        (0, Step::Attach, Expect::Nothing),
        (1, Step::Attach, Expect::Nothing),
        (1, Step::PutInUse { slot_free: true }, Expect::InUse(true)),
        (2, Step::Detach(1), Expect::Detached(false)),
        (100, Step::Check, Expect::Verdict(Verdict::Wait(None))),
        (101, Step::Detach(2), Expect::Detached(true)),
        (101, Step::Detach(2), Expect::Detached(false)),
    ]);
}

#[test]
fn a_session_in_use_expires_a_grace_after_its_last_downstream() {
    let start = Instant::now();
    let timing = Timing {
        grace: GRACE,
        first_poll_grace: FIRST_POLL,
    };
    let mut machine = Detached::new(timing, start, true);
    let generation = machine.attach();
    assert!(machine.detach(generation, start + Duration::from_secs(5)));
    let expires = start + Duration::from_secs(35);
    assert_eq!(
        machine.check(start + Duration::from_secs(6)),
        Verdict::Wait(Some(expires))
    );
    assert_eq!(machine.check(expires), Verdict::Gone);
}

#[test]
fn on_probation_the_source_wakes_when_probation_ends() {
    let start = Instant::now();
    let timing = Timing {
        grace: GRACE,
        first_poll_grace: FIRST_POLL,
    };
    let mut machine = Detached::new(timing, start, false);
    machine.attach();
    assert_eq!(
        machine.check(start),
        Verdict::Wait(Some(start + FIRST_POLL))
    );
}

#[test]
fn a_stopped_session_is_gone_and_a_delivered_close_ends_its_linger() {
    let machine = run(&[
        (0, Step::Attach, Expect::Nothing),
        (1, Step::Stop, Expect::Nothing),
        (1, Step::Check, Expect::Verdict(Verdict::Gone)),
    ]);
    assert!(machine.done_lingering());
    let mut machine = run(&[(0, Step::Attach, Expect::Nothing)]);
    assert!(!machine.done_lingering());
    machine.deliver_close();
    assert!(machine.close_delivered() && machine.done_lingering());
}

#[test]
fn ending_ends_probation() {
    let mut machine = run(&[(0, Step::Attach, Expect::Nothing)]);
    assert!(!machine.is_in_use());
    machine.end();
    // A late downstream takes no slot for a session that is over, and is not refused.
    assert!(machine.is_in_use());
    assert!(machine.settle_probation(false));
    assert_eq!(machine.check(Instant::now()), Verdict::Wait(None));
}

//! The state machine of one task across its attempts: which worker's
//! answer counts, when to place the task again, and which hold to settle
//! or refund. Pure (no I/O, no clock: times are events), so every
//! interleaving of receipts, losses, restarts and deadlines can be checked
//! by a property test; the jobs service feeds it events and carries out
//! the effects it returns.
//!
//! The money rule it keeps: every paid attempt gets exactly one money
//! effect from the owner, a settlement (a valid receipt came before the
//! hold's deadline) or a refund (its deadline passed without one), never
//! both and never twice. A lost worker that still delivers before its
//! deadline is paid, and its output is compared with the one that counts.

/// Where one attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Sent; no answer yet, and its lease holds.
    Running,
    /// Its receipt came and verified.
    Delivered,
    /// Silent past its lease, refused, or its connection closed: given up
    /// on, though a receipt may still come before its deadline.
    Lost,
}

/// Where an attempt's hold stands, as the owner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Money {
    /// Unpaid network: nothing held.
    Free,
    /// Held; no decision yet.
    Held,
    /// Settled for the fuel its receipt reports.
    Settled,
    /// Refunded at its deadline.
    Refunded,
}

/// One attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Its delivery.
    pub delivery: Delivery,
    /// Its hold.
    pub money: Money,
}

/// Something that happened to attempt `n` (0-based) of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A valid receipt came (`in_time`: before the hold's deadline).
    Receipt { attempt: usize, in_time: bool },
    /// The attempt's lease ran out, the worker refused, or the connection
    /// closed.
    Lost { attempt: usize },
    /// The attempt's deadline passed. (The jobs service schedules a lost
    /// attempt's refund for its deadline when it is lost; the property test
    /// plays deadlines to check the money rule.)
    #[cfg_attr(not(test), expect(dead_code, reason = "played by the property test"))]
    Deadline { attempt: usize },
    /// The node restarted: every attempt still running is lost to it.
    /// (A restarted node ends the whole job as lost; the property test
    /// plays restarts to check the money rule holds through them.)
    #[cfg_attr(not(test), expect(dead_code, reason = "played by the property test"))]
    Restart,
}

/// What the jobs service must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Place the task again: a new attempt on another worker.
    Place,
    /// Settle attempt `n`'s hold for the fuel its receipt reports.
    Settle(usize),
    /// Refund attempt `n`'s hold (with the arbiter, at its deadline).
    Refund(usize),
    /// Attempt `n`'s output is the task's.
    Done(usize),
    /// Attempt `n` delivered after attempt `first` did: compare outputs.
    Compare { first: usize, late: usize },
    /// Every attempt allowed was lost.
    Fail,
}

/// One task's attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    max_attempts: usize,
    attempts: Vec<Attempt>,
    done: Option<usize>,
    failed: bool,
}

impl Task {
    /// A task that may be tried `max_attempts` times (at least once).
    pub fn new(max_attempts: usize) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            attempts: Vec::new(),
            done: None,
            failed: false,
        }
    }

    /// Records a new attempt (paid or not); returns its number.
    pub fn start(&mut self, paid: bool) -> usize {
        self.attempts.push(Attempt {
            delivery: Delivery::Running,
            money: if paid { Money::Held } else { Money::Free },
        });
        self.attempts.len() - 1
    }

    /// The attempts so far.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The attempt whose output is the task's, once one delivered.
    #[cfg_attr(not(test), expect(dead_code, reason = "checked by the tests"))]
    pub fn done(&self) -> Option<usize> {
        self.done
    }

    /// Whether every attempt allowed was lost.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether nothing more will happen: done or failed, and no hold
    /// still waits for a decision.
    #[cfg_attr(not(test), expect(dead_code, reason = "checked by the tests"))]
    pub fn settled(&self) -> bool {
        (self.done.is_some() || self.failed) && self.attempts.iter().all(|a| a.money != Money::Held)
    }

    /// Applies `event`; returns what to do. Events about attempts that do
    /// not exist, and repeats, change nothing.
    pub fn on(&mut self, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::Receipt { attempt, in_time } => {
                let Some(a) = self.attempts.get_mut(attempt) else {
                    return out;
                };
                if a.delivery == Delivery::Delivered {
                    return out;
                }
                // After its deadline a receipt counts for nothing: the
                // hold is the owner's again.
                if !in_time || a.money == Money::Refunded {
                    return out;
                }
                a.delivery = Delivery::Delivered;
                if a.money == Money::Held {
                    a.money = Money::Settled;
                    out.push(Effect::Settle(attempt));
                }
                match self.done {
                    None if !self.failed => {
                        self.done = Some(attempt);
                        out.push(Effect::Done(attempt));
                    }
                    Some(first) => out.push(Effect::Compare {
                        first,
                        late: attempt,
                    }),
                    None => {}
                }
            }
            Event::Lost { attempt } => {
                let Some(a) = self.attempts.get_mut(attempt) else {
                    return out;
                };
                if a.delivery != Delivery::Running {
                    return out;
                }
                a.delivery = Delivery::Lost;
                out.extend(self.replace());
            }
            Event::Deadline { attempt } => {
                let Some(a) = self.attempts.get_mut(attempt) else {
                    return out;
                };
                if a.money == Money::Held {
                    a.money = Money::Refunded;
                    out.push(Effect::Refund(attempt));
                }
                // A running attempt past its deadline is lost as well.
                if a.delivery == Delivery::Running {
                    a.delivery = Delivery::Lost;
                    out.extend(self.replace());
                }
            }
            Event::Restart => {
                let running: Vec<usize> = (0..self.attempts.len())
                    .filter(|i| self.attempts[*i].delivery == Delivery::Running)
                    .collect();
                for i in running {
                    self.attempts[i].delivery = Delivery::Lost;
                }
                out.extend(self.replace());
            }
        }
        out
    }

    /// After a loss: place again if the task still needs an answer and
    /// may be tried again; fail if nothing is left running.
    fn replace(&mut self) -> Vec<Effect> {
        if self.done.is_some() || self.failed {
            return Vec::new();
        }
        if self
            .attempts
            .iter()
            .any(|a| a.delivery == Delivery::Running)
        {
            return Vec::new();
        }
        if self.attempts.len() < self.max_attempts {
            vec![Effect::Place]
        } else {
            self.failed = true;
            vec![Effect::Fail]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Plays `events` (attempt numbers taken modulo the attempts so far),
    /// placing a new attempt whenever the machine asks, then lets every
    /// deadline pass; checks the money rule and the ending.
    fn play(max: usize, paid: bool, events: &[(u8, u8, bool)]) {
        let mut task = Task::new(max);
        let mut money = Vec::new();
        let mut effects = Vec::new();
        let place = |task: &mut Task, money: &mut Vec<u32>| {
            task.start(paid);
            money.push(0u32);
        };
        place(&mut task, &mut money);
        let run = |task: &mut Task, money: &mut Vec<u32>, effects: &mut Vec<Effect>, e| {
            for effect in task.on(e) {
                match effect {
                    Effect::Place => place(task, money),
                    Effect::Settle(n) | Effect::Refund(n) => money[n] += 1,
                    _ => {}
                }
                effects.push(effect);
            }
        };
        for &(kind, n, in_time) in events {
            let attempt = n as usize % task.attempts().len();
            let event = match kind % 4 {
                0 => Event::Receipt { attempt, in_time },
                1 => Event::Lost { attempt },
                2 => Event::Deadline { attempt },
                _ => Event::Restart,
            };
            run(&mut task, &mut money, &mut effects, event);
        }
        // Every deadline passes in the end, placements included.
        let mut i = 0;
        while i < task.attempts().len() {
            run(
                &mut task,
                &mut money,
                &mut effects,
                Event::Deadline { attempt: i },
            );
            i += 1;
        }
        assert!(task.settled(), "{task:?} after {effects:?}");
        assert!(task.attempts().len() <= max);
        assert!(task.done().is_some() != task.failed(), "{task:?}");
        for (n, count) in money.iter().enumerate() {
            let want = u32::from(paid);
            assert_eq!(*count, want, "attempt {n}: {effects:?}");
        }
        let done = effects
            .iter()
            .filter(|e| matches!(e, Effect::Done(_)))
            .count();
        let fail = effects.iter().filter(|e| matches!(e, Effect::Fail)).count();
        assert_eq!(done + fail, 1, "{effects:?}");
    }

    proptest! {
        #[test]
        fn every_hold_is_settled_or_refunded_exactly_once(
            max in 1usize..5,
            paid in any::<bool>(),
            events in proptest::collection::vec((0u8..4, 0u8..8, any::<bool>()), 0..40),
        ) {
            play(max, paid, &events);
        }
    }

    #[test]
    fn a_lost_worker_that_delivers_in_time_is_paid_and_compared() {
        let mut task = Task::new(3);
        task.start(true);
        assert_eq!(task.on(Event::Lost { attempt: 0 }), vec![Effect::Place]);
        task.start(true);
        assert_eq!(
            task.on(Event::Receipt {
                attempt: 1,
                in_time: true
            }),
            vec![Effect::Settle(1), Effect::Done(1)]
        );
        assert_eq!(
            task.on(Event::Receipt {
                attempt: 0,
                in_time: true
            }),
            vec![Effect::Settle(0), Effect::Compare { first: 1, late: 0 }]
        );
        assert!(task.settled());
    }
}

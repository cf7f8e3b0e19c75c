//! The capturer's side: ask each thread for its stack, wait for the answers, retry and give up.
//!
//! Each asked thread gets its own deadline from the moment it is signalled; at most
//! [`SLOTS`] requests are in flight at once. The capturer sleeps on a futex that every answer
//! bumps, so it wakes as soon as there is something to collect.

use libc::c_int;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::handler::{installed, send};
use super::safety::{Look, Refusal};
use super::slots::{
    pack, read_frames, status_of, ABANDONED, ANSWERS, DONE, NEXT_GENERATION, POOL, REQUESTED, RETRY, SLOTS,
    SLOT_BITS, WRITING,
};
use super::{Captured, Policy};

/// How long a capturer waits past the deadline for a handler that already started writing.
const WRITING_GRACE: Duration = Duration::from_millis(100);
/// Most times a thread found inside the unwinder is asked again (always within its deadline).
const MAX_ATTEMPTS: u32 = 16;
/// How soon a thread that was running is looked at again.
const LOOK_AGAIN: Duration = Duration::from_millis(1);
/// Longest single sleep of the capturer, so that no missed wake-up can stall it for long.
const MAX_NAP: Duration = Duration::from_millis(10);

/// The calling thread's own stack, walked directly (see [`super::own_stack`]).
fn own_stack() -> Captured {
    super::own_stack(&[
        Capturer::run as fn(Capturer, &[i32], i32) -> Vec<Captured> as usize,
        capture as Entry as usize,
    ])
}

/// The signature of [`capture`], to compare its address.
type Entry = fn(&[i32], Duration, Policy) -> Vec<Captured>;

/// See [`super::capture`].
#[inline(never)]
pub(super) fn capture(tids: &[i32], timeout: Duration, policy: Policy) -> Vec<Captured> {
    // SAFETY: gettid has no preconditions.
    let own = unsafe { libc::gettid() };
    let signo = match installed() {
        Ok(signo) => signo,
        Err(why) => {
            let answer = |&tid: &i32| {
                if tid == own {
                    own_stack()
                } else {
                    Captured::Unsupported(why)
                }
            };
            return tids.iter().map(answer).collect();
        }
    };
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    Capturer::new(signo, timeout, policy).run(tids, own)
}

/// A request waiting for a slot.
struct Request {
    index: usize,
    tid: i32,
    /// Set when the thread is first asked.
    deadline: Option<Instant>,
    attempts: u32,
    /// Earliest time to ask again (after a RETRY answer, or a look that said "later").
    not_before: Instant,
    /// When the thread's state was first looked at.
    first_look: Option<Instant>,
}

/// A request whose signal has been sent.
struct Flight {
    index: usize,
    tid: i32,
    slot: usize,
    generation: u64,
    deadline: Instant,
    attempts: u32,
}

/// One capture call: the queue of requests, the flights and the answers so far.
struct Capturer {
    signo: c_int,
    pid: libc::pid_t,
    look: Look,
    timeout: Duration,
    pending: VecDeque<Request>,
    flights: Vec<Flight>,
    busy: [bool; SLOTS],
}

impl Capturer {
    fn new(signo: c_int, timeout: Duration, policy: Policy) -> Capturer {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        Capturer {
            signo,
            pid,
            look: Look::new(signo, policy, pid),
            timeout,
            pending: VecDeque::new(),
            flights: Vec::new(),
            busy: [false; SLOTS],
        }
    }

    fn run(mut self, tids: &[i32], own: i32) -> Vec<Captured> {
        let mut answers: Vec<Option<Captured>> = vec![None; tids.len()];
        let now = Instant::now();
        for (index, &tid) in tids.iter().enumerate() {
            if tid == own {
                answers[index] = Some(own_stack());
            } else if tid <= 0 {
                answers[index] = Some(Captured::Exited);
            } else {
                let request = Request {
                    index,
                    tid,
                    deadline: None,
                    attempts: 0,
                    not_before: now,
                    first_look: None,
                };
                self.pending.push_back(request);
            }
        }
        while !self.pending.is_empty() || !self.flights.is_empty() {
            self.launch(&mut answers);
            let seen = ANSWERS.load(Ordering::Acquire);
            if !self.collect(&mut answers) {
                self.nap(seen);
            }
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or(Captured::NoAnswer))
            .collect()
    }

    /// Sends signals for ready requests while slots are free.
    fn launch(&mut self, answers: &mut [Option<Captured>]) {
        let now = Instant::now();
        let mut deferred = Vec::new();
        while self.flights.len() < SLOTS {
            let Some(mut request) = self.pending.pop_front() else {
                break;
            };
            if request.not_before > now {
                deferred.push(request);
                continue;
            }
            // Decided right before each signal, so the snapshot is as fresh as it can be.
            let first_look = *request.first_look.get_or_insert(now);
            let patient = now < first_look + self.timeout / 2;
            match self.look.may_signal(request.tid, patient) {
                Ok(()) => {}
                Err(Refusal::Never(why)) => {
                    answers[request.index] = Some(Captured::NotSignalled(why));
                    continue;
                }
                Err(Refusal::Later) => {
                    request.not_before = now + LOOK_AGAIN;
                    deferred.push(request);
                    continue;
                }
            }
            let Some((slot, generation)) = self.claim_slot() else {
                // Every free slot is still being written by a handler that overran its grace.
                if self.flights.is_empty() {
                    answers[request.index] = Some(Captured::NoAnswer);
                    continue;
                }
                deferred.push(request);
                break;
            };
            let deadline = *request.deadline.get_or_insert(now + self.timeout);
            let value = (generation << SLOT_BITS) as usize | slot;
            match send(self.signo, self.pid, request.tid, value) {
                Ok(()) => {
                    self.busy[slot] = true;
                    self.flights.push(Flight {
                        index: request.index,
                        tid: request.tid,
                        slot,
                        generation,
                        deadline,
                        attempts: request.attempts + 1,
                    });
                }
                Err(errno) => {
                    let requested = pack(generation, REQUESTED);
                    let _ = POOL[slot].state.compare_exchange(
                        requested,
                        pack(generation, ABANDONED),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    answers[request.index] = Some(if errno == libc::ESRCH {
                        Captured::Exited
                    } else {
                        // EAGAIN: the thread's queue of pending signals is full.
                        Captured::NoAnswer
                    });
                }
            }
        }
        self.pending.extend(deferred);
    }

    /// Takes a slot no handler can be writing and marks it REQUESTED under a new generation.
    fn claim_slot(&self) -> Option<(usize, u64)> {
        for (slot, cell) in POOL.iter().enumerate() {
            if self.busy[slot] {
                continue;
            }
            let state = cell.state.load(Ordering::Acquire);
            if matches!(status_of(state), REQUESTED | WRITING) {
                continue;
            }
            let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
            let claimed = pack(generation, REQUESTED);
            if cell
                .state
                .compare_exchange(state, claimed, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some((slot, generation));
            }
        }
        None
    }

    /// Reaps answered and expired flights; returns whether anything changed.
    fn collect(&mut self, answers: &mut [Option<Captured>]) -> bool {
        let now = Instant::now();
        let mut changed = false;
        let mut index = 0;
        while index < self.flights.len() {
            let flight = &self.flights[index];
            let cell = &POOL[flight.slot];
            let state = cell.state.load(Ordering::Acquire);
            let generation = flight.generation;
            let answer = if state == pack(generation, DONE) {
                Some(Captured::Frames(read_frames(cell)))
            } else if state == pack(generation, RETRY) {
                if now < flight.deadline && flight.attempts < MAX_ATTEMPTS {
                    let backoff = Duration::from_micros(100 << flight.attempts.min(6));
                    self.pending.push_back(Request {
                        index: flight.index,
                        tid: flight.tid,
                        deadline: Some(flight.deadline),
                        attempts: flight.attempts,
                        not_before: now + backoff,
                        // It answered a signal, so it is no `sigtimedwait` consumer: no patience.
                        first_look: Some(now.checked_sub(self.timeout).unwrap_or(now)),
                    });
                    self.busy[flight.slot] = false;
                    self.flights.swap_remove(index);
                    changed = true;
                    continue;
                }
                Some(Captured::NoAnswer)
            } else if state == pack(generation, REQUESTED) && now >= flight.deadline {
                let abandoned = pack(generation, ABANDONED);
                match cell
                    .state
                    .compare_exchange(state, abandoned, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Some(unanswered(self.pid, flight.tid)),
                    // The handler just started: look again on the next round.
                    Err(_) => None,
                }
            } else if state == pack(generation, WRITING) && now >= flight.deadline + WRITING_GRACE {
                // The slot stays WRITING, hence unused, until that handler finishes.
                Some(Captured::NoAnswer)
            } else {
                None
            };
            match answer {
                Some(answer) => {
                    answers[flight.index] = Some(answer);
                    self.busy[flight.slot] = false;
                    self.flights.swap_remove(index);
                    changed = true;
                }
                None => index += 1,
            }
        }
        changed
    }

    /// Sleeps until an answer arrives, the next deadline passes or a retry is due.
    fn nap(&self, seen: u32) {
        let now = Instant::now();
        let mut until = now + MAX_NAP;
        for flight in &self.flights {
            // A finishing handler bumps ANSWERS, which ends the nap early.
            let wake = match status_of(POOL[flight.slot].state.load(Ordering::Relaxed)) {
                WRITING => flight.deadline + WRITING_GRACE,
                _ => flight.deadline,
            };
            until = until.min(wake);
        }
        if let Some(earliest) = self.pending.iter().map(|request| request.not_before).min() {
            if self.flights.len() < SLOTS {
                until = until.min(earliest);
            }
        }
        let Some(nap) = until.checked_duration_since(now).filter(|nap| !nap.is_zero()) else {
            return;
        };
        let timeout = libc::timespec {
            tv_sec: nap.as_secs() as libc::time_t,
            tv_nsec: nap.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT reads the aligned u32 behind ANSWERS (a static) and the timespec on
        // our stack; it returns on a wake-up, a changed value, the timeout or a signal.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                ANSWERS.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &timeout as *const libc::timespec,
            );
        }
    }
}

/// Why an asked thread did not answer: it may have exited since it was asked.
pub(super) fn unanswered(pid: libc::pid_t, tid: i32) -> Captured {
    // SAFETY: tgkill with signal 0 only checks that the thread exists.
    let gone = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    if gone {
        Captured::Exited
    } else {
        Captured::NoAnswer
    }
}

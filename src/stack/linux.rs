//! Linux with glibc: every asked thread walks its own stack in a real-time signal handler.
//!
//! # Protocol
//!
//! A static pool of [`SLOTS`] slots carries requests and answers; nothing is allocated or locked
//! on the signalled side. Each slot has a state word packing a generation (unique per request)
//! and a status:
//!
//! ```text
//! capturer: IDLE/DONE/RETRY/ABANDONED --claim--> REQUESTED(gen), then signal carrying gen|slot
//! handler:  REQUESTED(gen) --CAS--> WRITING(gen) --walk--> DONE(gen)  (or RETRY(gen), no walk)
//! capturer: REQUESTED(gen) --CAS at the deadline--> ABANDONED(gen)
//! ```
//!
//! The handler only writes a slot after winning the CAS for the generation carried by the signal,
//! so a late or duplicate signal finds another generation or status and returns without touching
//! anything. A capturer reuses a slot only when no handler can be writing it. Slots are static, so
//! even a handler that finishes after its capturer gave up writes into valid memory.
//!
//! # Hazards handled
//!
//! - Walking a stack that was interrupted *inside the unwinder* crashes the process: with two
//!   threads panicking in a loop (their hook capturing a backtrace) and captures running, 8 runs
//!   out of 9 died of SIGSEGV in `libgcc_s`, the handler's `_Unwind_Backtrace` walking up from an
//!   interrupted `_Unwind_RaiseException`. The handler therefore reads the interrupted program
//!   counter first and, if it lies in the text of the unwinder library or of the dynamic loader
//!   (whose lookup functions the unwinder calls), answers RETRY without walking; the capturer asks
//!   again a little later, until the deadline. With the check, 0 crashes in 14 runs.
//! - The handler saves and restores `errno` and is installed with `SA_RESTART`, so blocking
//!   `read`/`write`/`accept`/`futex` waits resume transparently. Calls that the kernel never
//!   restarts return `EINTR` to the interrupted thread: `epoll_wait`, `poll`, `select`,
//!   `nanosleep`/`clock_nanosleep`, `sigtimedwait`, socket calls with a timeout. std's `sleep`,
//!   channels, locks and tokio's driver retry on `EINTR`; hand-written `libc` loops may not.
//! - The signal is the first real-time one from `SIGRTMIN+3` whose disposition is `SIG_DFL`: a
//!   handler the program installed is never replaced. Each capture checks that ours is still in
//!   place.
//! - Threads that block signals or never get scheduled time out as [`Captured::NoAnswer`]; the
//!   queued signal is then harmless whenever it arrives. The handler runs on the thread's own
//!   stack (not an alternate one) and needs a few KiB of it.

use super::Captured;
use libc::{c_int, c_void};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Requests in flight at once.
const SLOTS: usize = 64;
/// log2 of [`SLOTS`]: the signal value is `generation << SLOT_BITS | slot`.
const SLOT_BITS: u32 = 6;
/// Deepest stack recorded, in frames (a few of them are the handler's, stripped afterwards).
const FRAMES: usize = 128;

/// Slot statuses (low [`STATUS_BITS`] of the state word, the generation above them).
const IDLE: u64 = 0;
const REQUESTED: u64 = 1;
const WRITING: u64 = 2;
const DONE: u64 = 3;
const RETRY: u64 = 4;
const ABANDONED: u64 = 5;
const STATUS_BITS: u32 = 3;

/// How long a capturer waits past the deadline for a handler that already started writing.
const WRITING_GRACE: Duration = Duration::from_millis(100);
/// Most times a thread found inside the unwinder is asked again (always within its deadline).
const MAX_ATTEMPTS: u32 = 16;
/// Longest single sleep of the capturer, so that no missed wake-up can stall it for long.
const MAX_NAP: Duration = Duration::from_millis(10);
/// Most text ranges recorded as "inside the unwinder".
const MAX_RANGES: usize = 8;

const _: () = assert!(SLOTS == 1 << SLOT_BITS);

/// One request/answer cell, shared between a capturer and one signal handler at a time.
struct Slot {
    /// `generation << STATUS_BITS | status`.
    state: AtomicU64,
    /// Program counter where the handler interrupted the thread.
    pc: AtomicUsize,
    /// Whether the walk reached the interrupted frame (then `frames` starts there).
    found: AtomicBool,
    /// Number of valid entries in `frames`.
    len: AtomicUsize,
    /// Instruction pointers, innermost first.
    frames: [AtomicUsize; FRAMES],
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: AtomicU64::new(IDLE),
            pc: AtomicUsize::new(0),
            found: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            frames: [const { AtomicUsize::new(0) }; FRAMES],
        }
    }
}

static POOL: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// Source of request generations; starts at 1 so that an all-zero state never matches a request.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Futex word bumped by every answer; the capturer sleeps on it.
static ANSWERS: AtomicU32 = AtomicU32::new(0);
/// Text ranges `[start, end)` of the unwinder and the dynamic loader, flattened.
static UNWINDER_TEXT: [AtomicUsize; 2 * MAX_RANGES] = [const { AtomicUsize::new(0) }; 2 * MAX_RANGES];
/// Number of valid ranges in [`UNWINDER_TEXT`].
static UNWINDER_RANGES: AtomicUsize = AtomicUsize::new(0);
/// How many times a handler found its thread inside the unwinder (for tests and diagnostics).
static UNWINDER_HITS: AtomicUsize = AtomicUsize::new(0);

fn pack(generation: u64, status: u64) -> u64 {
    generation << STATUS_BITS | status
}

fn status_of(state: u64) -> u64 {
    state & ((1 << STATUS_BITS) - 1)
}

/// See [`super::capture`].
#[inline(never)]
pub(super) fn capture(tids: &[i32], timeout: Duration) -> Vec<Captured> {
    // SAFETY: gettid has no preconditions.
    let own = unsafe { libc::gettid() };
    let signo = match installed() {
        Ok(signo) => signo,
        Err(why) => {
            let answer = |&tid: &i32| {
                if tid == own {
                    capture_self()
                } else {
                    Captured::Unsupported(why)
                }
            };
            return tids.iter().map(answer).collect();
        }
    };
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    Capturer::new(signo, timeout).run(tids, own)
}

/// A request waiting for a slot.
struct Request {
    index: usize,
    tid: i32,
    /// Set when the thread is first asked.
    deadline: Option<Instant>,
    attempts: u32,
    /// Earliest time to ask again (after a RETRY answer).
    not_before: Instant,
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
    timeout: Duration,
    pending: VecDeque<Request>,
    flights: Vec<Flight>,
    busy: [bool; SLOTS],
}

impl Capturer {
    fn new(signo: c_int, timeout: Duration) -> Capturer {
        Capturer {
            signo,
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() },
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
                answers[index] = Some(capture_self());
            } else if tid <= 0 {
                answers[index] = Some(Captured::Exited);
            } else {
                let request = Request {
                    index,
                    tid,
                    deadline: None,
                    attempts: 0,
                    not_before: now,
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

/// Copies a DONE slot's frames out, stripped of the handler's own frames.
///
/// The interrupted pc is reported as `pc + 1`, like a return address, because symbolizers look
/// every address up at `ip - 1`: a thread stopped on a function's first instruction would
/// otherwise be reported in the function before it.
fn read_frames(cell: &Slot) -> Vec<usize> {
    let pc = cell.pc.load(Ordering::Relaxed);
    if !cell.found.load(Ordering::Relaxed) {
        // The walk never reached the interrupted frame: report the one address known to be right.
        return vec![pc + 1];
    }
    let len = cell.len.load(Ordering::Relaxed).min(FRAMES);
    let ips = cell.frames[..len].iter().map(|ip| ip.load(Ordering::Relaxed));
    // The unwinder reports the end of the stack (above `clone3`) as address 0.
    let mut frames: Vec<usize> = ips.take_while(|&ip| ip != 0).collect();
    if let Some(first) = frames.first_mut() {
        *first = pc + 1;
    }
    frames
}

/// Why an asked thread did not answer: it may have exited since it was asked.
fn unanswered(pid: libc::pid_t, tid: i32) -> Captured {
    // SAFETY: tgkill with signal 0 only checks that the thread exists.
    let gone = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    if gone {
        Captured::Exited
    } else {
        Captured::NoAnswer
    }
}

/// The kernel's `siginfo` for `SI_QUEUE` signals, up to the value (the `_rt` member of the union).
#[repr(C)]
struct QueueInfo {
    signo: c_int,
    errno: c_int,
    code: c_int,
    rt: QueueFields,
}

#[repr(C)]
struct QueueFields {
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: *mut c_void,
}

const _: () = assert!(size_of::<QueueInfo>() <= size_of::<libc::siginfo_t>());
const _: () = assert!(align_of::<QueueInfo>() <= align_of::<libc::siginfo_t>());

/// Queues `signo` with `value` to thread `tid` of process `pid`; `Err(errno)` on failure.
fn send(signo: c_int, pid: libc::pid_t, tid: i32, value: usize) -> Result<(), c_int> {
    // SAFETY: siginfo_t is plain data, all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: QueueInfo is a prefix of siginfo_t's layout (asserted size and alignment above) and
    // the reference does not outlive `info`.
    let queue = unsafe { &mut *(&mut info as *mut libc::siginfo_t).cast::<QueueInfo>() };
    queue.signo = signo;
    queue.code = libc::SI_QUEUE;
    queue.rt.pid = pid;
    // SAFETY: getuid has no preconditions.
    queue.rt.uid = unsafe { libc::getuid() };
    queue.rt.value = value as *mut c_void;
    // SAFETY: rt_tgsigqueueinfo reads a full siginfo_t from the pointer, which `info` is.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            signo,
            &info as *const libc::siginfo_t,
        )
    };
    match sent {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)),
    }
}

/// The signal handler: answers the request named by the signal's value, if it is still current.
extern "C" fn on_signal(_signo: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO handler.
    unsafe { answer(&*info, context) };
    // SAFETY: as above; the interrupted code must find errno as it left it.
    unsafe { *libc::__errno_location() = errno };
}

/// The body of [`on_signal`]: async-signal-safe, no allocation, no locks.
///
/// # Safety
///
/// `context` must be the `ucontext_t` the kernel passed to the handler.
unsafe fn answer(info: &libc::siginfo_t, context: *mut c_void) {
    // SAFETY: getpid has no preconditions; si_pid and si_value are valid for SI_QUEUE signals.
    let ours = info.si_code == libc::SI_QUEUE && unsafe { info.si_pid() == libc::getpid() };
    if !ours {
        return;
    }
    // SAFETY: checked above that this is an SI_QUEUE signal, which carries a value.
    let value = unsafe { info.si_value() }.sival_ptr as usize as u64;
    let cell = &POOL[(value & (SLOTS as u64 - 1)) as usize];
    let generation = value >> SLOT_BITS;
    let requested = pack(generation, REQUESTED);
    let writing = pack(generation, WRITING);
    if cell
        .state
        .compare_exchange(requested, writing, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return; // late, duplicate or foreign: not ours to answer any more
    }
    // SAFETY: the caller passes the handler's ucontext.
    let pc = unsafe { interrupted_pc(context) };
    cell.pc.store(pc, Ordering::Relaxed);
    let status = if in_unwinder(pc) {
        UNWINDER_HITS.fetch_add(1, Ordering::Relaxed);
        RETRY
    } else {
        // SAFETY: the thread is not inside the unwinder, so the unwinder's state is consistent;
        // the callback stores into atomics only.
        unsafe { walk(cell, pc) };
        DONE
    };
    cell.state.store(pack(generation, status), Ordering::Release);
    ANSWERS.fetch_add(1, Ordering::Release);
    // SAFETY: FUTEX_WAKE on a static aligned u32; the futex syscall is async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            ANSWERS.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Unwinds the current (signal handler's) stack into `cell`, keeping frames from `pc` outward.
///
/// # Safety
///
/// Must run on the interrupted thread, which must not be inside the unwinder.
unsafe fn walk(cell: &Slot, pc: usize) {
    let mut len = 0;
    let mut found = false;
    // SAFETY: unsynchronized tracing is what a signal handler can do; see the caller.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if !found && ip == pc {
                found = true;
                len = 0; // drop the handler's and the trampoline's frames
            }
            match cell.frames.get(len) {
                Some(entry) => {
                    entry.store(ip, Ordering::Relaxed);
                    len += 1;
                    true
                }
                None => false,
            }
        });
    }
    cell.len.store(len, Ordering::Relaxed);
    cell.found.store(found, Ordering::Relaxed);
}

/// Program counter of the interrupted code, from the handler's `ucontext_t`.
///
/// # Safety
///
/// `context` must point to a valid `ucontext_t`.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted_pc(context: *mut c_void) -> usize {
    // SAFETY: guaranteed by the caller.
    let context = unsafe { &*context.cast::<libc::ucontext_t>() };
    context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
}

/// Program counter of the interrupted code, from the handler's `ucontext_t`.
///
/// # Safety
///
/// `context` must point to a valid `ucontext_t`.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted_pc(context: *mut c_void) -> usize {
    // SAFETY: guaranteed by the caller.
    let context = unsafe { &*context.cast::<libc::ucontext_t>() };
    context.uc_mcontext.pc as usize
}

/// Other architectures: never called, [`install`] refuses them first.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn interrupted_pc(_context: *mut c_void) -> usize {
    0
}

/// Whether `pc` lies in the unwinder's or the dynamic loader's text. Reads atomics only.
fn in_unwinder(pc: usize) -> bool {
    let ranges = UNWINDER_RANGES.load(Ordering::Acquire);
    (0..ranges).any(|range| {
        let start = UNWINDER_TEXT[2 * range].load(Ordering::Relaxed);
        let end = UNWINDER_TEXT[2 * range + 1].load(Ordering::Relaxed);
        (start..end).contains(&pc)
    })
}

/// Captures the calling thread's stack directly, without the frames of this module.
#[inline(never)]
fn capture_self() -> Captured {
    let mut frames: Vec<(usize, usize)> = Vec::new();
    backtrace::trace(|frame| {
        frames.push((frame.ip() as usize, frame.symbol_address() as usize));
        true
    });
    type Entry = fn(&[i32], Duration) -> Vec<Captured>;
    let ours = [
        capture_self as fn() -> Captured as usize,
        Capturer::run as fn(Capturer, &[i32], i32) -> Vec<Captured> as usize,
        capture as Entry as usize,
        super::capture as Entry as usize,
    ];
    let start = frames
        .iter()
        .rposition(|(_, symbol)| ours.contains(symbol))
        .map_or(0, |last| last + 1);
    let ips = frames[start..].iter().map(|&(ip, _)| ip);
    Captured::Frames(ips.take_while(|&ip| ip != 0).collect())
}

/// The installed signal number, or why capture is impossible; checks ours is still installed.
fn installed() -> Result<c_int, &'static str> {
    static INSTALLED: OnceLock<Result<c_int, &'static str>> = OnceLock::new();
    let signo = (*INSTALLED.get_or_init(install))?;
    if handler_of(signo) == Some(handler_address()) {
        Ok(signo)
    } else {
        Err("another handler replaced leakcheck's on its real-time signal")
    }
}

fn handler_address() -> libc::sighandler_t {
    on_signal as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
}

/// The current disposition of `signo`, `None` if it cannot be read.
fn handler_of(signo: c_int) -> Option<libc::sighandler_t> {
    // SAFETY: sigaction is plain data, all-zero is valid.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries the current one into `current`.
    let queried = unsafe { libc::sigaction(signo, std::ptr::null(), &mut current) };
    (queried == 0).then_some(current.sa_sigaction)
}

/// Records the unwinder's text, then installs the handler on the first free candidate signal.
fn install() -> Result<c_int, &'static str> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err("capturing other threads' stacks is implemented for x86_64 and aarch64 only");
    }
    record_unwinder_text()?;
    for signo in libc::SIGRTMIN() + 3..libc::SIGRTMAX() {
        if handler_of(signo) != Some(libc::SIG_DFL) {
            continue; // the program uses it, or it cannot be read
        }
        // SAFETY: sigaction is plain data, all-zero is valid.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler_address();
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t owned by `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid; on_signal is async-signal-safe.
        if unsafe { libc::sigaction(signo, &action, &mut previous) } != 0 {
            continue;
        }
        if previous.sa_sigaction == libc::SIG_DFL {
            return Ok(signo);
        }
        // Another thread installed a handler since we looked: give it back, try the next signal.
        // SAFETY: restores the disposition just read.
        unsafe { libc::sigaction(signo, &previous, std::ptr::null_mut()) };
    }
    Err("no free real-time signal: SIGRTMIN+3 to SIGRTMAX-1 all have handlers")
}

/// What [`record_unwinder_text`] collects while visiting the loaded objects.
struct Search {
    /// An address inside the unwinder.
    unwinder: usize,
    /// Load address of the dynamic loader (`AT_BASE`), 0 if unknown.
    loader: usize,
    ranges: Vec<(usize, usize)>,
    unwinder_found: bool,
    unwinder_in_executable: bool,
}

/// Finds the executable segments of the unwinder library and of the dynamic loader.
fn record_unwinder_text() -> Result<(), &'static str> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let unwinder = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Unwind_RaiseException".as_ptr()) };
    if unwinder.is_null() {
        return Err(
            "cannot locate the unwinder (`_Unwind_RaiseException`), so cannot tell when a \
                    thread is inside it",
        );
    }
    let mut search = Search {
        unwinder: unwinder as usize,
        // SAFETY: getauxval has no preconditions.
        loader: unsafe { libc::getauxval(libc::AT_BASE) } as usize,
        ranges: Vec::new(),
        unwinder_found: false,
        unwinder_in_executable: false,
    };
    // SAFETY: `visit` matches the callback signature and only uses `search` through the pointer
    // for the duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    if !search.unwinder_found || search.unwinder_in_executable {
        return Err(
            "the unwinder is linked into the executable, so leakcheck cannot tell when a \
                    thread is inside it",
        );
    }
    if search.ranges.len() > MAX_RANGES {
        return Err("the unwinder has too many executable segments");
    }
    for (range, &(start, end)) in search.ranges.iter().enumerate() {
        UNWINDER_TEXT[2 * range].store(start, Ordering::Relaxed);
        UNWINDER_TEXT[2 * range + 1].store(end, Ordering::Relaxed);
    }
    UNWINDER_RANGES.store(search.ranges.len(), Ordering::Release);
    Ok(())
}

#[cfg(target_pointer_width = "64")]
type ProgramHeader = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
type ProgramHeader = libc::Elf32_Phdr;

/// `dl_iterate_phdr` callback: records the text of the object holding the unwinder or the loader.
unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Search` passed by record_unwinder_text; `info` and its program
    // headers are valid during the callback.
    let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
    // SAFETY: dlpi_phdr points to dlpi_phnum headers.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    let segment = |header: &ProgramHeader| {
        let start = base + header.p_vaddr as usize;
        (start, start + header.p_memsz as usize)
    };
    let loads = || headers.iter().filter(|header| header.p_type == libc::PT_LOAD);
    let holds_unwinder = loads().any(|header| {
        let (start, end) = segment(header);
        (start..end).contains(&search.unwinder)
    });
    let is_loader = search.loader != 0 && base == search.loader;
    if holds_unwinder {
        search.unwinder_found = true;
        // SAFETY: dlpi_name is a NUL-terminated string (empty for the executable) or null.
        let name_empty = info.dlpi_name.is_null() || unsafe { *info.dlpi_name } == 0;
        search.unwinder_in_executable = name_empty;
    }
    if holds_unwinder || is_loader {
        let text = loads()
            .filter(|header| header.p_flags & libc::PF_X != 0)
            .map(segment);
        search.ranges.extend(text);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;
    use crate::stack::kernel_wait;
    use std::process::Command;
    use std::sync::mpsc;
    use std::thread;

    const TIMEOUT: Duration = Duration::from_secs(2);
    /// Set in the environment of a re-executed test binary to run a test's child half.
    const CHILD_VAR: &str = "LEAKCHECK_STACK_TEST_CHILD";

    fn gettid() -> i32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }

    /// Waits (at most 5 s) until thread `tid` sleeps in the kernel.
    fn wait_until_sleeping(tid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while kernel_wait(tid).state != Some('S') {
            assert!(Instant::now() < deadline, "thread {tid} never went to sleep");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[inline(never)]
    fn blocked_receiver(rx: mpsc::Receiver<u32>) -> u32 {
        let value = rx.recv().unwrap_or(0);
        std::hint::black_box(value)
    }

    /// A thread blocked in `blocked_receiver` until released.
    struct Blocked {
        tid: i32,
        release: mpsc::Sender<u32>,
        handle: thread::JoinHandle<u32>,
    }

    impl Blocked {
        fn start() -> Blocked {
            let (tid_tx, tid_rx) = mpsc::channel();
            let (release, rx) = mpsc::channel();
            let handle = thread::spawn(move || {
                tid_tx.send(gettid()).unwrap();
                blocked_receiver(rx)
            });
            let tid = tid_rx.recv().unwrap();
            wait_until_sleeping(tid);
            Blocked { tid, release, handle }
        }

        /// Wakes the thread with `value` and returns what it received.
        fn release(self, value: u32) -> u32 {
            self.release.send(value).unwrap();
            self.handle.join().unwrap()
        }
    }

    fn functions(ips: &[usize]) -> Vec<String> {
        frames::resolve(ips)
            .into_iter()
            .map(|frame| frame.function)
            .collect()
    }

    /// Re-runs this test binary on one test with `CHILD_VAR` set; returns the child's stdout.
    fn run_child(test: &str, env: &[(&str, &str)]) -> String {
        let module = module_path!().split_once("::").unwrap().1;
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::{test}"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_VAR, "1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "child failed: {}\n{stdout}\n{stderr}",
            output.status
        );
        stdout
    }

    /// A thread blocked in `recv` is captured in `blocked_receiver`, then still receives.
    #[test]
    fn captures_blocked_receiver() {
        let blocked = Blocked::start();
        let captured = capture(&[blocked.tid], TIMEOUT);
        let Captured::Frames(ips) = &captured[0] else {
            panic!("{captured:?}")
        };
        let resolved = frames::resolve(ips);
        let user = frames::first_user_frame(&resolved).unwrap();
        assert!(
            user.function.ends_with("tests::blocked_receiver"),
            "{resolved:#?}"
        );
        // Builds without debug info (`cargo test --release`) resolve names only.
        if user.file.is_some() {
            let location = frames::short_location(user).unwrap();
            assert!(location.contains("src/stack/linux.rs:"), "{location}");
        }
        assert!(
            resolved.iter().all(|frame| !frame.function.contains("on_signal")),
            "{resolved:#?}"
        );
        assert_eq!(blocked.release(7), 7);
    }

    /// A sleeping thread is captured mid-sleep and still sleeps its full time.
    #[test]
    fn sleeping_thread_sleeps_full_time() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let sleeper = thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            let start = Instant::now();
            thread::sleep(Duration::from_millis(300));
            start.elapsed()
        });
        let tid = tid_rx.recv().unwrap();
        wait_until_sleeping(tid);
        let captured = capture(&[tid], TIMEOUT);
        let Captured::Frames(ips) = &captured[0] else {
            panic!("{captured:?}")
        };
        let functions = functions(ips);
        let in_sleep = |f: &String| f.starts_with("std::thread::") && f.ends_with("::sleep");
        assert!(functions.iter().any(in_sleep), "{functions:#?}");
        assert!(sleeper.join().unwrap() >= Duration::from_millis(300));
    }

    /// A thread that blocks every signal is reported as not answering, within the timeout.
    #[test]
    fn blocked_signals_time_out() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (release, rx) = mpsc::channel::<u32>();
        let deaf = thread::spawn(move || {
            // SAFETY: plain sigset manipulation on locals, then a mask change of this thread.
            let previous = unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                let mut previous: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
                previous
            };
            tid_tx.send(gettid()).unwrap();
            let value = rx.recv().unwrap();
            // Unblocking delivers the stale signal, which must do nothing.
            // SAFETY: restores this thread's previous mask.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
            value
        });
        let tid = tid_rx.recv().unwrap();
        wait_until_sleeping(tid);
        let timeout = Duration::from_millis(200);
        let start = Instant::now();
        let captured = capture(&[tid], timeout);
        let took = start.elapsed();
        assert_eq!(captured, [Captured::NoAnswer]);
        assert!(took < timeout + Duration::from_millis(150), "took {took:?}");
        release.send(5).unwrap();
        assert_eq!(deaf.join().unwrap(), 5);
    }

    /// A thread that has exited is reported as such.
    #[test]
    fn exited_thread() {
        let tid = thread::spawn(gettid).join().unwrap();
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let deadline = Instant::now() + Duration::from_secs(5);
        while unanswered(pid, tid) != Captured::Exited {
            assert!(Instant::now() < deadline, "thread {tid} never went away");
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(capture(&[tid, -1], TIMEOUT), [Captured::Exited, Captured::Exited]);
    }

    /// The calling thread is captured directly, without capture's own frames.
    #[test]
    fn captures_own_thread() {
        let captured = capture(&[gettid()], TIMEOUT);
        let Captured::Frames(ips) = &captured[0] else {
            panic!("{captured:?}")
        };
        let functions = functions(ips);
        assert!(functions[0].contains("captures_own_thread"), "{functions:#?}");
    }

    /// 200 threads are captured in one call (more than the 64 slots), all with frames.
    #[test]
    fn captures_200_threads() {
        let blocked: Vec<Blocked> = (0..200).map(|_| Blocked::start()).collect();
        let tids: Vec<i32> = blocked.iter().map(|thread| thread.tid).collect();
        let captured = capture(&tids, TIMEOUT);
        for answer in &captured {
            assert!(
                matches!(answer, Captured::Frames(ips) if ips.len() > 3),
                "{answer:?}"
            );
        }
        for (value, thread) in blocked.into_iter().enumerate() {
            assert_eq!(thread.release(value as u32), value as u32);
        }
    }

    #[inline(never)]
    fn panic_from(depth: u32) {
        if depth == 0 {
            panic!("unwinding on purpose");
        }
        panic_from(std::hint::black_box(depth - 1));
        std::hint::black_box(depth);
    }

    /// Capturing threads that keep panicking (and walking their stacks in the panic hook) never
    /// crashes the process: without the "inside the unwinder" check it crashed 8 runs out of 9.
    #[test]
    fn survives_panicking_threads() {
        if std::env::var_os(CHILD_VAR).is_none() {
            let stdout = run_child("survives_panicking_threads", &[]);
            assert!(stdout.contains("child ok"), "{stdout}");
            return;
        }
        // Like a default hook with RUST_BACKTRACE=1, minus the printing.
        std::panic::set_hook(Box::new(|_| drop(std::backtrace::Backtrace::force_capture())));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let panickers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, tid_tx) = (stop.clone(), tid_tx.clone());
                thread::spawn(move || {
                    tid_tx.send(gettid()).unwrap();
                    let mut caught = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        caught += std::panic::catch_unwind(|| panic_from(20)).is_err() as u64;
                    }
                    caught
                })
            })
            .collect();
        let tids: Vec<i32> = tid_rx.iter().take(2).collect();
        let start = Instant::now();
        let (mut rounds, mut answered) = (0, 0);
        while start.elapsed() < Duration::from_secs(2) {
            let captured = capture(&tids, Duration::from_millis(100));
            answered += captured
                .iter()
                .filter(|answer| matches!(answer, Captured::Frames(_)))
                .count();
            rounds += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let caught: u64 = panickers.into_iter().map(|thread| thread.join().unwrap()).sum();
        let hits = UNWINDER_HITS.load(Ordering::Relaxed);
        println!("{rounds} rounds, {answered} stacks, {hits} unwinder hits, {caught} panics");
        assert!(caught > 0 && answered > 0);
        println!("child ok");
    }

    /// A handler the program put on the first candidate signal stays; the next signal is used.
    #[test]
    fn keeps_existing_handler() {
        static USER_HANDLER_RAN: AtomicBool = AtomicBool::new(false);
        extern "C" fn user_handler(_signo: c_int) {
            USER_HANDLER_RAN.store(true, Ordering::SeqCst);
        }
        if std::env::var_os(CHILD_VAR).is_none() {
            assert!(run_child("keeps_existing_handler", &[]).contains("child ok"));
            return;
        }
        let first = libc::SIGRTMIN() + 3;
        let user = user_handler as extern "C" fn(c_int) as libc::sighandler_t;
        // SAFETY: installs an async-signal-safe handler in this child process.
        unsafe { libc::signal(first, user) };
        let blocked = Blocked::start();
        assert!(matches!(
            &capture(&[blocked.tid], TIMEOUT)[0],
            Captured::Frames(_)
        ));
        assert_eq!(installed(), Ok(first + 1));
        assert_eq!(handler_of(first), Some(user));
        // SAFETY: raises the signal at this process, whose handler is user_handler.
        unsafe { libc::raise(first) };
        assert!(USER_HANDLER_RAN.load(Ordering::SeqCst));
        assert_eq!(blocked.release(1), 1);
        println!("child ok");
    }

    /// `LEAKCHECK_STACKS=off` makes capture answer `Disabled` without installing anything.
    #[test]
    fn switch_off_disables_capture() {
        if std::env::var_os(CHILD_VAR).is_none() {
            let stdout = run_child("switch_off_disables_capture", &[("LEAKCHECK_STACKS", "off")]);
            assert!(stdout.contains("child ok"));
            return;
        }
        let blocked = Blocked::start();
        assert_eq!(
            crate::stack::capture(&[blocked.tid], TIMEOUT),
            [Captured::Disabled]
        );
        assert!(
            (libc::SIGRTMIN() + 3..libc::SIGRTMAX()).all(|signo| handler_of(signo) == Some(libc::SIG_DFL))
        );
        assert_eq!(blocked.release(1), 1);
        println!("child ok");
    }

    /// The kernel reports a thread blocked on a futex as sleeping in `futex`.
    #[test]
    fn kernel_wait_of_futex_sleeper() {
        let blocked = Blocked::start();
        let wait = kernel_wait(blocked.tid);
        assert_eq!(wait.state, Some('S'), "{wait:?}");
        let futexish = wait.wchan.as_deref().is_some_and(|wchan| wchan.contains("futex"))
            || wait.syscall.as_deref() == Some("futex");
        assert!(futexish, "{wait:?}");
        eprintln!("{wait:?}");
        assert_eq!(blocked.release(1), 1);
    }

    /// Not a check: times capturing and resolving 1000 blocked threads.
    // cargo test [--release] --lib measure_1000_threads -- --ignored --nocapture
    #[test]
    #[ignore]
    fn measure_1000_threads() {
        let blocked: Vec<Blocked> = (0..1000).map(|_| Blocked::start()).collect();
        let tids: Vec<i32> = blocked.iter().map(|thread| thread.tid).collect();
        let start = Instant::now();
        let captured = capture(&tids, TIMEOUT);
        let capturing = start.elapsed();
        let stacks: Vec<&Vec<usize>> = captured
            .iter()
            .map(|answer| match answer {
                Captured::Frames(ips) => ips,
                other => panic!("{other:?}"),
            })
            .collect();
        let start = Instant::now();
        let first: usize = stacks.iter().map(|ips| frames::resolve(ips).len()).sum();
        let resolving = start.elapsed();
        let start = Instant::now();
        let again: usize = stacks.iter().map(|ips| frames::resolve(ips).len()).sum();
        let cached = start.elapsed();
        assert_eq!(first, again);
        eprintln!(
            "1000 threads: capture {capturing:?}, resolve {resolving:?} (first), {cached:?} (cached), \
             {first} frames"
        );
        for (value, thread) in blocked.into_iter().enumerate() {
            assert_eq!(thread.release(value as u32), value as u32);
        }
    }
}

//! The static request/answer cells shared by a capturer and the signal handler.
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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Requests in flight at once.
pub(super) const SLOTS: usize = 64;
/// log2 of [`SLOTS`]: the signal value is `generation << SLOT_BITS | slot`.
pub(super) const SLOT_BITS: u32 = 6;
/// Deepest stack recorded, in frames (a few of them are the handler's, stripped afterwards).
pub(super) const FRAMES: usize = 128;

/// Slot statuses (low [`STATUS_BITS`] of the state word, the generation above them).
pub(super) const IDLE: u64 = 0;
pub(super) const REQUESTED: u64 = 1;
pub(super) const WRITING: u64 = 2;
pub(super) const DONE: u64 = 3;
pub(super) const RETRY: u64 = 4;
pub(super) const ABANDONED: u64 = 5;
pub(super) const STATUS_BITS: u32 = 3;

const _: () = assert!(SLOTS == 1 << SLOT_BITS);

/// One request/answer cell, shared between a capturer and one signal handler at a time.
pub(super) struct Slot {
    /// `generation << STATUS_BITS | status`.
    pub(super) state: AtomicU64,
    /// Program counter where the handler interrupted the thread.
    pub(super) pc: AtomicUsize,
    /// Whether the walk reached the interrupted frame (then `frames` starts there).
    pub(super) found: AtomicBool,
    /// Number of valid entries in `frames`.
    pub(super) len: AtomicUsize,
    /// Instruction pointers, innermost first.
    pub(super) frames: [AtomicUsize; FRAMES],
}

impl Slot {
    pub(super) const fn new() -> Slot {
        Slot {
            state: AtomicU64::new(IDLE),
            pc: AtomicUsize::new(0),
            found: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            frames: [const { AtomicUsize::new(0) }; FRAMES],
        }
    }
}

pub(super) static POOL: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// Source of request generations; starts at 1 so that an all-zero state never matches a request.
pub(super) static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Futex word bumped by every answer; the capturer sleeps on it.
pub(super) static ANSWERS: AtomicU32 = AtomicU32::new(0);

pub(super) fn pack(generation: u64, status: u64) -> u64 {
    generation << STATUS_BITS | status
}

pub(super) fn status_of(state: u64) -> u64 {
    state & ((1 << STATUS_BITS) - 1)
}

/// Copies a DONE slot's frames out, stripped of the handler's own frames.
///
/// The interrupted pc is reported as `pc + 1`, like a return address, because symbolizers look
/// every address up at `ip - 1`: a thread stopped on a function's first instruction would
/// otherwise be reported in the function before it.
pub(super) fn read_frames(cell: &Slot) -> Vec<usize> {
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

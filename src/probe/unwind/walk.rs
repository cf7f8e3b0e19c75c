//! A fast unwinder for the calling thread's own stack: the raw creation backtraces that thread
//! creation (and every other hot path that records where something was started) takes.
//!
//! # Why not libgcc's `_Unwind_Backtrace`
//!
//! Every thread the process creates records its creator's backtrace, and libtest creates one
//! thread per test, so this is paid once per test. `_Unwind_Backtrace` finds and interprets the
//! call-frame information (CFI) of every frame anew: 1–2 µs a frame, 20–100 µs for a creation
//! stack of 20–48 frames, measured on the 2-core CI machine. The frames of thread creation repeat
//! (the same std and libtest code spawns every test thread), so this unwinder evaluates the CFI
//! of each program counter once ([`super::evaluate`]) and keeps the result (how to find the caller's frame from this one) in a small lock-free cache. A
//! warm frame then costs a few loads.
//!
//! # Safety of the walk
//!
//! The walk reads only the calling thread's own stack, between its stack pointer and the top of
//! its stack (found once per thread with `pthread_getattr_np`), and each step must move strictly
//! up the stack. A program counter without CFI, a rule this walker does not know (CFA expressions,
//! registers other than the stack and frame pointers), or any value out of range ends the walk:
//! the backtrace is then shorter, never wrong memory. Where the walk cannot start, [`trace`]
//! returns `None` and the caller falls back to libgcc's `_Unwind_Backtrace`. Other architectures
//! and systems do not compile this module.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::evaluate;

/// Direct-mapped cache of steps by program counter; a slot is written under a sequence lock
/// (odd while written), so a reader never takes a step that belongs to another address.
struct Slot {
    sequence: AtomicU32,
    pc: AtomicUsize,
    step: AtomicU64,
}

/// Slots in the cache: two candidate slots per address (two-way), thousands of distinct
/// return addresses before anything is evicted.
const SLOTS: usize = 4096;
static CACHE: [Slot; SLOTS] = [const {
    Slot {
        sequence: AtomicU32::new(0),
        pc: AtomicUsize::new(0),
        step: AtomicU64::new(0),
    }
}; SLOTS];

/// The first of the two slots an address may live in (the other is its neighbour `^ 1`).
#[inline(always)]
fn first_slot(pc: usize) -> usize {
    ((pc as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// The two slots an address may live in.
fn slots(pc: usize) -> [&'static Slot; 2] {
    let first = first_slot(pc);
    [&CACHE[first], &CACHE[first ^ 1]]
}

/// The packed step cached in `slot` for `pc`, if that slot holds it.
#[inline(always)]
fn cached_in(slot: &Slot, pc: usize) -> Option<u64> {
    let before = slot.sequence.load(Ordering::Acquire);
    if before & 1 == 0 && slot.pc.load(Ordering::Acquire) == pc {
        let step = slot.step.load(Ordering::Acquire);
        if slot.sequence.load(Ordering::Acquire) == before {
            return Some(step);
        }
    }
    None
}

/// The packed step cached for `pc`. Written for debug builds too (what `cargo test` runs):
/// no iterator adapters, arrays or closures on this path, which run per frame.
#[inline(always)]
fn cached(pc: usize) -> Option<u64> {
    let first = first_slot(pc);
    match cached_in(&CACHE[first], pc) {
        Some(step) => Some(step),
        None => cached_in(&CACHE[first ^ 1], pc),
    }
}

fn remember(pc: usize, step: u64) {
    let [first, second] = slots(pc);
    // An empty slot if there is one, else the second (so the first keeps its older entry).
    let slot = if first.pc.load(Ordering::Relaxed) == 0 {
        first
    } else {
        second
    };
    let sequence = slot.sequence.load(Ordering::Relaxed);
    if sequence & 1 == 1
        || slot
            .sequence
            .compare_exchange(sequence, sequence + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return; // another thread is writing this slot: skip caching
    }
    slot.pc.store(pc, Ordering::Release);
    slot.step.store(step, Ordering::Release);
    slot.sequence.store(sequence + 2, Ordering::Release);
}

/// A cached "no step from here" (no CFI, or a rule this walker does not follow), so that the
/// outermost frame of every walk is not evaluated anew each time. No packed step has these
/// bits: a step's bits above 50 are zero.
pub(crate) const STOP: u64 = u64::MAX;

/// The packed step for `pc`, or [`STOP`]; evaluates and caches it on first sight.
fn step_for(pc: usize) -> u64 {
    if let Some(step) = cached(pc) {
        return step;
    }
    let step = evaluate(pc);
    remember(pc, step);
    step
}

thread_local! {
    /// The top (highest address) of this thread's stack, once known.
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
}

fn stack_top() -> Option<usize> {
    let known = STACK_TOP.try_with(Cell::get).ok()?;
    if known != 0 {
        return Some(known);
    }
    // SAFETY: plain data, all-zero is valid; the attr is initialized by pthread_getattr_np and
    // destroyed below.
    let top = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut low: *mut std::ffi::c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if got != 0 {
            return None;
        }
        low as usize + size
    };
    let _ = STACK_TOP.try_with(|cell| cell.set(top));
    Some(top)
}

/// The registers a walk starts from: this function's own pc, sp, fp (and lr on aarch64).
#[inline(always)]
fn registers() -> (usize, usize, usize, usize) {
    let (pc, sp, fp, lr): (usize, usize, usize, usize);
    // SAFETY: reads registers only.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {fp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            options(nomem, nostack, preserves_flags)
        );
        lr = 0;
    }
    // SAFETY: reads registers only.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!(
            "adr {pc}, .",
            "mov {sp}, sp",
            "mov {fp}, x29",
            "mov {lr}, x30",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            lr = out(reg) lr,
            options(nomem, nostack, preserves_flags)
        );
    }
    (pc, sp, fp, lr)
}

/// Registers a walk starts from.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Registers {
    pc: usize,
    sp: usize,
    fp: usize,
    lr: usize,
}

/// Most stack reads a remembered walk holds (two per frame).
const READS: usize = 128;
/// Most frames a remembered walk holds.
const FRAMES: usize = 64;

/// The calling thread's last walk: a walk is a pure function of its start registers, the
/// stack words it read and the (immutable) CFI, so when a thread walks again from the same
/// registers and those words still hold the same values, it gets the same frames. Threads
/// that create threads do it from the same place over and over (libtest's main thread spawns
/// every test from one call site; a pool spawns its workers in a loop), and checking ~2 words
/// a frame costs a fraction of a walk in a debug build. (Optimised code often uses the frame
/// pointer register as a general one, so its walks rarely replay; they are fast anyway.)
struct Last {
    registers: Registers,
    /// `(address, value)` of every stack word the walk read, in order.
    reads: [(usize, usize); READS],
    read_count: usize,
    frames: [usize; FRAMES],
    len: usize,
    /// The room the walk had (`out.len()`): a walk cut by room is only valid for that room.
    room: usize,
    /// The loader's unload count the walk ran under: after an unload, nothing is replayed.
    unloads: u64,
}

thread_local! {
    static LAST: std::cell::RefCell<Option<Box<Last>>> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// Replays on this thread, for the tests.
    static REPLAYS: Cell<usize> = const { Cell::new(0) };
}

impl Last {
    /// The remembered frames, if the walk from `registers` with `room` would repeat them.
    fn replay(&self, registers: Registers, room: usize, out: &mut [usize]) -> Option<usize> {
        if self.registers != registers
            || self.room != room
            || self.read_count == READS
            || self.unloads != UNLOADS_SEEN.load(Ordering::Acquire)
        {
            return None;
        }
        let mut i = 0;
        while i < self.read_count {
            let (at, value) = self.reads[i];
            // SAFETY: the same address the previous walk read, from the same registers of the
            // same thread: inside this thread's live stack, above the calling frame (checked
            // by that walk against the stack bounds, which do not change).
            if unsafe { *(at as *const usize) } != value {
                return None;
            }
            i += 1;
        }
        out[..self.len].copy_from_slice(&self.frames[..self.len]);
        #[cfg(test)]
        REPLAYS.with(|replays| replays.set(replays.get() + 1));
        Some(self.len)
    }
}

/// The loader's unload count when the cache was last emptied.
static UNLOADS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Empties the cache after a library was unloaded (`dlclose`): another library loaded at its
/// address later must not take its steps. One `dl_iterate_phdr` call that stops at the first
/// object (the loader's counters), the only cost while nothing is unloaded.
fn follow_unloads() {
    let Some(now) = super::loaded_generation() else {
        return;
    };
    let seen = UNLOADS_SEEN.load(Ordering::Acquire);
    if now.subs == seen
        || UNLOADS_SEEN
            .compare_exchange(seen, now.subs, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    for slot in &CACHE {
        let sequence = slot.sequence.load(Ordering::Relaxed);
        if sequence & 1 == 0
            && slot
                .sequence
                .compare_exchange(sequence, sequence + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            slot.pc.store(0, Ordering::Release);
            slot.sequence.store(sequence + 2, Ordering::Release);
        }
    }
}

/// The walk on the calling thread's live stack; `None` if it could not even start (then the
/// slow path runs).
#[inline(never)]
pub(crate) fn trace(out: &mut [usize]) -> Option<usize> {
    follow_unloads();
    let (pc, sp, fp, lr) = registers();
    let registers = Registers { pc, sp, fp, lr };
    let room = out.len();
    LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if let Some(len) = last.as_ref().and_then(|last| last.replay(registers, room, out)) {
            return Some(len);
        }
        // A replay needs no stack bounds: the walk it repeats checked every read.
        let top = stack_top()?;
        let memo = last.get_or_insert_with(|| {
            Box::new(Last {
                registers,
                reads: [(0, 0); READS],
                read_count: 0,
                frames: [0; FRAMES],
                len: 0,
                room: 0,
                unloads: 0,
            })
        });
        memo.read_count = 0;
        memo.unloads = UNLOADS_SEEN.load(Ordering::Acquire);
        let len = walk(registers, top, out, Some(memo));
        if room <= FRAMES && len <= FRAMES {
            memo.registers = registers;
            memo.room = room;
            memo.len = len;
            memo.frames[..len].copy_from_slice(&out[..len]);
        } else {
            memo.read_count = READS; // not replayable
        }
        Some(len)
    })
    .ok()
    .flatten()
    .or_else(|| Some(walk(registers, stack_top()?, out, None)))
}

/// Follows the cached (else evaluated) CFI steps from `registers` up the calling thread's
/// stack (below `top`), recording the words it reads into `memo`.
fn walk(registers: Registers, top: usize, out: &mut [usize], mut memo: Option<&mut Last>) -> usize {
    let Registers {
        mut pc,
        mut sp,
        mut fp,
        mut lr,
    } = registers;
    let word = size_of::<usize>();
    let mut len = 0;
    // The first lookup is at the pc itself; later ones at a return address minus one, which
    // lies inside the call instruction (a return address may start the next function).
    let mut lookup = pc;
    while len < out.len() {
        out[len] = pc;
        len += 1;
        let step = match cached(lookup) {
            Some(step) => step,
            None => step_for(lookup),
        };
        if step == STOP {
            break;
        }
        // See `Step::pack` for the layout.
        let base = if step >> 32 & 1 == 1 { fp } else { sp };
        let cfa = base.wrapping_add(step as u32 as i32 as isize as usize);
        if cfa <= sp || cfa > top {
            break;
        }
        let ra_slot = step >> 33 & 0x1ff;
        let ra = if ra_slot & 1 == 1 {
            let at = cfa.wrapping_add((((ra_slot >> 1) as u8 as i8 as isize) * 8) as usize);
            // Only this thread's live stack, above the current frame.
            if at < sp || at > top - word || at % word != 0 {
                break;
            }
            // SAFETY: `[sp, top)` is this thread's mapped stack, and the address is in it and
            // aligned (a plain read: `read_volatile` is a checked call in debug builds).
            let value = unsafe { *(at as *const usize) };
            remember_read(&mut memo, at, value);
            value
        } else {
            lr
        };
        let fp_slot = step >> 42 & 0x1ff;
        if fp_slot & 1 == 1 {
            let at = cfa.wrapping_add((((fp_slot >> 1) as u8 as i8 as isize) * 8) as usize);
            if at < sp || at > top - word || at % word != 0 {
                break;
            }
            // SAFETY: as above.
            fp = unsafe { *(at as *const usize) };
            remember_read(&mut memo, at, fp);
        }
        if ra == 0 {
            break;
        }
        lr = 0;
        sp = cfa;
        pc = ra;
        lookup = ra - 1;
    }
    len
}

/// Records a read for [`Last::replay`]; past [`READS`] the walk is not replayable.
#[inline(always)]
fn remember_read(memo: &mut Option<&mut Last>, at: usize, value: usize) {
    if let Some(memo) = memo {
        if memo.read_count < READS {
            memo.reads[memo.read_count] = (at, value);
            memo.read_count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk without the remembered one: what a replay must equal.
    #[inline(never)]
    fn trace_fresh(out: &mut [usize]) -> usize {
        let top = stack_top().unwrap();
        let (pc, sp, fp, lr) = registers();
        walk(Registers { pc, sp, fp, lr }, top, out, None)
    }

    /// Both walks from one frame; frames from the third on (the caller of `both`) compared.
    #[inline(never)]
    fn both() -> (Vec<usize>, Vec<usize>) {
        let mut remembered = [0usize; 48];
        let len = trace(&mut remembered).unwrap();
        let mut fresh = [0usize; 48];
        let fresh_len = trace_fresh(&mut fresh);
        (remembered[2..len].to_vec(), fresh[2..fresh_len].to_vec())
    }

    #[inline(never)]
    fn via_a() -> (Vec<usize>, Vec<usize>) {
        std::hint::black_box(1u8);
        std::hint::black_box(both())
    }

    #[inline(never)]
    fn via_b() -> (Vec<usize>, Vec<usize>) {
        std::hint::black_box(2u16);
        std::hint::black_box(both())
    }

    /// An unloaded library empties the cache (a library loaded at its address later must not
    /// take its steps); loading one does not.
    #[test]
    fn an_unload_empties_the_cache() {
        const FAKE: usize = 0x0dea_d000;
        let mut out = [0usize; 48];
        trace(&mut out).unwrap();
        remember(FAKE, 42);
        // SAFETY: a small library of glibc's that runs no code of note when loaded.
        let handle = unsafe { libc::dlopen(c"libBrokenLocale.so.1".as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            eprintln!("no library to load: skipped");
            return;
        }
        trace(&mut out).unwrap();
        assert_eq!(cached(FAKE), Some(42), "a load keeps the cache");
        let unloads = super::super::loaded_generation().unwrap().subs;
        // SAFETY: opened above, nothing of it used.
        unsafe { libc::dlclose(handle) };
        if super::super::loaded_generation().unwrap().subs == unloads {
            eprintln!("the library stayed loaded: skipped");
            return;
        }
        trace(&mut out).unwrap();
        assert_eq!(cached(FAKE), None, "an unload empties the cache");
    }

    /// A remembered walk is replayed only when it would repeat: callers that reach the walk
    /// at the same depth (same registers) from different places get their own frames, and a
    /// loop calling from one place gets replays.
    #[test]
    fn replay_is_exact() {
        let replays = REPLAYS.with(Cell::get);
        let mut seen = Vec::new();
        for round in 0..6 {
            let (remembered, fresh) = if round % 3 == 0 { via_a() } else { via_b() };
            assert_eq!(remembered, fresh, "round {round}");
            seen.push(remembered[0]);
        }
        let (remembered, fresh) = via_a();
        assert_eq!(remembered, fresh, "another call site");
        assert_ne!(seen[0], seen[1], "the two callers return to different places");
        // Optimised code often uses the frame-pointer register as a general one, so its value
        // (part of the start registers) differs between calls: replays are for debug builds,
        // where a walk is slow.
        // (An unload by a test running meanwhile voids the remembered walk once: try again.)
        if cfg!(debug_assertions) {
            for _ in 0..20 {
                if REPLAYS.with(Cell::get) > replays {
                    break;
                }
                via_b();
                via_b();
            }
            assert!(REPLAYS.with(Cell::get) > replays, "a loop from one place replays");
        }
    }
}

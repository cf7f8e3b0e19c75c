//! The calling thread's own backtrace, fast: the raw creation backtraces that thread creation
//! (and every other hot path that records where something was started) takes.
//!
//! The walk itself is [`walk`] (its docs say why it is not libgcc's `_Unwind_Backtrace`). What it
//! cannot do alone stays here:
//! - [`evaluate`]: a program counter's call-frame information (CFI), which the walker has not
//!   seen yet, evaluated by gimli ([`cfi`], on the loaded objects' tables found by [`modules`])
//!   and packed into the one word the walker caches ([`step`]);
//! - libgcc's unwinder, where the fast walk is not implemented or cannot start.

/// Records the return addresses of the calling thread's stack into `out`, innermost first;
/// returns how many were written.
#[inline(never)]
pub(crate) fn trace(out: &mut [usize]) -> usize {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    if let Some(len) = walk::trace(out) {
        return len;
    }
    slow_trace(out)
}

/// The fast walk's cache miss: the packed step for `pc`, or `u64::MAX` (no step from here).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
fn evaluate(pc: usize) -> u64 {
    cfi::evaluate(pc).map_or(u64::MAX, step::Step::pack)
}

/// `_Unwind_Backtrace` through the `backtrace` crate (also the fast walk's fallback).
fn slow_trace(out: &mut [usize]) -> usize {
    let mut len = 0;
    // SAFETY: on Linux the unwinder behind `trace_unsynchronized` is thread-safe; the lock that
    // `trace` would take exists for other platforms.
    unsafe {
        backtrace::trace_unsynchronized(|frame| match out.get_mut(len) {
            Some(slot) => {
                *slot = frame.ip() as usize;
                len += 1;
                len < out.len()
            }
            None => false,
        });
    }
    len
}

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod cfi;
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod modules;
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) use modules::{generation as loaded_generation, Generation};
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod step;
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod walk;

#[cfg(test)]
mod tests {
    use super::*;

    /// Recurses `depth` times, then traces; `black_box` keeps every call a real frame (no tail
    /// call, no loop) in optimised builds too.
    #[inline(never)]
    fn nested(depth: usize, out: &mut [usize]) -> usize {
        if depth == 0 {
            std::hint::black_box(trace(out))
        } else {
            std::hint::black_box(nested(depth - 1, out))
        }
    }

    /// The fast walk finds the same return addresses as libgcc's unwinder, frame for frame, past
    /// the frames of the two walkers themselves.
    #[test]
    fn agrees_with_libgcc() {
        for depth in [0, 5, 30] {
            let mut fast = [0usize; 64];
            let fast_len = nested(depth, &mut fast);
            let mut slow = [0usize; 64];
            let slow_len = {
                #[inline(never)]
                fn slow_nested(depth: usize, out: &mut [usize]) -> usize {
                    if depth == 0 {
                        std::hint::black_box(slow_trace(out))
                    } else {
                        std::hint::black_box(slow_nested(depth - 1, out))
                    }
                }
                slow_nested(depth, &mut slow)
            };
            // libgcc ends with a 0 for the end of the stack.
            let slow_len = slow[..slow_len]
                .iter()
                .rposition(|&ip| ip != 0)
                .map_or(0, |last| last + 1);
            // Both end with this test's callers (libtest, std, start_thread); compare from the
            // outermost frame inward, up to the first frame of `nested`/`slow_nested`.
            let common = fast[..fast_len]
                .iter()
                .rev()
                .zip(slow[..slow_len].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            assert!(
                common >= 3 && fast_len >= depth + 3,
                "depth {depth}: fast {fast_len} frames, libgcc {slow_len}, {common} in common\nfast {:x?}\nslow {:x?}",
                &fast[..fast_len],
                &slow[..slow_len]
            );
            // Every frame of the recursion is found.
            let recursion = symbols_of(&fast[..fast_len])
                .iter()
                .filter(|f| f.ends_with("tests::nested"))
                .count();
            assert!(recursion > depth, "depth {depth}: {recursion} frames of `nested`");
        }
    }

    fn symbols_of(ips: &[usize]) -> Vec<String> {
        crate::probe::symbols::resolve(ips)
            .into_iter()
            .map(|frame| frame.function)
            .collect()
    }
}

#[cfg(test)]
mod measure {
    /// Prints the cost of one creation-size backtrace, fast and libgcc (not a timed assertion).
    #[test]
    #[ignore]
    fn print_cost() {
        #[inline(never)]
        fn nested(depth: usize, f: fn(&mut [usize]) -> usize) -> usize {
            let mut out = [0usize; 48];
            if depth == 0 {
                f(&mut out)
            } else {
                std::hint::black_box(nested(depth - 1, f))
            }
        }
        for depth in [5, 20, 40] {
            for (name, f) in [
                ("fast", super::trace as fn(&mut [usize]) -> usize),
                ("libgcc", super::slow_trace),
            ] {
                nested(depth, f);
                let started = std::time::Instant::now();
                for _ in 0..2000 {
                    nested(depth, f);
                }
                println!(
                    "depth {depth} {name}: {:.2} us",
                    started.elapsed().as_secs_f64() * 1e6 / 2000.0
                );
            }
        }
    }

    /// Prints the cost of a cache miss: the step of each return address of this stack, first in
    /// a process (the module list and tables still to read) and then again (not a timed
    /// assertion).
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[test]
    #[ignore]
    fn print_miss_cost() {
        let mut stack = [0usize; 64];
        let len = super::slow_trace(&mut stack);
        let pcs: Vec<usize> = stack[..len]
            .iter()
            .filter(|&&pc| pc != 0)
            .map(|pc| pc - 1)
            .collect();
        let started = std::time::Instant::now();
        for &pc in &pcs {
            std::hint::black_box(super::evaluate(pc));
        }
        let first = started.elapsed();
        let rounds = 200;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            for &pc in &pcs {
                std::hint::black_box(super::evaluate(pc));
            }
        }
        println!(
            "{} pcs: first {:.2} us a pc, then {:.2} us a pc",
            pcs.len(),
            first.as_secs_f64() * 1e6 / pcs.len() as f64,
            started.elapsed().as_secs_f64() * 1e6 / (rounds * pcs.len()) as f64
        );
    }
}

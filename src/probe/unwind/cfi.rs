//! The call-frame information (CFI) of a program counter, evaluated by gimli and reduced to the
//! one [`Step`] the fast walker follows: the walker's cache miss. gimli finds the covering FDE
//! through the module's `.eh_frame_hdr` search table and runs its CIE's and its own programs up to
//! the program counter.
//!
//! Each program counter is evaluated once per process (the walker caches the step), so what is
//! kept here is what every miss would otherwise pay again: the module list ([`modules`]) and one
//! unwind context (gimli's table of rules, large to set up). The context is shared and only ever
//! tried: an evaluation that finds it busy makes its own rather than wait, since this runs inside
//! the interposed `pthread_create` of any program.

use std::sync::{Mutex, TryLockError};

use gimli::{BaseAddresses, EhFrame, EhFrameHdr, NativeEndian, UnwindContext, UnwindSection as _};

use super::modules;
use super::step::Step;

/// The step for `pc`, if its module has CFI for it that the walker can follow.
pub(super) fn evaluate(pc: usize) -> Option<Step> {
    let module = modules::module_of(pc)?;
    let (hdr, eh_frame) = (module.eh_frame_hdr(), module.eh_frame());
    // SAFETY: `pc` is on the calling thread's stack, so its object is loaded, and the module was
    // read in the loader's current generation.
    let (hdr_bytes, eh_frame_bytes) = unsafe { (hdr.bytes(), eh_frame.bytes()) };
    let bases = BaseAddresses::default()
        .set_eh_frame_hdr(hdr.address as u64)
        .set_eh_frame(eh_frame.address as u64);
    let parsed = EhFrameHdr::new(hdr_bytes, NativeEndian)
        .parse(&bases, size_of::<usize>() as u8)
        .ok()?;
    let table = parsed.table()?;
    let eh_frame = EhFrame::new(eh_frame_bytes, NativeEndian);
    with_context(|context| {
        let row = table
            .unwind_info_for_address(&eh_frame, &bases, context, pc as u64, |section, bases, offset| {
                section.cie_from_offset(bases, offset)
            })
            .ok()?;
        Step::of_row(row)
    })
}

/// Runs `evaluate` with the shared unwind context, or with a new one if another thread holds it.
fn with_context<T>(evaluate: impl FnOnce(&mut UnwindContext<usize>) -> T) -> T {
    static SHARED: Mutex<Option<Box<UnwindContext<usize>>>> = Mutex::new(None);
    let mut shared = match SHARED.try_lock() {
        Ok(shared) => Some(shared),
        // A panic inside an evaluation leaves a context that the next one resets anyway.
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    match shared.as_mut() {
        Some(shared) => evaluate(shared.get_or_insert_with(|| Box::new(UnwindContext::new()))),
        None => evaluate(&mut Box::new(UnwindContext::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function's first instruction: the call has just pushed the return address (x86-64) or
    /// left it in the link register (aarch64), and the frame pointer is the caller's.
    #[test]
    fn first_instruction_of_a_function() {
        for function in [
            first_instruction_of_a_function as fn() as usize,
            libc::getpid as *const () as usize,
        ] {
            let step = evaluate(function).expect("CFI for a function's entry");
            #[cfg(target_arch = "x86_64")]
            assert_eq!(step.pack(), 8 | 1 << 33 | (-1i8 as u8 as u64) << 34, "{step:?}");
            #[cfg(target_arch = "aarch64")]
            assert_eq!(step.pack(), 0, "{step:?}");
        }
    }

    /// Every return address of this stack has a step (this binary's frames, std's, libc's),
    /// and an address in no module has none.
    #[test]
    fn every_frame_of_this_stack() {
        let mut stack = [0usize; 64];
        let len = super::super::slow_trace(&mut stack);
        let pcs: Vec<usize> = stack[..len]
            .iter()
            .filter(|&&pc| pc != 0)
            .map(|pc| pc - 1)
            .collect();
        assert!(pcs.len() > 5, "{pcs:x?}");
        // The outermost frame (`clone3`'s or `_start`'s) has no caller to step to.
        for &pc in &pcs[..pcs.len() - 1] {
            assert!(evaluate(pc).is_some(), "pc {pc:#x}");
        }
        assert_eq!(evaluate(1), None);
    }
}

//! The step the fast walker follows from a frame to its caller's, and the one word it is packed
//! into: the walker ([`super::walk`]) caches that word per program counter and decodes it
//! itself, so the layout written by [`Step::pack`] is an interface between the two.

use gimli::{CfaRule, Register, RegisterRule, UnwindContextStorage, UnwindTableRow};

#[cfg(target_arch = "x86_64")]
const SP: Register = gimli::X86_64::RSP;
#[cfg(target_arch = "x86_64")]
const FP: Register = gimli::X86_64::RBP;
#[cfg(target_arch = "x86_64")]
const RA: Register = gimli::X86_64::RA;
#[cfg(target_arch = "aarch64")]
const SP: Register = gimli::AArch64::SP;
#[cfg(target_arch = "aarch64")]
const FP: Register = gimli::AArch64::X29;
#[cfg(target_arch = "aarch64")]
const RA: Register = gimli::AArch64::X30;

/// How to find the caller's frame from a frame stopped at some program counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Step {
    /// The CFA is the frame pointer (else the stack pointer) plus `cfa_offset`.
    cfa_from_fp: bool,
    cfa_offset: i32,
    /// Where the return address is saved, relative to the CFA; `None`: still in the return
    /// address register (aarch64 before the prologue saved it).
    ra: Option<i32>,
    /// Where the caller's frame pointer is saved, relative to the CFA; `None`: unchanged.
    fp: Option<i32>,
}

impl Step {
    /// The step a row of the unwind table describes, if the walker can follow it: a CFA at an
    /// offset from the stack or frame pointer, and the return address and frame pointer either
    /// kept or saved near the CFA. Anything else (expressions, other registers) is `None`.
    pub(super) fn of_row<S: UnwindContextStorage<usize>>(row: &UnwindTableRow<usize, S>) -> Option<Step> {
        let (cfa_from_fp, cfa_offset) = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if *register == SP => (false, *offset),
            CfaRule::RegisterAndOffset { register, offset } if *register == FP => (true, *offset),
            _ => return None,
        };
        // `None` (no rule) and `SameValue` keep the register; an offset says where it is saved.
        let saved = |register| match row.register(register) {
            Some(RegisterRule::Offset(offset)) => Some(Some(i32::try_from(offset).ok()?)),
            None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => Some(None),
            Some(_) => None,
        };
        let step = Step {
            cfa_from_fp,
            cfa_offset: i32::try_from(cfa_offset).ok()?,
            ra: saved(RA)?,
            fp: saved(FP)?,
        };
        step.fits().then_some(step)
    }

    /// Packs into one word: the CFA offset (bits 0–31), the CFA base (bit 32: the frame pointer),
    /// then the return address (bits 33–41) and frame pointer (bits 42–50) slots, each a presence
    /// bit and a signed offset in words of 8 bytes. Bits above 50 are zero, so no step packs to
    /// the walker's `STOP` (`u64::MAX`).
    pub(super) fn pack(self) -> u64 {
        let slot =
            |offset: Option<i32>| offset.map_or(0, |offset| ((offset / 8) as i8 as u8 as u64) << 1 | 1);
        (self.cfa_offset as u32 as u64)
            | (self.cfa_from_fp as u64) << 32
            | slot(self.ra) << 33
            | slot(self.fp) << 42
    }

    /// Saved registers sit at word-aligned offsets within ±1 KiB of the CFA (what a slot holds).
    fn fits(self) -> bool {
        [self.ra, self.fp]
            .into_iter()
            .flatten()
            .all(|offset| offset % 8 == 0 && (-1024..1024).contains(&offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walker's reading of a packed word ([`super::walk`]), written out once more.
    fn unpack(word: u64) -> Step {
        let slot = |bits: u64| (bits & 1 == 1).then_some(i32::from((bits >> 1) as u8 as i8) * 8);
        Step {
            cfa_offset: word as u32 as i32,
            cfa_from_fp: (word >> 32) & 1 == 1,
            ra: slot(word >> 33 & 0x1ff),
            fp: slot(word >> 42 & 0x1ff),
        }
    }

    /// Steps survive packing, including negative offsets and absent registers, and never pack to
    /// the walker's `STOP`.
    #[test]
    fn steps_pack() {
        for step in [
            Step {
                cfa_from_fp: false,
                cfa_offset: 8,
                ra: Some(-8),
                fp: None,
            },
            Step {
                cfa_from_fp: true,
                cfa_offset: 16,
                ra: Some(-8),
                fp: Some(-16),
            },
            Step {
                cfa_from_fp: false,
                cfa_offset: 123_456,
                ra: None,
                fp: Some(-1024),
            },
        ] {
            assert!(step.fits());
            assert_eq!(unpack(step.pack()), step);
            assert_eq!(step.pack() >> 51, 0, "{step:?}");
        }
    }

    /// A register saved off the word grid or beyond ±1 KiB cannot be packed.
    #[test]
    fn far_or_unaligned_slots_do_not_fit() {
        for (ra, fp) in [(Some(-4), None), (Some(-8), Some(1024)), (None, Some(-1032))] {
            let step = Step {
                cfa_from_fp: false,
                cfa_offset: 16,
                ra,
                fp,
            };
            assert!(!step.fits(), "{step:?}");
        }
    }
}

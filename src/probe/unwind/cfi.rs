//! The call-frame information (CFI) of a program counter: found in the loaded object's
//! `.eh_frame` through its `.eh_frame_hdr` search table, evaluated, and reduced to the one
//! [`Step`] the fast walker follows. The slow path of [`super::fast`]: each program counter is
//! evaluated once per process, then cached there.
//!
//! The usual case is read by hand: the search table (a sorted array of 4-byte pairs) here, the
//! FDE and its program in [`super::fde`]. gimli, unoptimised in the debug builds `cargo test`
//! makes, cost ~75k instructions a program counter in an 80 MB test binary (~30k of them the
//! table's 17 probes), and the first thread creation of every process paid it for each of its ~20
//! frames: ~1.4M instructions in every `cargo nextest` test's process. Anything unusual (another
//! table encoding, an instruction the hand-written reader does not know) is left to gimli.

use std::sync::{PoisonError, RwLock};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EhFrameOffset, NativeEndian, Register, RegisterRule,
    UnwindContext, UnwindSection as _,
};

#[cfg(target_arch = "x86_64")]
pub(super) const SP: Register = gimli::X86_64::RSP;
#[cfg(target_arch = "x86_64")]
pub(super) const FP: Register = gimli::X86_64::RBP;
#[cfg(target_arch = "x86_64")]
pub(super) const RA: Register = gimli::X86_64::RA;
#[cfg(target_arch = "aarch64")]
pub(super) const SP: Register = gimli::AArch64::SP;
#[cfg(target_arch = "aarch64")]
pub(super) const FP: Register = gimli::AArch64::X29;
#[cfg(target_arch = "aarch64")]
pub(super) const RA: Register = gimli::AArch64::X30;

/// How to find the caller's frame from a frame stopped at some program counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Step {
    /// The CFA is the frame pointer (else the stack pointer) plus `cfa_offset`.
    pub(super) cfa_from_fp: bool,
    pub(super) cfa_offset: i32,
    /// Where the return address is saved, relative to the CFA; `None`: still in the return
    /// address register (aarch64 before the prologue saved it).
    pub(super) ra: Option<i32>,
    /// Where the caller's frame pointer is saved, relative to the CFA; `None`: unchanged.
    pub(super) fp: Option<i32>,
}

impl Step {
    /// Packs into one word: the CFA offset (32 bits), the CFA base (1 bit), then the return
    /// address and frame pointer slots in words of 8 bytes (a presence bit and 8 signed bits
    /// each). [`Step::fits`] says whether a step can be packed.
    pub(super) fn pack(self) -> u64 {
        let slot =
            |offset: Option<i32>| offset.map_or(0, |offset| ((offset / 8) as i8 as u8 as u64) << 1 | 1);
        (self.cfa_offset as u32 as u64)
            | (self.cfa_from_fp as u64) << 32
            | slot(self.ra) << 33
            | slot(self.fp) << 42
    }

    #[cfg(test)]
    pub(super) fn unpack(word: u64) -> Step {
        let slot = |bits: u64| (bits & 1 == 1).then_some(i32::from((bits >> 1) as u8 as i8) * 8);
        Step {
            cfa_offset: word as u32 as i32,
            cfa_from_fp: (word >> 32) & 1 == 1,
            ra: slot(word >> 33 & 0x1ff),
            fp: slot(word >> 42 & 0x1ff),
        }
    }

    /// Saved registers sit at word-aligned offsets within ±1 KiB of the CFA.
    pub(super) fn fits(self) -> bool {
        [self.ra, self.fp]
            .into_iter()
            .flatten()
            .all(|offset| offset % 8 == 0 && (-1024..1024).contains(&offset))
    }
}

/// One loaded object's unwind tables.
#[derive(Clone, Copy)]
struct Module {
    /// Executable range `[start, end)`.
    start: usize,
    end: usize,
    eh_frame_hdr: usize,
    eh_frame_hdr_len: usize,
    /// End of the loaded segment that holds `.eh_frame` (its length is not recorded).
    segment_end: usize,
}

static MODULES: RwLock<Vec<Module>> = RwLock::new(Vec::new());

fn module_of(pc: usize) -> Option<Module> {
    let find = |modules: &[Module]| modules.iter().copied().find(|m| (m.start..m.end).contains(&pc));
    if let Some(found) = find(&MODULES.read().unwrap_or_else(PoisonError::into_inner)) {
        return Some(found);
    }
    // A module loaded since (dlopen), or a pc outside any: read the list again.
    let fresh = loaded_modules();
    let found = find(&fresh);
    *MODULES.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    found
}

fn loaded_modules() -> Vec<Module> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the Vec passed below; `info` and its headers are valid during
        // the callback.
        let (modules, info) = unsafe { (&mut *data.cast::<Vec<Module>>(), &*info) };
        // SAFETY: dlpi_phdr points to dlpi_phnum headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = info.dlpi_addr as usize;
        let Some(hdr) = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME) else {
            return 0;
        };
        let eh_frame_hdr = base + hdr.p_vaddr as usize;
        let loads = || headers.iter().filter(|h| h.p_type == libc::PT_LOAD);
        let segment_end = loads()
            .map(|h| (base + h.p_vaddr as usize, base + (h.p_vaddr + h.p_memsz) as usize))
            .filter(|(start, _)| *start <= eh_frame_hdr)
            .map(|(_, end)| end)
            .max()
            .unwrap_or(eh_frame_hdr + hdr.p_memsz as usize);
        for text in loads().filter(|h| h.p_flags & libc::PF_X != 0) {
            let start = base + text.p_vaddr as usize;
            modules.push(Module {
                start,
                end: start + text.p_memsz as usize,
                eh_frame_hdr,
                eh_frame_hdr_len: hdr.p_memsz as usize,
                segment_end,
            });
        }
        0
    }
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: `visit` matches the callback type and only uses `modules` during the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut modules as *mut Vec<Module>).cast()) };
    modules
}

/// `DW_EH_PE_datarel | DW_EH_PE_sdata4`: the table encoding every linker writes on these targets.
const DATAREL_SDATA4: u8 = 0x3b;
/// `DW_EH_PE_pcrel | DW_EH_PE_sdata4` and `DW_EH_PE_udata4`: the usual encodings of the
/// header's two fields before the table.
const PCREL_SDATA4: u8 = 0x1b;
const UDATA4: u8 = 0x03;

/// The address of the FDE that covers `pc` if any does, by binary search of the header's table
/// (entries sorted by start address, both fields relative to the header); `Err` if the table is
/// not in the usual encoding (then gimli searches).
fn search_table(hdr: &[u8], hdr_address: usize, pc: usize) -> Result<Option<usize>, ()> {
    if hdr.len() < 12 || hdr[0] != 1 || hdr[1] != PCREL_SDATA4 || hdr[2] != UDATA4 || hdr[3] != DATAREL_SDATA4
    {
        return Err(());
    }
    // Indexing byte by byte: a debug build runs this unoptimised, and a slice with `try_into`
    // costs ten times as much a read.
    let word = |at: usize| i32::from_ne_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]]);
    let count = word(8) as u32 as usize;
    if (hdr.len() - 12) / 8 < count {
        return Err(());
    }
    let target = pc.wrapping_sub(hdr_address) as isize;
    // The last entry whose start is at or below `pc`.
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        let start = word(12 + middle * 8) as isize;
        if start <= target {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    if low == 0 {
        return Ok(None);
    }
    let fde = word(12 + (low - 1) * 8 + 4) as isize;
    Ok(Some(hdr_address.wrapping_add(fde as usize)))
}

/// Evaluates the CFI for `pc` (the slow path): by hand for the usual table and program
/// ([`fde`](super::fde)), else with gimli.
pub(super) fn evaluate(pc: usize) -> Option<Step> {
    let tables = Tables::of(&module_of(pc)?)?;
    match search_table(tables.hdr, tables.hdr_address, pc) {
        Ok(None) => None,
        Ok(Some(fde_address)) => {
            let offset = fde_address.checked_sub(tables.eh_frame_address)?;
            match super::fde::step_at(tables.eh_frame, tables.eh_frame_address, offset, pc) {
                Ok(step) => step,
                Err(_) => tables.by_gimli(pc, Some(offset)),
            }
        }
        Err(()) => tables.by_gimli(pc, None),
    }
}

/// One module's `.eh_frame_hdr` and `.eh_frame`, in memory.
struct Tables {
    hdr: &'static [u8],
    hdr_address: usize,
    eh_frame: &'static [u8],
    eh_frame_address: usize,
}

impl Tables {
    fn of(module: &Module) -> Option<Tables> {
        // SAFETY: the PT_GNU_EH_FRAME segment is mapped for as long as the module is loaded, and
        // a module whose code is on our stack is loaded (modules are never unloaded under a
        // running test in practice; a `dlclose` of a library whose code is on no stack is fine).
        let hdr =
            unsafe { std::slice::from_raw_parts(module.eh_frame_hdr as *const u8, module.eh_frame_hdr_len) };
        let bases = BaseAddresses::default().set_eh_frame_hdr(module.eh_frame_hdr as u64);
        let parsed = EhFrameHdr::new(hdr, NativeEndian)
            .parse(&bases, size_of::<usize>() as u8)
            .ok()?;
        let eh_frame_address = match parsed.eh_frame_ptr() {
            gimli::Pointer::Direct(address) => address as usize,
            gimli::Pointer::Indirect(_) => return None,
        };
        if !(module.eh_frame_hdr..module.segment_end).contains(&eh_frame_address)
            && eh_frame_address >= module.segment_end
        {
            return None;
        }
        let eh_frame_len = module.segment_end.checked_sub(eh_frame_address)?;
        // SAFETY: `.eh_frame` lies in a loaded read-only segment that ends at `segment_end`.
        let eh_frame = unsafe { std::slice::from_raw_parts(eh_frame_address as *const u8, eh_frame_len) };
        Some(Tables {
            hdr,
            hdr_address: module.eh_frame_hdr,
            eh_frame,
            eh_frame_address,
        })
    }

    /// The step at `pc` by gimli, from the FDE at `fde` (an offset in `.eh_frame`) if known.
    fn by_gimli(&self, pc: usize, fde: Option<usize>) -> Option<Step> {
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(self.hdr_address as u64)
            .set_eh_frame(self.eh_frame_address as u64);
        let eh_frame = EhFrame::new(self.eh_frame, NativeEndian);
        // One context for all evaluations (making one initializes a large table: in a debug
        // build about half of an evaluation); a busy one means another thread is evaluating.
        static SHARED: std::sync::Mutex<Option<Box<UnwindContext<usize>>>> = std::sync::Mutex::new(None);
        let mut shared = match SHARED.try_lock() {
            Ok(shared) => Some(shared),
            // A panic inside a lookup leaves a context that is reset on its next use anyway.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let mut own = None;
        let context = match shared.as_mut() {
            Some(shared) => shared.get_or_insert_with(|| Box::new(UnwindContext::new())),
            None => own.insert(Box::new(UnwindContext::new())),
        };
        let pc64 = pc as u64;
        let row = match fde {
            Some(offset) => {
                let fde = eh_frame
                    .fde_from_offset(&bases, EhFrameOffset(offset), EhFrame::cie_from_offset)
                    .ok()?;
                if !fde.contains(pc64) {
                    return None;
                }
                fde.unwind_info_for_address(&eh_frame, &bases, context, pc64)
                    .ok()?
            }
            None => EhFrameHdr::new(self.hdr, NativeEndian)
                .parse(&bases, size_of::<usize>() as u8)
                .ok()?
                .table()?
                .unwind_info_for_address(&eh_frame, &bases, context, pc64, |section, bases, offset| {
                    section.cie_from_offset(bases, offset)
                })
                .ok()?,
        };
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
        if !step.fits() {
            return None;
        }
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps survive packing, including negative offsets and absent registers.
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
            assert_eq!(Step::unpack(step.pack()), step);
        }
    }

    /// The hand-read search table finds the FDE gimli finds, for every return address of this
    /// stack (this binary, libc) and for the first byte of a function.
    #[test]
    fn search_table_agrees_with_gimli() {
        let mut stack = [0usize; 64];
        let len = super::super::slow_trace(&mut stack);
        let mut pcs: Vec<usize> = stack[..len]
            .iter()
            .filter(|&&pc| pc != 0)
            .map(|pc| pc - 1)
            .collect();
        pcs.push(search_table_agrees_with_gimli as fn() as usize);
        pcs.push(libc::getpid as *const () as usize);
        assert!(pcs.len() > 5, "{pcs:x?}");
        for pc in pcs {
            let tables = Tables::of(&module_of(pc).expect("a loaded module")).unwrap();
            let (hdr, hdr_address) = (tables.hdr, tables.hdr_address);
            let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_address as u64);
            let parsed = EhFrameHdr::new(hdr, NativeEndian)
                .parse(&bases, size_of::<usize>() as u8)
                .unwrap();
            let ours = search_table(hdr, hdr_address, pc).expect("the usual encoding");
            let gimlis = match parsed.table().unwrap().lookup(pc as u64, &bases) {
                Ok(gimli::Pointer::Direct(address)) => Some(address as usize),
                Ok(gimli::Pointer::Indirect(_)) => unreachable!("a direct pointer"),
                Err(_) => None,
            };
            assert_eq!(ours, gimlis, "pc {pc:#x}");
            assert_eq!(search_table(hdr, hdr_address, 1), Ok(None), "below every entry");
        }
    }

    /// The hand-read FDE program gives gimli's step, for a sample of every function of this
    /// binary and of libc (at its first byte and a few bytes in) and for this stack's frames.
    #[test]
    fn hand_read_steps_agree_with_gimli() {
        let mut pcs = Vec::new();
        for function in [
            hand_read_steps_agree_with_gimli as fn() as usize,
            libc::getpid as *const () as usize,
        ] {
            let module = module_of(function).expect("a loaded module");
            let tables = Tables::of(&module).expect("tables");
            let entry = |i: usize, field: usize| {
                let at = 12 + i * 8 + field;
                i32::from_ne_bytes(tables.hdr[at..at + 4].try_into().unwrap()) as isize as usize
            };
            let count = u32::from_ne_bytes(tables.hdr[8..12].try_into().unwrap()) as usize;
            let count = count.min((tables.hdr.len() - 12) / 8);
            for i in (0..count).step_by((count / 400).max(1)) {
                let start = tables.hdr_address.wrapping_add(entry(i, 0));
                pcs.extend([
                    start,
                    start + 1,
                    start + 4,
                    start + 9,
                    start + 16,
                    start + 40,
                    start + 100,
                ]);
                // The last byte: the epilogue's rows (and `remember_state`/`restore_state`).
                let fde = tables.hdr_address.wrapping_add(entry(i, 4)) - tables.eh_frame_address;
                let bases = BaseAddresses::default().set_eh_frame(tables.eh_frame_address as u64);
                let parsed = EhFrame::new(tables.eh_frame, NativeEndian).fde_from_offset(
                    &bases,
                    EhFrameOffset(fde),
                    EhFrame::cie_from_offset,
                );
                if let Ok(parsed) = parsed {
                    pcs.push(start + parsed.len() as usize - 1);
                }
            }
        }
        let mut stack = [0usize; 64];
        let len = super::super::slow_trace(&mut stack);
        pcs.extend(stack[..len].iter().filter(|&&pc| pc != 0).map(|pc| pc - 1));
        let (mut handled, mut total) = (0, 0);
        for pc in pcs {
            let tables = Tables::of(&module_of(pc).expect("a loaded module")).unwrap();
            let Ok(Some(fde)) = search_table(tables.hdr, tables.hdr_address, pc) else {
                continue;
            };
            let offset = fde - tables.eh_frame_address;
            total += 1;
            if let Ok(step) = super::super::fde::step_at(tables.eh_frame, tables.eh_frame_address, offset, pc)
            {
                handled += 1;
                assert_eq!(step, tables.by_gimli(pc, Some(offset)), "pc {pc:#x}");
            }
        }
        eprintln!("read by hand: {handled} of {total}");
        assert!(total > 1000, "{total} samples");
        assert!(handled * 100 >= total * 95, "read by hand: {handled} of {total}");
    }
}

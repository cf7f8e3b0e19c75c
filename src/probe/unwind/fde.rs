//! One FDE's call-frame program, read and run by hand for the common case: the fast path of
//! [`super::cfi::evaluate`].
//!
//! gimli evaluates any CFI, but generically, and a debug build (what `cargo test` makes) runs it
//! unoptimised: ~45k instructions to parse an FDE and its CIE and run their programs up to one
//! program counter. The first thread creation of every process pays it for each of its ~20
//! frames, so every `cargo nextest` test (a process each) did. The programs compilers emit use a
//! handful of instructions; this reads those, tracks only the rules the walker follows (the CFA,
//! the return address, the frame pointer) and answers [`Unhandled`] for anything else (another
//! pointer encoding, a CFA expression, a rule it does not model), so that gimli decides. It never
//! panics: every read is checked, and a malformed table is [`Unhandled`] too.

use super::cfi::{self, Step};

/// The DWARF numbers of the registers the walker follows (defined per architecture in `cfi`).
const SP: u64 = cfi::SP.0 as u64;
const FP: u64 = cfi::FP.0 as u64;
const RA: u64 = cfi::RA.0 as u64;

/// Not read here: gimli evaluates it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unhandled;

type Read<T> = Result<T, Unhandled>;

/// The step at `pc` from the FDE at offset `fde` of `eh_frame` (the section's bytes, loaded at
/// `eh_frame_address`); `Ok(None)` if that FDE does not cover `pc`.
pub(super) fn step_at(eh_frame: &[u8], eh_frame_address: usize, fde: usize, pc: usize) -> Read<Option<Step>> {
    let mut bytes = Bytes::new(eh_frame, fde)?;
    let cie_field = bytes.at;
    let cie = Cie::read(
        eh_frame,
        cie_field.checked_sub(bytes.u32()? as usize).ok_or(Unhandled)?,
    )?;
    let begin = bytes.pointer(cie.fde_encoding, eh_frame_address)?;
    let range = bytes.pointer(cie.fde_encoding & 0x0f, eh_frame_address)?;
    // A range that wraps around is malformed (gimli refuses it too).
    if begin.checked_add(range).is_none() {
        return Err(Unhandled);
    }
    if pc < begin || pc - begin >= range {
        return Ok(None);
    }
    if cie.augmented {
        let skip = bytes.uleb()? as usize;
        bytes.skip(skip)?;
    }
    let mut program = Program {
        cie: &cie,
        row: cie.initial,
        location: begin,
        pc,
        saved: [cie.initial; SAVED],
        depth: 0,
        in_cie: false,
    };
    program.run(&mut bytes)?;
    program.row.step()
}

/// How a register the walker follows is recovered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    /// Unchanged (no rule, undefined, or same value).
    Keep,
    /// Saved at this offset from the CFA.
    At(i64),
    /// Anything else (another register, an expression): gimli decides.
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Row {
    cfa_register: u64,
    cfa_offset: i64,
    ra: Rule,
    fp: Rule,
}

impl Row {
    fn step(self) -> Read<Option<Step>> {
        let cfa_from_fp = match self.cfa_register {
            SP => false,
            FP => true,
            _ => return Err(Unhandled),
        };
        let slot = |rule| match rule {
            Rule::Keep => Ok(None),
            Rule::At(offset) => i32::try_from(offset).map(Some).map_err(|_| Unhandled),
            Rule::Other => Err(Unhandled),
        };
        let step = Step {
            cfa_from_fp,
            cfa_offset: i32::try_from(self.cfa_offset).map_err(|_| Unhandled)?,
            ra: slot(self.ra)?,
            fp: slot(self.fp)?,
        };
        // A step that cannot be packed is gimli's to refuse.
        if step.fits() {
            Ok(Some(step))
        } else {
            Err(Unhandled)
        }
    }

    fn set(&mut self, register: u64, rule: Rule) {
        if register == RA {
            self.ra = rule;
        } else if register == FP {
            self.fp = rule;
        }
    }

    fn rule(&self, register: u64) -> Rule {
        match register {
            RA => self.ra,
            FP => self.fp,
            _ => Rule::Keep,
        }
    }
}

/// The parts of a CIE the program needs.
struct Cie {
    code_align: u64,
    data_align: i64,
    fde_encoding: u8,
    /// A `z` augmentation: the FDE has augmentation data to skip.
    augmented: bool,
    /// The row after the CIE's initial instructions (what `DW_CFA_restore` goes back to).
    initial: Row,
}

impl Cie {
    fn read(eh_frame: &[u8], at: usize) -> Read<Cie> {
        let mut bytes = Bytes::new(eh_frame, at)?;
        if bytes.u32()? != 0 {
            return Err(Unhandled); // not a CIE
        }
        let version = bytes.u8()?;
        if version != 1 && version != 3 {
            return Err(Unhandled);
        }
        let augmentation_start = bytes.at;
        while bytes.u8()? != 0 {}
        let augmentation = &eh_frame[augmentation_start..bytes.at - 1];
        let code_align = bytes.uleb()?;
        let data_align = bytes.sleb()?;
        let return_register = if version == 1 {
            u64::from(bytes.u8()?)
        } else {
            bytes.uleb()?
        };
        if return_register != RA {
            return Err(Unhandled);
        }
        let mut fde_encoding = 0; // absolute, pointer-sized
        let augmented = augmentation.first() == Some(&b'z');
        if augmented {
            let length = bytes.uleb()? as usize;
            let end = bytes
                .at
                .checked_add(length)
                .filter(|&end| end <= bytes.end)
                .ok_or(Unhandled)?;
            for &letter in &augmentation[1..] {
                match letter {
                    b'R' => fde_encoding = bytes.u8()?,
                    // gimli reads every FDE's LSDA pointer in this encoding: only the ones it
                    // can read without more base addresses pass.
                    b'L' => {
                        pointer_size(bytes.u8()?)?;
                    }
                    b'P' => {
                        let encoding = bytes.u8()?;
                        bytes.skip(pointer_size(encoding & !INDIRECT)?)?;
                    }
                    _ => return Err(Unhandled), // `S` (signal frames) and the rest
                }
            }
            if bytes.at > end {
                return Err(Unhandled);
            }
            bytes.at = end;
        } else if !augmentation.is_empty() {
            return Err(Unhandled);
        }
        let mut cie = Cie {
            code_align,
            data_align,
            fde_encoding,
            augmented,
            initial: Row {
                cfa_register: SP,
                cfa_offset: 0,
                ra: Rule::Keep,
                fp: Rule::Keep,
            },
        };
        let mut program = Program {
            cie: &cie,
            row: cie.initial,
            location: 0,
            pc: usize::MAX,
            saved: [cie.initial; SAVED],
            depth: 0,
            in_cie: true,
        };
        program.run(&mut bytes)?;
        // gimli carries state the CIE remembered into every FDE's stack; not modelled here.
        if program.depth != 0 {
            return Err(Unhandled);
        }
        let initial = program.row;
        cie.initial = initial;
        Ok(cie)
    }
}

/// `DW_CFA_remember_state` depth this reads (compilers nest one or two).
/// gimli's row stack holds four rows, one of them the current row and, when the CIE sets two
/// rules or more, one the CIE's initial row: two saved states always fit in it. Deeper nesting
/// is left to gimli (compilers nest one).
const SAVED: usize = 2;

struct Program<'a> {
    cie: &'a Cie,
    row: Row,
    location: usize,
    pc: usize,
    saved: [Row; SAVED],
    depth: usize,
    /// Running the CIE's initial instructions (where `DW_CFA_restore` is invalid).
    in_cie: bool,
}

impl Program<'_> {
    /// Runs the instructions up to the end of `bytes`' entry, or until the location passes the pc.
    fn run(&mut self, bytes: &mut Bytes) -> Read<()> {
        let factored = |value: u64, align: i64| (value as i64).checked_mul(align).ok_or(Unhandled);
        while bytes.at < bytes.end {
            let opcode = bytes.u8()?;
            let low = u64::from(opcode & 0x3f);
            match opcode >> 6 {
                // DW_CFA_advance_loc
                1 => {
                    if self.advance(low)? {
                        return Ok(());
                    }
                }
                // DW_CFA_offset
                2 => {
                    let offset = factored(bytes.uleb()?, self.cie.data_align)?;
                    self.row.set(low, Rule::At(offset));
                }
                // DW_CFA_restore
                3 if self.in_cie => return Err(Unhandled),
                3 => self.row.set(low, self.cie.initial.rule(low)),
                _ => match opcode {
                    0x00 => {} // nop
                    0x02..=0x04 => {
                        let delta = match opcode {
                            0x02 => u64::from(bytes.u8()?),
                            0x03 => u64::from(bytes.u16()?),
                            _ => u64::from(bytes.u32()?),
                        };
                        if self.advance(delta)? {
                            return Ok(());
                        }
                    }
                    // offset_extended, offset_extended_sf
                    0x05 | 0x11 => {
                        let register = bytes.uleb()?;
                        let offset = if opcode == 0x05 {
                            factored(bytes.uleb()?, self.cie.data_align)?
                        } else {
                            bytes.sleb()?.checked_mul(self.cie.data_align).ok_or(Unhandled)?
                        };
                        self.row.set(register, Rule::At(offset));
                    }
                    // restore_extended
                    0x06 if self.in_cie => return Err(Unhandled),
                    0x06 => {
                        let register = bytes.uleb()?;
                        self.row.set(register, self.cie.initial.rule(register));
                    }
                    // undefined, same_value
                    0x07 | 0x08 => {
                        let register = bytes.uleb()?;
                        self.row.set(register, Rule::Keep);
                    }
                    // register
                    0x09 => {
                        let register = bytes.uleb()?;
                        bytes.uleb()?;
                        self.row.set(register, Rule::Other);
                    }
                    // remember_state, restore_state
                    0x0a => {
                        *self.saved.get_mut(self.depth).ok_or(Unhandled)? = self.row;
                        self.depth += 1;
                    }
                    0x0b => {
                        self.depth = self.depth.checked_sub(1).ok_or(Unhandled)?;
                        self.row = self.saved[self.depth];
                    }
                    // def_cfa, def_cfa_sf
                    0x0c | 0x12 => {
                        self.row.cfa_register = bytes.uleb()?;
                        self.row.cfa_offset = if opcode == 0x0c {
                            i64::try_from(bytes.uleb()?).map_err(|_| Unhandled)?
                        } else {
                            bytes.sleb()?.checked_mul(self.cie.data_align).ok_or(Unhandled)?
                        };
                    }
                    // def_cfa_register
                    0x0d => self.row.cfa_register = bytes.uleb()?,
                    // def_cfa_offset, def_cfa_offset_sf
                    0x0e => self.row.cfa_offset = i64::try_from(bytes.uleb()?).map_err(|_| Unhandled)?,
                    0x13 => {
                        self.row.cfa_offset =
                            bytes.sleb()?.checked_mul(self.cie.data_align).ok_or(Unhandled)?
                    }
                    // expression, val_expression: a register rule with a block
                    0x10 | 0x16 => {
                        let register = bytes.uleb()?;
                        let length = bytes.uleb()? as usize;
                        bytes.skip(length)?;
                        self.row.set(register, Rule::Other);
                    }
                    // val_offset, val_offset_sf
                    0x14 | 0x15 => {
                        let register = bytes.uleb()?;
                        bytes.uleb()?;
                        self.row.set(register, Rule::Other);
                    }
                    // GNU_args_size
                    0x2e => {
                        bytes.uleb()?;
                    }
                    // set_loc, def_cfa_expression, vendor extensions, anything newer
                    _ => return Err(Unhandled),
                },
            }
        }
        Ok(())
    }

    /// Moves the location by `delta` code units; `true` if it passed the pc (the row is final).
    fn advance(&mut self, delta: u64) -> Read<bool> {
        let bytes = delta.checked_mul(self.cie.code_align).ok_or(Unhandled)?;
        let location = self
            .location
            .checked_add(usize::try_from(bytes).map_err(|_| Unhandled)?);
        match location {
            Some(location) if location <= self.pc => {
                self.location = location;
                Ok(false)
            }
            Some(_) => Ok(true),
            None => Err(Unhandled),
        }
    }
}

/// Bytes of one CIE or FDE of `.eh_frame`, read in order.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
    /// The end of the entry.
    end: usize,
}

impl<'a> Bytes<'a> {
    /// The entry at `at`, positioned after its length.
    fn new(data: &'a [u8], at: usize) -> Read<Bytes<'a>> {
        let mut bytes = Bytes {
            data,
            at,
            end: data.len(),
        };
        let length = bytes.u32()?;
        // 0 ends the section; all ones announces a 64-bit length.
        if length == 0 || length == u32::MAX {
            return Err(Unhandled);
        }
        bytes.end = bytes
            .at
            .checked_add(length as usize)
            .filter(|&end| end <= data.len())
            .ok_or(Unhandled)?;
        Ok(bytes)
    }

    // Byte by byte, and no slicing: a debug build runs this unoptimised, where a slice's
    // `copy_from_slice` costs ten times a checked index.
    fn u8(&mut self) -> Read<u8> {
        if self.at >= self.end {
            return Err(Unhandled);
        }
        // In bounds: `end <= data.len()` (checked by `new`).
        let byte = self.data[self.at];
        self.at += 1;
        Ok(byte)
    }

    fn u16(&mut self) -> Read<u16> {
        Ok(u16::from_ne_bytes([self.u8()?, self.u8()?]))
    }

    fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_ne_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    fn u64(&mut self) -> Read<u64> {
        let mut bytes = [0; 8];
        for byte in &mut bytes {
            *byte = self.u8()?;
        }
        Ok(u64::from_ne_bytes(bytes))
    }

    fn skip(&mut self, count: usize) -> Read<()> {
        self.at = self
            .at
            .checked_add(count)
            .filter(|&at| at <= self.end)
            .ok_or(Unhandled)?;
        Ok(())
    }

    fn uleb(&mut self) -> Read<u64> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            // Bits past 64 are an error to gimli.
            if shift > 63 || (shift == 63 && byte & 0x7e != 0) {
                return Err(Unhandled);
            }
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
    }

    fn sleb(&mut self) -> Read<i64> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            // Past 64 bits only a sign extension is valid.
            if shift > 63 || (shift == 63 && !matches!(byte & 0x7f, 0 | 0x7f)) {
                return Err(Unhandled);
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }

    /// A pointer in `encoding` (absolute or relative to its own address; never indirect).
    fn pointer(&mut self, encoding: u8, section_address: usize) -> Read<usize> {
        let field = section_address.wrapping_add(self.at);
        let value = match encoding & 0x0f {
            0x00 | 0x04 => self.u64()? as usize,
            0x02 => usize::from(self.u16()?),
            0x03 => self.u32()? as usize,
            0x0a => self.u16()? as i16 as isize as usize,
            0x0b => self.u32()? as i32 as isize as usize,
            0x0c => self.u64()? as i64 as isize as usize,
            _ => return Err(Unhandled),
        };
        match encoding & 0xf0 {
            0x00 => Ok(value),
            0x10 => Ok(field.wrapping_add(value)),
            _ => Err(Unhandled),
        }
    }
}

/// The indirect bit of a pointer encoding.
const INDIRECT: u8 = 0x80;

/// The size of a pointer in `encoding`: absolute or pc-relative, of a known size (the encodings
/// gimli reads without more base addresses than this module gives it).
fn pointer_size(encoding: u8) -> Read<usize> {
    if !matches!(encoding & 0x70, 0x00 | 0x10) || encoding & INDIRECT != 0 {
        return Err(Unhandled);
    }
    match encoding & 0x0f {
        0x00 | 0x04 | 0x0c => Ok(8),
        0x02 | 0x0a => Ok(2),
        0x03 | 0x0b => Ok(4),
        _ => Err(Unhandled),
    }
}

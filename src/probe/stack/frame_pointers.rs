//! The frame-pointer walk over a copy of another thread's stack (macOS's capture, `suspend.rs`):
//! plain logic on bytes, tested on every platform with synthetic stacks.
//!
//! Both Apple ABIs keep a frame record on the stack for every function that calls another: the
//! caller's frame pointer, then the return address, at the address in the frame pointer register
//! (`x29` on arm64, `rbp` on x86_64). The walk follows that chain through the copy and never
//! reads outside it: each record must lie wholly in the copy, be aligned, and be further from the
//! stack's end than the one before (stacks grow down), so a corrupt chain ends the walk instead of
//! looping or reading elsewhere.

/// Deepest stack walked, in frames.
pub(crate) const MAX_FRAMES: usize = 128;

/// The registers a walk starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registers {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    /// arm64's link register: the return address of a leaf function (a system call's stub),
    /// which sets up no frame record; `None` on x86_64, where it is on the stack.
    pub(crate) link: Option<u64>,
}

/// Removes pointer-authentication bits from a code address (arm64e system libraries sign their
/// saved return addresses): user addresses on macOS have 47 significant bits, on both
/// architectures, so the mask changes nothing elsewhere.
pub(crate) fn strip(address: u64) -> u64 {
    address & ((1 << 47) - 1)
}

/// The return addresses of the stack in `copy`, a copy of the thread's memory from `registers.sp`
/// up, innermost first: the interrupted pc + 1 (so that every entry is return-address-like), the
/// link register where it adds a frame, then each frame record's return address.
pub(crate) fn walk(copy: &[u8], registers: Registers) -> Vec<usize> {
    let base = registers.sp;
    let word = |at: u64| -> Option<u64> {
        let offset = usize::try_from(at.checked_sub(base)?).ok()?;
        let bytes = copy.get(offset..offset.checked_add(8)?)?;
        Some(u64::from_ne_bytes(bytes.try_into().ok()?))
    };
    let mut frames = vec![strip(registers.pc) as usize + 1];
    let mut fp = registers.fp;
    // The first record's return address, which the link register repeats when the interrupted
    // function has set up its own frame.
    let first = word(fp.wrapping_add(8)).map(strip);
    if let Some(link) = registers.link.map(strip) {
        if link != 0 && Some(link) != first {
            frames.push(link as usize);
        }
    }
    while frames.len() < MAX_FRAMES && fp.is_multiple_of(8) {
        let (Some(next), Some(ret)) = (word(fp), word(fp.wrapping_add(8))) else {
            break;
        };
        let ret = strip(ret);
        if ret == 0 {
            break;
        }
        frames.push(ret as usize);
        if next <= fp {
            break;
        }
        fp = next;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic stack: 8-byte words from `sp` up.
    struct Stack {
        sp: u64,
        words: Vec<u64>,
    }

    impl Stack {
        fn new(sp: u64, len: usize) -> Stack {
            Stack {
                sp,
                words: vec![0; len],
            }
        }

        /// Writes a frame record (saved frame pointer, return address) at `fp`.
        fn record(&mut self, fp: u64, next: u64, ret: u64) -> &mut Self {
            let index = ((fp - self.sp) / 8) as usize;
            self.words[index] = next;
            self.words[index + 1] = ret;
            self
        }

        fn bytes(&self) -> Vec<u8> {
            self.words.iter().flat_map(|word| word.to_ne_bytes()).collect()
        }
    }

    const SP: u64 = 0x7000_0000_1000;

    fn registers(fp: u64, link: Option<u64>) -> Registers {
        Registers {
            pc: 0x1_0000_0100,
            sp: SP,
            fp,
            link,
        }
    }

    /// A chain of three records ending in a null frame pointer: pc + 1, then each return
    /// address, innermost first.
    #[test]
    fn walks_the_chain() {
        let mut stack = Stack::new(SP, 64);
        stack
            .record(SP + 0x20, SP + 0x80, 0x1_0000_2000)
            .record(SP + 0x80, SP + 0x100, 0x1_0000_3000)
            .record(SP + 0x100, 0, 0x1_0000_4000);
        let frames = walk(&stack.bytes(), registers(SP + 0x20, None));
        assert_eq!(
            frames,
            [0x1_0000_0101, 0x1_0000_2000, 0x1_0000_3000, 0x1_0000_4000]
        );
    }

    /// A leaf's link register adds its caller; a link register equal to the first record's
    /// return address (the function has its own frame) adds nothing.
    #[test]
    fn link_register_only_where_it_adds_a_frame() {
        let mut stack = Stack::new(SP, 32);
        stack.record(SP + 0x10, 0, 0x1_0000_2000);
        let bytes = stack.bytes();
        assert_eq!(
            walk(&bytes, registers(SP + 0x10, Some(0x1_0000_1500))),
            [0x1_0000_0101, 0x1_0000_1500, 0x1_0000_2000]
        );
        assert_eq!(
            walk(&bytes, registers(SP + 0x10, Some(0x1_0000_2000))),
            [0x1_0000_0101, 0x1_0000_2000]
        );
    }

    /// Signed return addresses (arm64e) are stripped to the address.
    #[test]
    fn strips_pointer_authentication() {
        let mut stack = Stack::new(SP, 16);
        stack.record(SP, 0, 0x002a_0001_0000_2000);
        let frames = walk(&stack.bytes(), registers(SP, Some(0x0013_0001_0000_1500)));
        assert_eq!(frames, [0x1_0000_0101, 0x1_0000_1500, 0x1_0000_2000]);
    }

    /// Corrupt chains end the walk: a record outside the copy, one that points back down (a
    /// loop), a misaligned frame pointer; none reads outside the copy.
    #[test]
    fn corrupt_chains_end_the_walk() {
        // Outside: below sp, and past the copy's end.
        let stack = Stack::new(SP, 8);
        assert_eq!(walk(&stack.bytes(), registers(SP - 0x10, None)), [0x1_0000_0101]);
        assert_eq!(walk(&stack.bytes(), registers(SP + 0x38, None)), [0x1_0000_0101]);
        // A loop: the second record points back at the first.
        let mut looped = Stack::new(SP, 16);
        looped
            .record(SP, SP + 0x20, 0x1_0000_2000)
            .record(SP + 0x20, SP, 0x1_0000_3000);
        assert_eq!(
            walk(&looped.bytes(), registers(SP, None)),
            [0x1_0000_0101, 0x1_0000_2000, 0x1_0000_3000]
        );
        // Misaligned.
        assert_eq!(walk(&looped.bytes(), registers(SP + 4, None)), [0x1_0000_0101]);
    }

    /// A chain longer than the limit stops at [`MAX_FRAMES`].
    #[test]
    fn stops_at_the_limit() {
        let records = MAX_FRAMES + 10;
        let mut stack = Stack::new(SP, records * 2 + 2);
        for index in 0..records as u64 {
            let fp = SP + index * 16;
            stack.record(fp, fp + 16, 0x1_0000_0000 + index);
        }
        assert_eq!(walk(&stack.bytes(), registers(SP, None)).len(), MAX_FRAMES);
    }
}

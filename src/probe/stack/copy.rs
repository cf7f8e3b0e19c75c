//! A copy of another thread's stack, taken while it was suspended, made walkable: words that
//! pointed into the original stack (saved frame pointers, addresses of locals) are rewritten to
//! point into the copy, so an unwinder given the copy's stack pointer reads the frames as they
//! were and never touches the live stack again. Plain logic over a buffer: the Windows backend
//! fills it, tests on every platform exercise it.

use std::ops::Range;

/// Words of slack after the copied part, zeroed: an unwinder may read a little past the last
/// frame (saved registers above the outermost return address) without leaving the buffer.
const SLACK: usize = 64;

/// A copied stack: `words` hold what lay at `original` (innermost word first), then [`SLACK`].
pub(crate) struct StackCopy {
    words: Vec<usize>,
    /// Where the copied words lay in the thread's address space, `start` its stack pointer.
    original: Range<usize>,
}

impl StackCopy {
    /// A buffer for up to `capacity` words, allocated now: before the thread is suspended, so
    /// nothing allocates while it is.
    pub(crate) fn with_capacity(capacity: usize) -> StackCopy {
        StackCopy {
            words: vec![0; capacity + SLACK],
            original: 0..0,
        }
    }

    /// How many words the buffer takes (the copy's limit).
    pub(crate) fn capacity(&self) -> usize {
        self.words.len() - SLACK
    }

    /// Copies `len` words starting at `from`, the innermost part of a stack.
    ///
    /// Neither allocates nor takes a lock: safe to call while another thread is suspended.
    ///
    /// # Safety
    ///
    /// `from..from + len * 8` is mapped, readable memory, and `len <= self.capacity()`.
    pub(crate) unsafe fn fill(&mut self, from: usize, len: usize) {
        debug_assert!(len <= self.capacity());
        // SAFETY: the caller vouches for the source; the buffer holds `len` words.
        unsafe { std::ptr::copy_nonoverlapping(from as *const usize, self.words.as_mut_ptr(), len) };
        self.original = from..from + len * size_of::<usize>();
    }

    /// Sets the copied words directly (tests), as if copied from `from`.
    #[cfg(test)]
    pub(crate) fn from_words(from: usize, words: &[usize]) -> StackCopy {
        let mut copy = StackCopy::with_capacity(words.len());
        copy.words[..words.len()].copy_from_slice(words);
        copy.original = from..from + std::mem::size_of_val(words);
        copy
    }

    /// Rewrites every copied word that points into the original range to point into the copy.
    /// A number that only looks like such a pointer is rewritten too: harmless, the unwinder
    /// reads only what the frames' unwind data names.
    pub(crate) fn rewrite_pointers(&mut self) {
        let len = self.len();
        let (original, base) = (self.original.clone(), self.base());
        for word in &mut self.words[..len] {
            if original.contains(word) {
                *word = *word - original.start + base;
            }
        }
    }

    /// `address` moved into the copy if it pointed into the original range, else unchanged.
    pub(crate) fn relocate(&self, address: usize) -> usize {
        match self.original.contains(&address) {
            true => address - self.original.start + self.base(),
            false => address,
        }
    }

    /// Whether `address` (a stack pointer after relocation) lies in the copied words.
    pub(crate) fn holds(&self, address: usize) -> bool {
        (self.base()..self.base() + self.len() * size_of::<usize>()).contains(&address)
    }

    /// The word at copy address `address`, if it lies in the copied words and is aligned.
    pub(crate) fn read(&self, address: usize) -> Option<usize> {
        if !self.holds(address) || !address.is_multiple_of(size_of::<usize>()) {
            return None;
        }
        Some(self.words[(address - self.base()) / size_of::<usize>()])
    }

    /// The word that lay at `address` of the original stack, if that part was copied.
    pub(crate) fn read_original(&self, address: usize) -> Option<usize> {
        match self.original.contains(&address) {
            true => self.read(self.relocate(address)),
            false => None,
        }
    }

    /// Pops a leaf function's frame: a function without unwind data pushed nothing, so the
    /// return address is the word at its stack pointer. Returns `(return address, caller's
    /// stack pointer)`, or `None` when `sp` is outside the copy.
    pub(crate) fn pop_leaf(&self, sp: usize) -> Option<(usize, usize)> {
        Some((self.read(sp)?, sp + size_of::<usize>()))
    }

    /// The number of copied words.
    fn len(&self) -> usize {
        (self.original.end - self.original.start) / size_of::<usize>()
    }

    /// The copy's address of the first (innermost) word.
    fn base(&self) -> usize {
        self.words.as_ptr() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: usize = 0x7000_0000;

    /// Words that point into the copied range move into the copy, others stay; the copy's
    /// bounds hold, and a leaf's return address pops from the relocated stack pointer.
    #[test]
    fn rewrites_pointers_into_the_copy() {
        // A frame: a saved frame pointer (points higher on the stack), a return address (code),
        // a pointer just past the copied range (not copied: kept), a small integer.
        let words = [0x40_1234, SP + 24, 0x40_5678, SP + 40, 7];
        let mut copy = StackCopy::from_words(SP, &words);
        copy.rewrite_pointers();
        let base = copy.relocate(SP);
        assert_ne!(base, SP);
        assert_eq!(copy.read(base), Some(0x40_1234));
        assert_eq!(
            copy.read(base + 8),
            Some(base + 24),
            "a stack pointer moves into the copy"
        );
        assert_eq!(copy.read(base + 16), Some(0x40_5678), "code addresses stay");
        assert_eq!(
            copy.read(base + 24),
            Some(SP + 40),
            "one past the copy is not the copy's"
        );
        assert_eq!(copy.read(base + 32), Some(7));
        assert_eq!(copy.read(base + 40), None, "past the copied words");
        assert_eq!(copy.read(base + 3), None, "unaligned");
        assert_eq!(copy.relocate(0x40_1234), 0x40_1234);
        assert_eq!(copy.read_original(SP + 16), Some(0x40_5678));
        assert_eq!(copy.read_original(SP + 40), None);
        assert_eq!(copy.pop_leaf(base), Some((0x40_1234, base + 8)));
        assert_eq!(copy.pop_leaf(base + 40), None);
        assert!(copy.holds(base + 32) && !copy.holds(base + 40) && !copy.holds(SP));
    }
}

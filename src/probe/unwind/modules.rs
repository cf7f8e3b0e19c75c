//! The loaded objects (the executable and its shared libraries) and where each keeps its unwind
//! tables: `.eh_frame_hdr`, the sorted search table its `PT_GNU_EH_FRAME` program header points
//! at, and the `.eh_frame` section that table indexes.
//!
//! The list is read with `dl_iterate_phdr` and kept for as long as the loader's counts of objects
//! loaded and unloaded (`dlpi_adds`, `dlpi_subs`) stay the same: a `dlopen` or `dlclose` makes it
//! stale and the next lookup reads it again, so an address is never looked up in the tables of
//! an object that has gone (or that another object has replaced at the same address).
//!
//! Every range is checked against the object's loaded segments before it becomes a slice: the
//! header must lie inside a readable segment, and the `.eh_frame` it names must start inside one
//! (its slice then ends where that segment ends). A malformed or unusual object ends a walk; it
//! never makes one read unmapped memory.
//!
//! This runs inside the interposed `pthread_create` of any program, so the list's lock is only
//! ever tried, never waited for: a lookup that finds it busy reads the objects afresh for itself.

use std::sync::{RwLock, TryLockError};

use libc::Elf64_Phdr;

/// The loader's counts of objects loaded and unloaded so far: equal counts, same objects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Generation {
    adds: u64,
    /// Objects unloaded so far.
    pub(crate) subs: u64,
}

/// One executable segment of a loaded object, with that object's unwind tables (checked ranges).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Module {
    /// The segment's run-time addresses, `[start, end)`.
    start: usize,
    end: usize,
    eh_frame_hdr: Span,
    eh_frame: Span,
}

/// A range of run-time addresses, checked to lie inside one readable loaded segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Span {
    pub(super) address: usize,
    len: usize,
}

impl Module {
    pub(super) fn eh_frame_hdr(&self) -> Span {
        self.eh_frame_hdr
    }

    pub(super) fn eh_frame(&self) -> Span {
        self.eh_frame
    }
}

impl Span {
    /// The bytes of the span.
    ///
    /// # Safety
    ///
    /// The object the span was read from must still be loaded (as it is while its code is on
    /// the calling thread's stack, and the generation it was read in is current).
    pub(super) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the span lies inside a readable loaded segment (checked when it was read), and
        // the caller promises that the segment is still mapped.
        unsafe { std::slice::from_raw_parts(self.address as *const u8, self.len) }
    }
}

/// The loaded objects' modules, as read in one generation.
#[derive(Debug)]
struct List {
    generation: Generation,
    modules: Vec<Module>,
}

impl List {
    fn find(&self, pc: usize) -> Option<Module> {
        self.modules
            .iter()
            .copied()
            .find(|module| (module.start..module.end).contains(&pc))
    }
}

static LIST: RwLock<Option<List>> = RwLock::new(None);

/// The module whose code holds `pc`, from the list of the current generation.
pub(super) fn module_of(pc: usize) -> Option<Module> {
    lookup(&LIST, pc, generation()?, read_list)
}

/// `pc`'s module from the cached list if it is of generation `now`, else from a list that `read`
/// makes (and that then replaces the cached one, if the lock is free).
fn lookup(
    cache: &RwLock<Option<List>>,
    pc: usize,
    now: Generation,
    read: impl FnOnce() -> Option<List>,
) -> Option<Module> {
    let cached = match cache.try_read() {
        Ok(cached) => Some(cached),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    if let Some(list) = cached.as_ref().and_then(|cached| cached.as_ref()) {
        if list.generation == now {
            return list.find(pc);
        }
    }
    drop(cached);
    let list = read()?;
    let found = list.find(pc);
    match cache.try_write() {
        Ok(mut cached) => *cached = Some(list),
        // A panic under the lock left a whole list or none: replacing it is fine.
        Err(TryLockError::Poisoned(poisoned)) => *poisoned.into_inner() = Some(list),
        Err(TryLockError::WouldBlock) => {}
    }
    found
}

/// Whether `dl_iterate_phdr` gave an info struct with the `dlpi_adds`/`dlpi_subs` fields (glibc
/// and musl do; the callback's `size` says how much of the struct is there).
fn has_counters(size: usize) -> bool {
    size >= std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + size_of::<u64>()
}

/// The current generation: the counters of the first object `dl_iterate_phdr` reports (they are
/// the loader's, the same for every object).
pub(crate) fn generation() -> Option<Generation> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        if has_counters(size) {
            // SAFETY: `info` is valid during the callback and has the fields (checked above);
            // `data` is the `Option<Generation>` below.
            unsafe {
                *data.cast::<Option<Generation>>() = Some(Generation {
                    adds: (*info).dlpi_adds,
                    subs: (*info).dlpi_subs,
                });
            }
        }
        1
    }
    let mut generation: Option<Generation> = None;
    // SAFETY: the callback only writes the `Option<Generation>` it is given, and stops at once.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut generation).cast()) };
    generation
}

/// Reads every loaded object's modules, and the generation they are of.
fn read_list() -> Option<List> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Option<List>` below; `info` and its headers are valid during the
        // callback, and `dlpi_phdr` points to `dlpi_phnum` headers.
        let (list, info, headers) = unsafe {
            let info = &*info;
            let headers = match info.dlpi_phdr.is_null() {
                true => &[][..],
                false => std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)),
            };
            (&mut *data.cast::<Option<List>>(), info, headers)
        };
        if !has_counters(size) {
            return 1;
        }
        let list = list.get_or_insert_with(|| List {
            generation: Generation {
                adds: info.dlpi_adds,
                subs: info.dlpi_subs,
            },
            modules: Vec::new(),
        });
        // SAFETY: the object is loaded (the loader holds it while the callback runs).
        list.modules
            .extend(unsafe { object_modules(info.dlpi_addr as usize, headers) });
        0
    }
    let mut list: Option<List> = None;
    // SAFETY: `visit` matches the callback type and only uses `list` during the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut list).cast()) };
    list
}

/// The modules of one loaded object (one per executable segment), if its unwind tables check out.
///
/// # Safety
///
/// `headers` must be the program headers of an object loaded at `base`.
unsafe fn object_modules(base: usize, headers: &[Elf64_Phdr]) -> Vec<Module> {
    let segments = loaded_segments(base, headers);
    let Some(eh_frame_hdr) = eh_frame_hdr(base, headers, &segments) else {
        return Vec::new();
    };
    // SAFETY: the header lies in a readable segment of the object (checked), which is loaded.
    let hdr = unsafe { eh_frame_hdr.bytes() };
    let bases = gimli::BaseAddresses::default().set_eh_frame_hdr(eh_frame_hdr.address as u64);
    let parsed = gimli::EhFrameHdr::new(hdr, gimli::NativeEndian).parse(&bases, size_of::<usize>() as u8);
    let Ok(parsed) = parsed else {
        return Vec::new();
    };
    let gimli::Pointer::Direct(eh_frame) = parsed.eh_frame_ptr() else {
        return Vec::new();
    };
    let Some(eh_frame) = usize::try_from(eh_frame)
        .ok()
        .and_then(|address| readable_from(&segments, address))
    else {
        return Vec::new();
    };
    segments
        .iter()
        .filter(|segment| segment.executable)
        .map(|segment| Module {
            start: segment.start,
            end: segment.end,
            eh_frame_hdr,
            eh_frame,
        })
        .collect()
}

/// A loaded segment (`PT_LOAD`) at its run-time addresses, `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: usize,
    end: usize,
    readable: bool,
    executable: bool,
}

/// The object's loaded segments; one whose addresses overflow is left out.
fn loaded_segments(base: usize, headers: &[Elf64_Phdr]) -> Vec<Segment> {
    headers
        .iter()
        .filter(|header| header.p_type == libc::PT_LOAD)
        .filter_map(|header| {
            let (start, end) = run_time_range(base, header.p_vaddr, header.p_memsz)?;
            Some(Segment {
                start,
                end,
                readable: header.p_flags & libc::PF_R != 0,
                executable: header.p_flags & libc::PF_X != 0,
            })
        })
        .collect()
}

/// `[base + address, base + address + size)`, if it does not overflow.
fn run_time_range(base: usize, address: u64, size: u64) -> Option<(usize, usize)> {
    let start = base.checked_add(usize::try_from(address).ok()?)?;
    Some((start, start.checked_add(usize::try_from(size).ok()?)?))
}

/// The `PT_GNU_EH_FRAME` header's span, if it lies wholly inside one readable loaded segment.
fn eh_frame_hdr(base: usize, headers: &[Elf64_Phdr], segments: &[Segment]) -> Option<Span> {
    let header = headers
        .iter()
        .find(|header| header.p_type == libc::PT_GNU_EH_FRAME)?;
    let (start, end) = run_time_range(base, header.p_vaddr, header.p_memsz)?;
    segments
        .iter()
        .any(|segment| segment.readable && segment.start <= start && end <= segment.end)
        .then_some(Span {
            address: start,
            len: end - start,
        })
}

/// The span from `address` to the end of the readable loaded segment that holds it (the length
/// of `.eh_frame` is not recorded anywhere at run time, but it cannot cross its segment's end).
fn readable_from(segments: &[Segment], address: usize) -> Option<Span> {
    let segment = segments
        .iter()
        .find(|segment| segment.readable && (segment.start..segment.end).contains(&address))?;
    Some(Span {
        address,
        len: segment.end - address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(p_type: u32, p_flags: u32, p_vaddr: u64, p_memsz: u64) -> Elf64_Phdr {
        Elf64_Phdr {
            p_type,
            p_flags,
            p_offset: 0,
            p_vaddr,
            p_paddr: p_vaddr,
            p_filesz: p_memsz,
            p_memsz,
            p_align: 0x1000,
        }
    }

    /// An object's headers as linkers lay them out: text, then read-only data holding
    /// `.eh_frame_hdr` at `hdr` (`hdr_len` bytes), then writable data.
    fn object(hdr: u64, hdr_len: u64) -> Vec<Elf64_Phdr> {
        vec![
            header(libc::PT_LOAD, libc::PF_R | libc::PF_X, 0x1000, 0x1000),
            header(libc::PT_LOAD, libc::PF_R, 0x2000, 0x1000),
            header(libc::PT_LOAD, libc::PF_R | libc::PF_W, 0x4000, 0x1000),
            header(libc::PT_GNU_EH_FRAME, libc::PF_R, hdr, hdr_len),
        ]
    }

    /// A header inside a readable segment is accepted; one that runs past its segment, lies in a
    /// gap between segments or in an unreadable one, or whose addresses overflow, is not.
    #[test]
    fn eh_frame_hdr_must_lie_in_a_readable_segment() {
        let base = 0x7f00_0000_0000;
        let hdr_of = |headers: &[Elf64_Phdr]| eh_frame_hdr(base, headers, &loaded_segments(base, headers));
        assert_eq!(
            hdr_of(&object(0x2100, 0x40)),
            Some(Span {
                address: base + 0x2100,
                len: 0x40
            })
        );
        assert_eq!(hdr_of(&object(0x2fc0, 0x41)), None, "past the segment's end");
        assert_eq!(hdr_of(&object(0x3000, 0x40)), None, "in the gap");
        assert_eq!(hdr_of(&object(u64::MAX - 8, 0x40)), None, "overflowing");
        let mut unreadable = object(0x2100, 0x40);
        unreadable[1].p_flags = 0;
        assert_eq!(hdr_of(&unreadable), None, "in an unreadable segment");
        assert_eq!(hdr_of(&object(0x2100, 0x40)[..3]), None, "no PT_GNU_EH_FRAME");
    }

    /// `.eh_frame` must start inside a readable segment, and its span ends with that segment:
    /// one placed before its header's segment, in a gap, or past the end is rejected.
    #[test]
    fn eh_frame_must_start_in_a_readable_segment() {
        let segments = loaded_segments(0, &object(0x2100, 0x40));
        assert_eq!(
            readable_from(&segments, 0x2200),
            Some(Span {
                address: 0x2200,
                len: 0xe00
            })
        );
        assert_eq!(readable_from(&segments, 0x0800), None, "before every segment");
        assert_eq!(readable_from(&segments, 0x3800), None, "in the gap");
        assert_eq!(
            readable_from(&segments, 0x5000),
            None,
            "at the last segment's end"
        );
        assert_eq!(readable_from(&segments, 0x1100).map(|span| span.len), Some(0xf00));
    }

    fn list(adds: u64, subs: u64, start: usize) -> List {
        let span = Span { address: 0, len: 0 };
        List {
            generation: Generation { adds, subs },
            modules: vec![Module {
                start,
                end: start + 0x100,
                eh_frame_hdr: span,
                eh_frame: span,
            }],
        }
    }

    /// The list is read again exactly when the loader's counters change (a library loaded or
    /// unloaded), and the new list then serves the next lookups.
    #[test]
    fn list_follows_the_loaders_counters() {
        let cache = RwLock::new(None);
        let mut reads = 0;
        let mut look = |pc, adds, subs, start| {
            lookup(&cache, pc, Generation { adds, subs }, || {
                reads += 1;
                Some(list(adds, subs, start))
            })
            .map(|module| module.start)
        };
        assert_eq!(look(0x1010, 1, 0, 0x1000), Some(0x1000));
        assert_eq!(
            look(0x1020, 1, 0, 0x9000),
            Some(0x1000),
            "same generation: cached"
        );
        assert_eq!(look(0x9010, 1, 0, 0x9000), None, "not loaded in this generation");
        assert_eq!(look(0x9010, 2, 0, 0x9000), Some(0x9000), "a library loaded");
        assert_eq!(look(0x1010, 2, 0, 0x1000), None, "cached: the old object is gone");
        assert_eq!(look(0x1010, 2, 1, 0x1000), Some(0x1000), "a library unloaded");
        assert_eq!(reads, 3);
    }

    /// A busy list (another thread rebuilding it) is not waited for: the lookup reads its own.
    #[test]
    fn busy_list_is_not_waited_for() {
        let cache = RwLock::new(Some(list(1, 0, 0x1000)));
        let _writer = cache.write().unwrap();
        let found = lookup(&cache, 0x9010, Generation { adds: 1, subs: 0 }, || {
            Some(list(1, 0, 0x9000))
        });
        assert_eq!(found.map(|module| module.start), Some(0x9000));
    }

    /// This process's list: this function's module, with tables inside its own object.
    #[test]
    fn finds_this_binary_and_libc() {
        for pc in [
            finds_this_binary_and_libc as fn() as usize,
            libc::getpid as *const () as usize,
        ] {
            let module = module_of(pc).expect("a loaded module");
            assert!((module.start..module.end).contains(&pc));
            let hdr = module.eh_frame_hdr();
            // SAFETY: this binary and libc stay loaded.
            let hdr = unsafe { hdr.bytes() };
            assert_eq!(hdr.first(), Some(&1), "an .eh_frame_hdr of version 1");
        }
        assert_eq!(module_of(1), None);
    }

    /// Loading and unloading a library changes the generation, and the next lookup's list is of
    /// the new one (skipped where no unloaded library is at hand).
    #[test]
    fn dlopen_and_dlclose_renew_the_list() {
        let before = generation().unwrap();
        let mut handle = std::ptr::null_mut();
        for name in [
            c"libBrokenLocale.so.1",
            c"libanl.so.1",
            c"libresolv.so.2",
            c"libz.so.1",
        ] {
            // SAFETY: these libraries run no code of note when loaded.
            let opened = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if opened.is_null() {
                continue;
            }
            if generation() != Some(before) {
                handle = opened;
                break;
            }
            // Already loaded: put it back.
            // SAFETY: the handle was just opened and nothing of it is used.
            unsafe { libc::dlclose(opened) };
        }
        if handle.is_null() {
            eprintln!("no library to load: skipped");
            return;
        }
        let loaded = generation().unwrap();
        assert_ne!(loaded, before);
        assert!(module_of(finds_this_binary_and_libc as fn() as usize).is_some());
        // Another test may load something meanwhile: the list is of this generation or later.
        let cached = LIST.read().unwrap().as_ref().unwrap().generation;
        assert!(
            cached.adds >= loaded.adds && cached.subs >= loaded.subs,
            "{cached:?} {loaded:?}"
        );
        // SAFETY: nothing of the library is in use.
        unsafe { libc::dlclose(handle) };
        assert_ne!(generation(), Some(loaded));
    }
}

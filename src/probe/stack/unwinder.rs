//! Where a stack walk must not start: the text of the unwinder library and of the dynamic loader.
//!
//! Walking a stack that was interrupted *inside the unwinder* crashes the process: with two
//! threads panicking in a loop (their hook capturing a backtrace) and captures running, 8 runs out
//! of 9 died of SIGSEGV in `libgcc_s`, the handler's `_Unwind_Backtrace` walking up from an
//! interrupted `_Unwind_RaiseException`. The handler therefore reads the interrupted program
//! counter first and, if it lies in these ranges, answers RETRY without walking; the capturer asks
//! again a little later, until the deadline. With the check, 0 crashes in 14 runs.

use libc::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most text ranges recorded as "inside the unwinder".
const MAX_RANGES: usize = 8;

/// Text ranges `[start, end)` of the unwinder and the dynamic loader, flattened.
static UNWINDER_TEXT: [AtomicUsize; 2 * MAX_RANGES] = [const { AtomicUsize::new(0) }; 2 * MAX_RANGES];
/// Number of valid ranges in [`UNWINDER_TEXT`].
static UNWINDER_RANGES: AtomicUsize = AtomicUsize::new(0);
/// How many times a handler found its thread inside the unwinder (for tests and diagnostics).
pub(super) static UNWINDER_HITS: AtomicUsize = AtomicUsize::new(0);

/// Whether `pc` lies in the unwinder's or the dynamic loader's text. Reads atomics only.
pub(super) fn in_unwinder(pc: usize) -> bool {
    let ranges = UNWINDER_RANGES.load(Ordering::Acquire);
    (0..ranges).any(|range| {
        let start = UNWINDER_TEXT[2 * range].load(Ordering::Relaxed);
        let end = UNWINDER_TEXT[2 * range + 1].load(Ordering::Relaxed);
        (start..end).contains(&pc)
    })
}

/// What [`record_unwinder_text`] collects while visiting the loaded objects.
struct Search {
    /// An address inside the unwinder.
    unwinder: usize,
    /// Load address of the dynamic loader (`AT_BASE`), 0 if unknown.
    loader: usize,
    ranges: Vec<(usize, usize)>,
    unwinder_found: bool,
    unwinder_in_executable: bool,
}

/// Finds the executable segments of the unwinder library and of the dynamic loader.
pub(super) fn record_unwinder_text() -> Result<(), &'static str> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let unwinder = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Unwind_RaiseException".as_ptr()) };
    if unwinder.is_null() {
        return Err(
            "cannot locate the unwinder (`_Unwind_RaiseException`), so cannot tell when a \
                    thread is inside it",
        );
    }
    let mut search = Search {
        unwinder: unwinder as usize,
        // SAFETY: getauxval has no preconditions.
        loader: unsafe { libc::getauxval(libc::AT_BASE) } as usize,
        ranges: Vec::new(),
        unwinder_found: false,
        unwinder_in_executable: false,
    };
    // SAFETY: `visit` matches the callback signature and only uses `search` through the pointer
    // for the duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    if !search.unwinder_found || search.unwinder_in_executable {
        return Err(
            "the unwinder is linked into the executable, so leakcheck cannot tell when a \
                    thread is inside it",
        );
    }
    if search.ranges.len() > MAX_RANGES {
        return Err("the unwinder has too many executable segments");
    }
    for (range, &(start, end)) in search.ranges.iter().enumerate() {
        UNWINDER_TEXT[2 * range].store(start, Ordering::Relaxed);
        UNWINDER_TEXT[2 * range + 1].store(end, Ordering::Relaxed);
    }
    UNWINDER_RANGES.store(search.ranges.len(), Ordering::Release);
    Ok(())
}

#[cfg(target_pointer_width = "64")]
type ProgramHeader = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
type ProgramHeader = libc::Elf32_Phdr;

/// `dl_iterate_phdr` callback: records the text of the object holding the unwinder or the loader.
unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Search` passed by record_unwinder_text; `info` and its program
    // headers are valid during the callback.
    let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
    // SAFETY: dlpi_phdr points to dlpi_phnum headers.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    let segment = |header: &ProgramHeader| {
        let start = base + header.p_vaddr as usize;
        (start, start + header.p_memsz as usize)
    };
    let loads = || headers.iter().filter(|header| header.p_type == libc::PT_LOAD);
    let holds_unwinder = loads().any(|header| {
        let (start, end) = segment(header);
        (start..end).contains(&search.unwinder)
    });
    let is_loader = search.loader != 0 && base == search.loader;
    if holds_unwinder {
        search.unwinder_found = true;
        // SAFETY: dlpi_name is a NUL-terminated string (empty for the executable) or null.
        let name_empty = info.dlpi_name.is_null() || unsafe { *info.dlpi_name } == 0;
        search.unwinder_in_executable = name_empty;
    }
    if holds_unwinder || is_loader {
        let text = loads()
            .filter(|header| header.p_flags & libc::PF_X != 0)
            .map(segment);
        search.ranges.extend(text);
    }
    0
}

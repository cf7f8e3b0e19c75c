//! Symbolization of raw instruction pointers into [`Frame`]s.
//!
//! Symbolization is slow the first time (the debug info is loaded) and then cached per address,
//! since a report resolves the same few addresses for every thread stuck at the same spot.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::model::frame::{self, Frame};

/// Resolves instruction pointers (return addresses: each is looked up at `ip - 1`) to frames.
///
/// Inlined calls expand to several frames; an address that cannot be resolved becomes one frame
/// named `0x…`, marked as library. Results are cached per address for the life of the process.
pub(crate) fn resolve(ips: &[usize]) -> Vec<Frame> {
    let mut missing: Vec<usize> = {
        let cache = cache();
        ips.iter().copied().filter(|ip| !cache.contains_key(ip)).collect()
    };
    missing.sort_unstable();
    missing.dedup();
    // Symbolize without holding the cache, so other reports are not stalled behind a slow one.
    let resolved: Vec<(usize, Vec<Frame>)> = missing.into_iter().map(|ip| (ip, resolve_ip(ip))).collect();
    let mut cache = cache();
    cache.extend(resolved);
    ips.iter().flat_map(|ip| cache[ip].iter().cloned()).collect()
}

fn cache() -> MutexGuard<'static, HashMap<usize, Vec<Frame>>> {
    static CACHE: LazyLock<Mutex<HashMap<usize, Vec<Frame>>>> = LazyLock::new(Default::default);
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Symbolizes one address, without the cache.
fn resolve_ip(ip: usize) -> Vec<Frame> {
    let shared_object = in_shared_object(ip.wrapping_sub(1));
    let mut frames = Vec::new();
    backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
        let Some(name) = symbol.name() else { return };
        let file = symbol.filename().map(|file| file.display().to_string());
        let mut frame = Frame::new(format!("{name:#}"), file, symbol.lineno());
        // C code of libc or the loader may come with source files (debug info packages), yet
        // it is never the user's.
        frame.library |= shared_object && frame::subject_crate(&frame.function).is_none();
        frames.push(frame);
    });
    if frames.is_empty() {
        frames.push(Frame {
            function: format!("{ip:#x}"),
            file: None,
            line: None,
            library: true,
        });
    }
    frames
}

/// Whether `address` lies in a loaded shared object rather than in the executable.
#[cfg(unix)]
fn in_shared_object(address: usize) -> bool {
    fn object_base(address: usize) -> Option<usize> {
        // SAFETY: Dl_info is plain data, all-zero is valid.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only inspects the address and fills `info`.
        let found = unsafe { libc::dladdr(address as *const libc::c_void, &mut info) } != 0;
        found.then_some(info.dli_fbase as usize)
    }
    static EXECUTABLE: OnceLock<Option<usize>> = OnceLock::new();
    let executable = *EXECUTABLE.get_or_init(|| object_base(in_shared_object as fn(usize) -> bool as usize));
    match (object_base(address), executable) {
        (Some(object), Some(executable)) => object != executable,
        _ => false,
    }
}

#[cfg(not(unix))]
fn in_shared_object(_address: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker() -> usize {
        std::hint::black_box(marker as fn() -> usize as usize)
    }

    /// A real address resolves to its demangled, hash-free name and file; junk to `0x…`.
    #[test]
    fn resolves_addresses() {
        let inside_marker = marker() + 1;
        let frames = resolve(&[inside_marker, 1]);
        let first = &frames[0];
        assert!(first.function.ends_with("symbols::tests::marker"), "{first:?}");
        assert!(!first.library, "{first:?}");
        // Builds without debug info (`cargo test --release`) resolve names only.
        if first.file.is_some() {
            assert!(
                first
                    .file
                    .as_deref()
                    .is_some_and(|file| file.ends_with("symbols.rs")),
                "{first:?}"
            );
            assert!(first.line.is_some(), "{first:?}");
        }
        let junk = frames.last().unwrap();
        assert_eq!((junk.function.as_str(), junk.library), ("0x1", true));
        assert_eq!(resolve(&[inside_marker, 1]), frames, "cached result differs");
    }
}

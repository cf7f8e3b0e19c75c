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
    forget_unloaded();
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

/// Forgets every resolved address, in this cache and in `backtrace`'s (which reads the list of
/// loaded objects once), when a library was loaded or unloaded since the last resolution: an
/// address may now belong to another object, or to one `backtrace` has not seen.
fn forget_unloaded() {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        use crate::probe::unwind::{loaded_generation, Generation};
        static SEEN: Mutex<Option<Generation>> = Mutex::new(None);
        let now = loaded_generation();
        let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.is_some() && *seen != now {
            cache().clear();
            backtrace::clear_symbol_cache();
        }
        *seen = now;
    }
}

/// Symbolizes one address, without the cache.
fn resolve_ip(ip: usize) -> Vec<Frame> {
    if let Some(frame) = system_library_frame(ip) {
        return vec![frame];
    }
    let shared_object = in_shared_object(ip.wrapping_sub(1));
    let mut frames = Vec::new();
    backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
        let Some(name) = symbol.name() else { return };
        let file = symbol.filename().map(|file| file.display().to_string());
        let mut frame = Frame::new(format!("{name:#}"), file, symbol.lineno());
        // C code of libc or the loader may come with source files (debug info packages), yet
        // it is never the user's.
        frame.library |= shared_object && frame::subject_crate(&frame.key).is_none();
        frames.push(frame);
    });
    if let Some(outermost) = frames.last_mut().filter(|_| !shared_object) {
        name_in_full(outermost, ip.wrapping_sub(1));
    }
    if frames.is_empty() {
        frames.push(Frame {
            library: true,
            ..Frame::new(format!("{ip:#x}"), None, None)
        });
    }
    frames
}

/// Gives a Rust function that debug info names bare (`start_blocked`, `{closure#0}`: what
/// `debug = "line-tables-only"` leaves) the full name of the symbol holding `address`, when that
/// symbol is the same function. Only the outermost frame of an address can be named so: the
/// symbol is the function the code was compiled into, not one inlined into it.
///
/// leakcheck's own frames are left as they are: they are folded whatever their name, and its
/// exported `pthread_create` is bare by design.
fn name_in_full(frame: &mut Frame, address: usize) {
    let rust_source = frame.file.as_deref().is_some_and(|file| file.ends_with(".rs"));
    let own = frame.file.as_deref().is_some_and(frame::is_own_source);
    if !rust_source || own || frame.key.contains("::") || frame.key.starts_with('<') {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some(full) = crate::probe::symtab::function_at(address) {
        let key = frame::match_key(&full);
        if key == frame.key || key.ends_with(&format!("::{}", frame.key)) {
            *frame = Frame::new(full, frame.file.take(), frame.line);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = address;
}

/// A frame in a C system library (libc, the loader, libgcc: an object under `/lib` or
/// `/usr/lib`), named from the library's dynamic symbol table, without loading debug info.
///
/// Such frames are never the user's and every report folds them, yet resolving them through the
/// debug-info packages some machines install (`libc6-dbg`, which valgrind pulls in) means
/// inflating megabytes of compressed DWARF with an unoptimised decompressor in the debug builds
/// `cargo test` makes: most of a cold first report's half second. A function the dynamic table
/// does not name (libc's internal `__futex_abstimed_wait_common`) is shown as `libc.so.6+0x…`.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn system_library_frame(ip: usize) -> Option<Frame> {
    use std::ffi::CStr;
    /// `dladdr1` flag: also return the symbol table entry (from `<dlfcn.h>`).
    const RTLD_DL_SYMENT: libc::c_int = 1;
    let address = ip.wrapping_sub(1);
    // SAFETY: Dl_info is plain data, all-zero is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut entry: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: dladdr1 only inspects the address and fills `info` and `entry`.
    let found = unsafe {
        libc::dladdr1(
            address as *const libc::c_void,
            &mut info,
            &mut entry,
            RTLD_DL_SYMENT,
        )
    } != 0;
    if !found || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a non-null dli_fname is the object's path, valid while it is loaded.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    if !(path.starts_with("/lib") || path.starts_with("/usr/lib")) || in_executable(info.dli_fbase) {
        return None;
    }
    let named = (!info.dli_sname.is_null() && !entry.is_null())
        .then(|| {
            // SAFETY: with RTLD_DL_SYMENT, `entry` points to the symbol's ELF table entry.
            let size = unsafe { (*entry.cast::<libc::Elf64_Sym>()).st_size } as usize;
            let start = info.dli_saddr as usize;
            // The nearest exported symbol names the address only if the address is inside it.
            (start <= address && address < start + size.max(1))
                // SAFETY: a non-null dli_sname is a NUL-terminated name in the loaded object.
                .then(|| {
                    unsafe { CStr::from_ptr(info.dli_sname) }
                        .to_string_lossy()
                        .into_owned()
                })
        })
        .flatten();
    let object = path.rsplit('/').next().unwrap_or(&path);
    let function =
        named.unwrap_or_else(|| format!("{object}+{:#x}", address.wrapping_sub(info.dli_fbase as usize)));
    Some(Frame {
        library: true,
        ..Frame::new(function, None, None)
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
fn system_library_frame(_ip: usize) -> Option<Frame> {
    None
}

/// Whether `base` is the executable's load address.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn in_executable(base: *mut libc::c_void) -> bool {
    !in_shared_object(base as usize)
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

/// Whether `address` lies in a loaded DLL rather than in the executable (Windows' system
/// libraries: ntdll, kernelbase, whose C frames are never the user's).
#[cfg(windows)]
fn in_shared_object(address: usize) -> bool {
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleHandleExW, GetModuleHandleW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
        GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    };
    let mut module = std::ptr::null_mut();
    // SAFETY: looks the address up without taking a reference; `module` is only compared.
    let found = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            address as *const u16,
            &mut module,
        )
    } != 0;
    // SAFETY: a null name asks for the executable's module.
    found && module != unsafe { GetModuleHandleW(std::ptr::null()) }
}

#[cfg(not(any(unix, windows)))]
fn in_shared_object(_address: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns its own address; nothing inlined into it, so its first byte is its own in an
    /// optimised build too.
    #[inline(never)]
    fn marker() -> usize {
        marker as fn() -> usize as usize
    }

    /// An address inside a function of the executable is named by the symbol table with its full
    /// path, whatever the debug info says; an address outside any function is not named.
    #[cfg(target_os = "linux")]
    #[test]
    fn symbol_table_names_functions() {
        let name =
            crate::probe::symtab::function_at(marker() + 1).expect("the test binary has a symbol table");
        assert!(name.ends_with("symbols::tests::marker"), "{name}");
        assert_eq!(crate::probe::symtab::function_at(1), None);
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

//! Creation hooked on Windows, by patching the executable's import address table: its imports
//! of kernel32's `CreateThread` (through which std, and so tokio, starts every thread) and
//! `CreateProcessW` (through which std's `Command`, and so `tokio::process`, starts every child)
//! are pointed at [`create_thread`] and [`create_process_w`]. Every import descriptor naming
//! kernel32 is patched (std's and `windows-sys`' raw-dylib imports may each have one).
//!
//! [`create_thread`] registers the new thread's lineage node on the creating thread, as Linux's
//! interposed `pthread_create` does, and starts the thread through a trampoline that installs the
//! node as the thread's own and unregisters it when the start routine returns, or, for a thread
//! that ends otherwise (`ExitThread` from within), from a fiber-local storage callback, which
//! Windows runs at the thread's end. A thread killed from outside (`TerminateThread`) runs
//! nothing: its node stays registered.
//! [`create_process_w`] calls the real function and, on success, records the child in
//! `probe::children` (pid, the creating thread's node, the creation backtrace, the command line,
//! the creation time), as Linux's interposed `posix_spawn` does.
//!
//! Checked with `x86_64-w64-mingw32-objdump -p` on a test executable (x86_64-pc-windows-gnu):
//! both are imports of `KERNEL32.dll`, called through the table. On MSVC, std links kernel32 the
//! same way (an import, not a static copy), so the table holds them too. Threads and processes
//! started by other modules (DLLs) keep their own imports and are not seen; nor are
//! `CreateProcessA`, `CreateProcessAsUserW` or `ShellExecuteExW`, which neither std nor tokio
//! calls.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Memory::{VirtualProtect, PAGE_READWRITE};
use windows_sys::Win32::System::Threading::{
    FlsAlloc, FlsGetValue, FlsSetValue, GetThreadId, FLS_OUT_OF_INDEXES, PROCESS_INFORMATION,
};

use crate::probe::lineage::registry;
use crate::probe::lineage::{Node, CREATION_FRAMES};

type StartRoutine = unsafe extern "system" fn(*mut c_void) -> u32;
type CreateThread = unsafe extern "system" fn(
    *const c_void,
    usize,
    Option<StartRoutine>,
    *const c_void,
    u32,
    *mut u32,
) -> HANDLE;
type CreateProcessW = unsafe extern "system" fn(
    *const u16,
    *mut u16,
    *const c_void,
    *const c_void,
    i32,
    u32,
    *const c_void,
    *const u16,
    *const c_void,
    *mut PROCESS_INFORMATION,
) -> i32;

/// The real `CreateThread`, as the import held it before the patch (0: not hooked).
static REAL: AtomicUsize = AtomicUsize::new(0);
/// The fiber-local slot whose callback unregisters a hooked thread that ends without returning
/// from its start routine (`FLS_OUT_OF_INDEXES`: none).
static ENDED: AtomicU32 = AtomicU32::new(FLS_OUT_OF_INDEXES);
/// The real `CreateProcessW` (0: not hooked).
static REAL_CREATE_PROCESS_W: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    /// The executable's own PE image (defined by the linker, mingw and MSVC alike).
    static __ImageBase: u8;
}

/// Whether the hook of `CreateThread` is in place.
pub(super) fn installed() -> bool {
    REAL.load(Ordering::Acquire) != 0
}

/// Whether the hook of `CreateProcessW` is in place.
pub(super) fn children_installed() -> bool {
    REAL_CREATE_PROCESS_W.load(Ordering::Acquire) != 0
}

/// Points the executable's imports of `CreateThread` and `CreateProcessW` at the hooks. Called
/// once, before `main` (no thread of the program runs yet).
pub(super) fn install() {
    // SAFETY: registers a callback with the signature Windows calls.
    ENDED.store(unsafe { FlsAlloc(Some(ended)) }, Ordering::Release);
    patch(b"CreateThread", &REAL, create_thread as CreateThread as usize);
    patch(
        b"CreateProcessW",
        &REAL_CREATE_PROCESS_W,
        create_process_w as CreateProcessW as usize,
    );
}

/// Points every import of kernel32's `function` in the executable at `hook`, keeping the real
/// address in `real` (left 0 if the executable imports no such function).
fn patch(function: &[u8], real: &AtomicUsize, hook: usize) {
    // SAFETY: reads the executable's own, mapped PE headers and import tables; the writes are to
    // its import address table, made writable first.
    unsafe {
        let base = &raw const __ImageBase as usize;
        for slot in import_slots(base, b"kernel32.dll", function) {
            let mut old = 0;
            if VirtualProtect(slot as *const c_void, 8, PAGE_READWRITE, &mut old) == 0 {
                continue;
            }
            let address = *slot;
            if address != hook {
                // Every slot of one function holds the same (real) address.
                real.store(address, Ordering::Release);
                *slot = hook;
            }
            VirtualProtect(slot as *const c_void, 8, old, &mut old);
        }
    }
}

/// The import address table entries of `function` from `dll`, in the PE image at `base` (one per
/// import descriptor naming `dll`).
///
/// # Safety
///
/// `base` is a mapped PE32+ image.
unsafe fn import_slots(base: usize, dll: &[u8], function: &[u8]) -> Vec<*mut usize> {
    let mut found = Vec::new();
    let read32 = |at: usize| unsafe { (at as *const u32).read_unaligned() } as usize;
    let nt = base + read32(base + 0x3c);
    // PE32+ optional header (after the 4-byte signature and 20-byte file header): data directory
    // 1, the import table, at offset 120.
    if unsafe { *((nt + 24) as *const u16) } != 0x20b {
        return found;
    }
    let imports = read32(nt + 24 + 120);
    if imports == 0 {
        return found;
    }
    let mut descriptor = base + imports;
    loop {
        let (names, name, slots) = (
            read32(descriptor),
            read32(descriptor + 12),
            read32(descriptor + 16),
        );
        if name == 0 {
            return found;
        }
        // SAFETY: the import's DLL name, a NUL-terminated string in the image.
        let module = unsafe { std::ffi::CStr::from_ptr((base + name) as *const _) }.to_bytes();
        if module.eq_ignore_ascii_case(dll) && names != 0 {
            for index in 0.. {
                let entry = unsafe { *((base + names) as *const u64).add(index) };
                if entry == 0 {
                    break;
                }
                if entry >> 63 == 1 {
                    continue; // imported by ordinal
                }
                // SAFETY: hint (2 bytes), then the NUL-terminated name.
                let imported = unsafe { std::ffi::CStr::from_ptr((base + entry as usize + 2) as *const _) };
                if imported.to_bytes() == function {
                    found.push(((base + slots) as *mut usize).wrapping_add(index));
                }
            }
        }
        descriptor += 20;
    }
}

/// `CreateThread`, hooked: see the module docs.
unsafe extern "system" fn create_thread(
    attributes: *const c_void,
    stack: usize,
    routine: Option<StartRoutine>,
    arg: *const c_void,
    flags: u32,
    id: *mut u32,
) -> HANDLE {
    // SAFETY: `REAL` holds the real `CreateThread` whenever this hook is installed.
    let real = unsafe { std::mem::transmute::<usize, CreateThread>(REAL.load(Ordering::Acquire)) };
    let (routine_address, arg_address) = (routine.map_or(0, |routine| routine as usize), arg as usize);
    // A panic would abort in an `extern "system"` function: it loses the thread's lineage (the
    // thread is created unhooked), never the thread.
    let registered = std::panic::catch_unwind(|| {
        let node = registry::register_child();
        node.start[0].store(routine_address, Ordering::Relaxed);
        node.start[1].store(arg_address, Ordering::Relaxed);
        node
    });
    let Ok(node) = registered else {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real(attributes, stack, routine, arg, flags, id) };
    };
    let start = Arc::into_raw(node.clone());
    // SAFETY: forwarding the caller's arguments, with our start routine and argument.
    let handle = unsafe { real(attributes, stack, Some(trampoline), start.cast(), flags, id) };
    if handle.is_null() {
        // SAFETY: the thread was not created, so its reference is still ours.
        drop(unsafe { Arc::from_raw(start) });
        registry::unregister(&node);
    } else {
        // SAFETY: a valid thread handle, just returned.
        let tid = unsafe { GetThreadId(handle) } as i32;
        let _ = node
            .tid
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire);
    }
    handle
}

/// The new thread's start: installs its node, runs the caller's routine, unregisters.
unsafe extern "system" fn trampoline(start: *mut c_void) -> u32 {
    // SAFETY: the `Arc::into_raw` that `create_thread` handed over to this thread, once.
    let node: Arc<Node> = unsafe { Arc::from_raw(start.cast_const().cast()) };
    let routine = node.start[0].load(Ordering::Relaxed);
    let arg = node.start[1].load(Ordering::Relaxed) as *mut c_void;
    registry::enter_child(&node);
    let slot = ENDED.load(Ordering::Acquire);
    if slot != FLS_OUT_OF_INDEXES {
        // SAFETY: our slot; the reference is taken back below or by `ended`.
        unsafe { FlsSetValue(slot, Arc::into_raw(node.clone()).cast()) };
    }
    let result = match routine {
        0 => 0,
        // SAFETY: the caller's start routine, stored as an address by `create_thread`.
        routine => unsafe { std::mem::transmute::<usize, StartRoutine>(routine)(arg) },
    };
    if slot != FLS_OUT_OF_INDEXES {
        // SAFETY: the reference stored above (the slot is cleared first, so `ended` never runs
        // for it).
        unsafe {
            let held = FlsGetValue(slot);
            FlsSetValue(slot, std::ptr::null());
            if !held.is_null() {
                drop(Arc::<Node>::from_raw(held.cast_const().cast()));
            }
        }
    }
    registry::leave_child(&node);
    registry::unregister(&node);
    result
}

/// The fiber-local storage callback: a hooked thread ends without returning from its start
/// routine (`ExitThread`), so the trampoline's own unregistering never runs. Thread-local storage
/// still works here (Windows runs these callbacks before the thread's TLS ones).
unsafe extern "system" fn ended(held: *const c_void) {
    // SAFETY: the reference the trampoline stored in the slot, handed over once.
    let node: Arc<Node> = unsafe { Arc::from_raw(held.cast()) };
    registry::leave_child(&node);
    registry::unregister(&node);
}

/// `CreateProcessW`, hooked: see the module docs.
#[allow(clippy::too_many_arguments)]
unsafe extern "system" fn create_process_w(
    application: *const u16,
    command_line: *mut u16,
    process_attributes: *const c_void,
    thread_attributes: *const c_void,
    inherit_handles: i32,
    flags: u32,
    environment: *const c_void,
    directory: *const u16,
    startup: *const c_void,
    info: *mut PROCESS_INFORMATION,
) -> i32 {
    // SAFETY: `REAL_CREATE_PROCESS_W` holds the real `CreateProcessW` whenever this hook is
    // installed.
    let real = unsafe {
        std::mem::transmute::<usize, CreateProcessW>(REAL_CREATE_PROCESS_W.load(Ordering::Acquire))
    };
    let mut ips = [0usize; CREATION_FRAMES];
    let len = crate::probe::unwind::trace(&mut ips);
    // Read before the call, which may write into the command line while it runs.
    // SAFETY: both are null or NUL-terminated wide strings, per CreateProcessW's contract.
    let line = unsafe { wide(command_line).or_else(|| wide(application)) };
    // SAFETY: forwarding the caller's arguments.
    let created = unsafe {
        real(
            application,
            command_line,
            process_attributes,
            thread_attributes,
            inherit_handles,
            flags,
            environment,
            directory,
            startup,
            info,
        )
    };
    if created != 0 && !info.is_null() {
        // SAFETY: filled in by the successful call.
        let info = unsafe { &*info };
        // A panic would abort in an `extern "system"` function: it loses the record, never the
        // child.
        let _ = std::panic::catch_unwind(|| {
            // A zero time means "unknown": such a child is never killed by pid alone.
            let started = super::children::creation_time(info.hProcess).unwrap_or_default();
            let argv = crate::probe::children::split_command_line(&line.unwrap_or_default());
            crate::probe::children::record(
                info.dwProcessId as i32,
                &ips[..len],
                argv,
                started,
                "CreateProcessW",
            )
        });
    }
    created
}

/// A NUL-terminated wide string, or `None` for null.
///
/// # Safety
///
/// `text` is null or NUL-terminated.
unsafe fn wide(text: *const u16) -> Option<String> {
    if text.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: NUL-terminated, per the contract.
    while unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units were just read.
    Some(String::from_utf16_lossy(unsafe {
        std::slice::from_raw_parts(text, len)
    }))
}

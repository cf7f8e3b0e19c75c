//! Thread creation hooked on Windows: the executable's import of kernel32's `CreateThread` (through
//! which std, and so tokio, starts every thread) is pointed at [`create_thread`], which registers
//! the new thread's lineage node on the creating thread, as Linux's interposed `pthread_create`
//! does, and starts the thread through a trampoline that installs the node as the thread's own and
//! unregisters it when the start routine returns. Threads started by other modules (DLLs) keep
//! their own imports and are not seen.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Memory::{VirtualProtect, PAGE_READWRITE};
use windows_sys::Win32::System::Threading::GetThreadId;

use crate::probe::lineage::registry;
use crate::probe::lineage::Node;

type StartRoutine = unsafe extern "system" fn(*mut c_void) -> u32;
type CreateThread = unsafe extern "system" fn(
    *const c_void,
    usize,
    Option<StartRoutine>,
    *const c_void,
    u32,
    *mut u32,
) -> HANDLE;

/// The real `CreateThread`, as the import held it before the patch (0: not hooked).
static REAL: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    /// The executable's own PE image (defined by the linker, mingw and MSVC alike).
    static __ImageBase: u8;
}

/// Whether the hook is in place.
pub(super) fn installed() -> bool {
    REAL.load(Ordering::Acquire) != 0
}

/// Points the executable's import of `CreateThread` at [`create_thread`]. Called once, before
/// `main` (no thread of the program runs yet).
pub(super) fn install() {
    // SAFETY: reads the executable's own, mapped PE headers and import tables; the one write is
    // to its import address table, made writable first.
    unsafe {
        let base = &raw const __ImageBase as usize;
        let Some(slot) = import_slot(base, b"kernel32.dll", b"CreateThread") else {
            return;
        };
        let mut old = 0;
        if VirtualProtect(slot as *const c_void, 8, PAGE_READWRITE, &mut old) == 0 {
            return;
        }
        let real = *slot;
        REAL.store(real, Ordering::Release);
        *slot = create_thread as CreateThread as usize;
        VirtualProtect(slot as *const c_void, 8, old, &mut old);
    }
}

/// The import address table entry of `function` from `dll`, in the PE image at `base`.
///
/// # Safety
///
/// `base` is a mapped PE32+ image.
unsafe fn import_slot(base: usize, dll: &[u8], function: &[u8]) -> Option<*mut usize> {
    let read32 = |at: usize| unsafe { (at as *const u32).read_unaligned() } as usize;
    let nt = base + read32(base + 0x3c);
    // PE32+ optional header (after the 4-byte signature and 20-byte file header): data directory
    // 1, the import table, at offset 120.
    if unsafe { *((nt + 24) as *const u16) } != 0x20b {
        return None;
    }
    let imports = read32(nt + 24 + 120);
    if imports == 0 {
        return None;
    }
    let mut descriptor = base + imports;
    loop {
        let (names, name, slots) = (
            read32(descriptor),
            read32(descriptor + 12),
            read32(descriptor + 16),
        );
        if name == 0 {
            return None;
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
                    return Some(((base + slots) as *mut usize).wrapping_add(index));
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
    let node = registry::register_child();
    node.start[0].store(routine.map_or(0, |routine| routine as usize), Ordering::Relaxed);
    node.start[1].store(arg as usize, Ordering::Relaxed);
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
    let result = match routine {
        0 => 0,
        // SAFETY: the caller's start routine, stored as an address by `create_thread`.
        routine => unsafe { std::mem::transmute::<usize, StartRoutine>(routine)(arg) },
    };
    registry::leave_child(&node);
    registry::unregister(&node);
    result
}

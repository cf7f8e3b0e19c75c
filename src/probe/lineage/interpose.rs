//! The interposed `pthread_create` (Linux, glibc).
//!
//! The test binary links this crate's definition of `pthread_create`, which takes precedence over
//! libc's for the executable and, through the dynamic symbol table, for shared libraries. It
//! registers the new thread's node on the creating thread, then forwards to the real function
//! (found with `dlsym(RTLD_NEXT)`) with a trampoline as the start routine.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use super::node::Node;
use super::registry;

type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
type PthreadCreate = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartRoutine,
    *mut c_void,
) -> std::ffi::c_int;

static REAL: AtomicUsize = AtomicUsize::new(0);

/// The real `pthread_create`, resolved once (before `main`, by `probe::startup`).
pub(crate) fn real() -> Option<PthreadCreate> {
    let mut address = REAL.load(Ordering::Acquire);
    if address == 0 {
        // SAFETY: the name is a valid C string; RTLD_NEXT finds the next definition after ours.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) } as usize;
        REAL.store(address, Ordering::Release);
    }
    // SAFETY: a non-null result of dlsym for `pthread_create` is that function.
    (address != 0).then(|| unsafe { std::mem::transmute::<usize, PthreadCreate>(address) })
}

/// The pthread key whose destructor unregisters a thread (`u32::MAX` until created, `u32::MAX - 1`
/// if creation failed). glibc runs key destructors when the thread is truly ending: after its start
/// routine returned or `pthread_exit` unwound it, and after the `thread_local!` (C++
/// `__cxa_thread_atexit`) destructors, so a thread stuck in one of those stays registered.
static EXIT_KEY: AtomicU32 = AtomicU32::new(UNSET);
const UNSET: u32 = u32::MAX;
const FAILED: u32 = u32::MAX - 1;

/// The exit key, created on first use (before `main`, by `probe::startup`).
pub(crate) fn exit_key() -> Option<libc::pthread_key_t> {
    let mut key = EXIT_KEY.load(Ordering::Acquire);
    if key == UNSET {
        let mut created: libc::pthread_key_t = 0;
        // SAFETY: `created` is a valid out pointer; `release` has the destructor's signature.
        let result = unsafe { libc::pthread_key_create(&mut created, Some(release)) };
        let new = if result == 0 && created < FAILED {
            created
        } else {
            FAILED
        };
        key = match EXIT_KEY.compare_exchange(UNSET, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => new,
            Err(existing) => {
                if new != FAILED {
                    // SAFETY: the key was created above and is used nowhere else.
                    unsafe { libc::pthread_key_delete(new) };
                }
                existing
            }
        };
    }
    (key != FAILED).then_some(key)
}

/// The exit key's destructor: the thread is ending, its node is released.
unsafe extern "C" fn release(node: *mut c_void) {
    // SAFETY: the value set by the trampoline, an `Arc::into_raw` handed over exactly once (glibc
    // clears the slot before calling the destructor).
    let node = unsafe { Arc::from_raw(node.cast_const().cast::<Node>()) };
    registry::leave_child(&node);
    registry::unregister(&node);
}

/// The start routine as it is called: `C-unwind`, so `pthread_exit`'s forced unwind may pass.
type UnwindingRoutine = extern "C-unwind" fn(*mut c_void) -> *mut c_void;

/// Runs the start routine. Only plain values live on this frame while it runs, so it has nothing
/// to clean up: `pthread_exit` (a forced unwind) passes through it without running Rust code, and
/// the thread is unregistered by the exit key's destructor, after its thread-local destructors.
extern "C-unwind" fn trampoline(start: *mut c_void) -> *mut c_void {
    let (routine, arg, fallback) = enter(start);
    let result = routine(arg);
    leave(fallback);
    result
}

/// Installs the thread's node and arms the exit key; returns the routine, its argument and, when
/// no key could be armed, the node to unregister on return (as a raw `Arc`).
fn enter(start: *mut c_void) -> (UnwindingRoutine, *mut c_void, *const Node) {
    let raw = start.cast_const().cast::<Node>();
    // SAFETY: `start` is the `Arc::into_raw` that `pthread_create` below handed over to this
    // thread, exactly once; the creator stored the routine and argument before creating it.
    let node = unsafe { &*raw };
    let routine = node.start[0].load(Ordering::Relaxed);
    let arg = node.start[1].load(Ordering::Relaxed) as *mut c_void;
    // SAFETY: the caller's start routine, stored as an address by `pthread_create`; same ABI,
    // "C-unwind" only allows the forced unwind the routine may start.
    let routine = unsafe { std::mem::transmute::<usize, UnwindingRoutine>(routine) };
    registry::enter_child(node);
    let key = exit_key();
    // SAFETY: a key created by `exit_key`; the value is released by `release`.
    let armed = match key {
        Some(key) => (unsafe { libc::pthread_setspecific(key, raw.cast()) }) == 0,
        None => false,
    };
    (routine, arg, if armed { std::ptr::null() } else { raw })
}

/// Without an exit key (none left in the process), unregisters on return; `pthread_exit` then
/// leaves the node registered.
fn leave(fallback: *const Node) {
    if !fallback.is_null() {
        // SAFETY: the `Arc::into_raw` of `enter`, not stored anywhere else.
        let node = unsafe { Arc::from_raw(fallback) };
        registry::leave_child(&node);
        registry::unregister(&node);
    }
}

extern "C" {
    // Not declared by the `libc` crate.
    fn pthread_attr_getdetachstate(attr: *const libc::pthread_attr_t, state: *mut c_int) -> c_int;
}

/// Whether threads created with `attr` are joinable (the default).
fn joinable(attr: *const libc::pthread_attr_t) -> bool {
    if attr.is_null() {
        return true;
    }
    let mut state = 0;
    // SAFETY: `attr` is the caller's initialized attribute object, as `pthread_create` requires.
    unsafe { pthread_attr_getdetachstate(attr, &mut state) == 0 && state == libc::PTHREAD_CREATE_JOINABLE }
}

/// Interposes libc's `pthread_create`; see the module docs.
///
/// # Safety
///
/// The contract of `pthread_create(3)`.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: StartRoutine,
    arg: *mut c_void,
) -> std::ffi::c_int {
    let Some(real) = real() else {
        // No next definition to forward to (static builds do not compile this module at all).
        return libc::ENOSYS;
    };
    let node = registry::register_child();
    node.start[0].store(routine as usize, Ordering::Relaxed);
    node.start[1].store(arg as usize, Ordering::Relaxed);
    // The new thread's own reference, handed over as the trampoline's argument.
    let start = Arc::into_raw(node.clone());
    // SAFETY: the trampoline has the C ABI of a start routine ("C-unwind" only adds unwinding).
    let trampoline = unsafe { std::mem::transmute::<UnwindingRoutine, StartRoutine>(trampoline) };
    // SAFETY: forwarding the caller's arguments, with our own start routine and argument.
    let result = unsafe { real(thread, attr, trampoline, start.cast_mut().cast()) };
    if result == 0 {
        // A joinable thread's descriptor stays valid until it is joined, which nobody can do
        // before this returns; a detached one may be gone and its descriptor reused already.
        if joinable(attr) {
            // SAFETY: on success `thread` holds the new thread's id.
            registry::record_tid(&node, unsafe { *thread });
        }
    } else {
        // SAFETY: the thread was not created, so its reference is still ours.
        drop(unsafe { Arc::from_raw(start) });
        registry::unregister(&node);
    }
    result
}

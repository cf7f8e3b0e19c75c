//! The interposed `pthread_create` (Linux, glibc).
//!
//! The test binary links this crate's definition of `pthread_create`, which takes precedence over
//! libc's for the executable and, through the dynamic symbol table, for shared libraries. It
//! registers the new thread's node on the creating thread, then forwards to the real function
//! (found with `dlsym(RTLD_NEXT)`) with a trampoline as the start routine.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Node;

type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
type PthreadCreate = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartRoutine,
    *mut c_void,
) -> libc::c_int;

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

struct Start {
    routine: StartRoutine,
    arg: *mut c_void,
    node: Arc<Node>,
}

/// Unregisters the thread however its start routine ends: return, or `pthread_exit`'s forced
/// unwind (which runs this guard's drop because the trampoline is `C-unwind`).
struct ExitGuard(Arc<Node>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        super::unregister(&self.0);
    }
}

extern "C-unwind" fn trampoline(start: *mut c_void) -> *mut c_void {
    // SAFETY: `start` is the box leaked by `pthread_create` below, handed over exactly once.
    let Start { routine, arg, node } = *unsafe { Box::from_raw(start.cast::<Start>()) };
    super::enter_child(&node);
    let _guard = ExitGuard(node);
    routine(arg)
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
) -> libc::c_int {
    let Some(real) = real() else {
        // No next definition to forward to (static builds do not compile this module at all).
        return libc::ENOSYS;
    };
    let node = super::register_child();
    let start = Box::into_raw(Box::new(Start {
        routine,
        arg,
        node: node.clone(),
    }));
    // SAFETY: the trampoline has the C ABI of a start routine ("C-unwind" only adds unwinding).
    let trampoline = unsafe {
        std::mem::transmute::<extern "C-unwind" fn(*mut c_void) -> *mut c_void, StartRoutine>(trampoline)
    };
    // SAFETY: forwarding the caller's arguments, with our own start routine and argument.
    let result = unsafe { real(thread, attr, trampoline, start.cast()) };
    if result != 0 {
        // SAFETY: the thread was not created, so the box is still ours.
        drop(unsafe { Box::from_raw(start) });
        super::unregister(&node);
    }
    result
}

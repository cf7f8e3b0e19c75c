//! Other threads' stacks on macOS (compiled, never run in CI): each thread is suspended just long
//! enough to copy its registers and the used part of its stack, then resumed; the frame-pointer
//! chain is walked in the copy afterwards ([`super::frame_pointers`], tested on every platform).
//!
//! Safe by construction, as far as the capturing side goes:
//!
//! - While a thread is suspended, the capturing thread only calls the kernel
//!   (`thread_get_state`, `vm_read_overwrite`, `thread_resume`) and writes into a buffer allocated
//!   before: it takes no lock and allocates nothing, so a thread suspended while holding the
//!   allocator's lock, libpthread's, or leakcheck's registry cannot block it. The thread is
//!   resumed on every path. Each of those kernel calls is made once on the calling thread before
//!   the first suspension, so none binds a lazy symbol stub (under dyld's lock, before dyld4) while
//!   a thread is suspended.
//! - The stack's bounds are read before suspending (`pthread_from_mach_thread_np` and
//!   `pthread_get_stackaddr_np` take libpthread's list lock, and check the handle against its
//!   list; a joinable thread that exited stays listed, so its bounds may be stale, and the copy
//!   then fails: the report says the stack was not copied). The copy is made by the kernel (`vm_read_overwrite`), from the stack pointer up to
//!   the stack's top, only if the stack pointer lies within the thread's stack: a thread on
//!   another stack (a signal's alternate stack), or whose stack is going away (it is exiting),
//!   gives no stack instead of a fault.
//! - Suspension is invisible to the thread: a blocking call stays blocked, not interrupted (no
//!   `EINTR`), so every [`Policy`] allows it.
//!
//! What it misses: a leaf function's caller on x86_64 (a system call's stub sets up no frame
//! record; on arm64 the link register supplies it), the outermost frames of a stack deeper than
//! the copy (512 KiB), and threads that are not pthreads. A thread's id is its port name, used
//! after `task_threads`' rights were released: a name reused by a new thread in between would
//! show that thread's stack (Mach delays a name's reuse with a generation count).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::frame_pointers::{self, Registers};
use super::{Captured, Policy};

/// The signature of [`capture`], to compare its address.
type Entry = fn(&[i32], Duration, Policy) -> Vec<Captured>;

/// How much of a stack is copied, from the stack pointer up.
const COPY_BYTES: usize = 512 * 1024;

extern "C" {
    /// `<mach/thread_act.h>`: stops the thread from running user code (a count; see resume).
    fn thread_suspend(thread: libc::thread_act_t) -> libc::kern_return_t;
    /// `<mach/thread_act.h>`: undoes one `thread_suspend`.
    fn thread_resume(thread: libc::thread_act_t) -> libc::kern_return_t;
    /// `<mach/thread_act.h>`: the thread's registers in `flavor`'s layout.
    fn thread_get_state(
        thread: libc::thread_act_t,
        flavor: libc::c_int,
        state: *mut u32,
        count: *mut libc::mach_msg_type_number_t,
    ) -> libc::kern_return_t;
    /// `<mach/vm_map.h>`: copies `size` bytes at `address` of `task` to `data`, or fails if
    /// any of it is not mapped.
    fn vm_read_overwrite(
        task: libc::mach_port_t,
        address: libc::vm_address_t,
        size: libc::vm_size_t,
        data: libc::vm_address_t,
        out_size: *mut libc::vm_size_t,
    ) -> libc::kern_return_t;
}

/// See [`super::capture`]. The calling thread's own stack is walked directly.
pub(super) fn capture(tids: &[i32], _timeout: Duration, _policy: Policy) -> Vec<Captured> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: no preconditions; the calling thread's own port name.
    let own = unsafe { libc::pthread_mach_thread_np(libc::pthread_self()) } as i32;
    let mut buffer = vec![0u8; COPY_BYTES];
    static BOUND: std::sync::Once = std::sync::Once::new();
    BOUND.call_once(|| bind_kernel_calls(own as libc::thread_act_t, &mut buffer));
    tids.iter()
        .map(|&tid| match tid == own {
            true => super::own_stack(&[capture as Entry as usize]),
            false => capture_other(tid as libc::thread_act_t, &mut buffer),
        })
        .collect()
}

/// Calls each kernel function used while a thread is suspended once, on the calling thread, so
/// that none is first called then: before dyld4 (macOS 12) a first call binds a lazy symbol stub
/// under dyld's lock, which the suspended thread may hold. Each call's result is irrelevant
/// (resuming a thread that is not suspended fails).
fn bind_kernel_calls(own: libc::thread_act_t, buffer: &mut [u8]) {
    let _ = registers(own);
    let word = 0u64;
    let mut copied: libc::vm_size_t = 0;
    // SAFETY: copies 8 bytes of a local into the buffer, which holds more.
    unsafe {
        vm_read_overwrite(
            crate::probe::sys::task(),
            &raw const word as libc::vm_address_t,
            size_of::<u64>() as libc::vm_size_t,
            buffer.as_mut_ptr() as libc::vm_address_t,
            &mut copied,
        );
        thread_resume(own);
    }
}

/// Suspends the thread, copies its registers and stack into `buffer`, resumes it, then walks.
fn capture_other(port: libc::thread_act_t, buffer: &mut [u8]) -> Captured {
    // SAFETY: a lookup in libpthread's list; null if no pthread has this port.
    let thread = unsafe { libc::pthread_from_mach_thread_np(port) };
    if thread == 0 {
        return Captured::Unsupported("a Mach thread, not a pthread: its stack's bounds are unknown");
    }
    // SAFETY: both validate `thread` against libpthread's list under its lock.
    let (top, size) = unsafe {
        (
            libc::pthread_get_stackaddr_np(thread) as u64,
            libc::pthread_get_stacksize_np(thread) as u64,
        )
    };
    // `pthread_get_stackaddr_np` answers ESRCH, as an address, for a thread that is gone.
    if top <= libc::ESRCH as u64 {
        return Captured::Exited;
    }
    let bottom = top.saturating_sub(size);
    // SAFETY: a thread port of this task; a dead name fails.
    if unsafe { thread_suspend(port) } != libc::KERN_SUCCESS {
        return Captured::Exited;
    }
    // Suspended: from here to the resume, only kernel calls and the preallocated buffer.
    let registers = registers(port);
    let copied = registers.and_then(|registers| copy(registers.sp, bottom, top, buffer));
    // SAFETY: undoes the suspension above.
    unsafe { thread_resume(port) };
    match (registers, copied) {
        (Some(registers), Some(len)) => Captured::Frames(frame_pointers::walk(&buffer[..len], registers)),
        (Some(_), None) => Captured::Unsupported(
            "its stack could not be copied (its stack pointer is outside its pthread stack, or the \
             stack is going away)",
        ),
        (None, _) => Captured::Exited,
    }
}

/// Copies the stack from `sp` up to `top` (at most the buffer's size) into `buffer`; the bytes
/// copied, or `None` if `sp` is not within `[bottom, top)` or the kernel could not copy.
fn copy(sp: u64, bottom: u64, top: u64, buffer: &mut [u8]) -> Option<usize> {
    if sp < bottom || sp >= top {
        return None;
    }
    let len = ((top - sp) as usize).min(buffer.len());
    let mut copied: libc::vm_size_t = 0;
    // SAFETY: `buffer` holds `len` bytes; the kernel checks the source range.
    let result = unsafe {
        vm_read_overwrite(
            crate::probe::sys::task(),
            sp as libc::vm_address_t,
            len as libc::vm_size_t,
            buffer.as_mut_ptr() as libc::vm_address_t,
            &mut copied,
        )
    };
    (result == libc::KERN_SUCCESS).then_some(copied.min(len))
}

/// The suspended thread's registers (`ARM_THREAD_STATE64`: x0-x28, fp, lr, sp, pc, cpsr).
#[cfg(target_arch = "aarch64")]
fn registers(port: libc::thread_act_t) -> Option<Registers> {
    const ARM_THREAD_STATE64: libc::c_int = 6;
    let mut state = [0u64; 34];
    let mut count = (size_of_val(&state) / 4) as libc::mach_msg_type_number_t;
    // SAFETY: `state` holds `count` 32-bit words.
    let result = unsafe { thread_get_state(port, ARM_THREAD_STATE64, state.as_mut_ptr().cast(), &mut count) };
    // On arm64e the kernel signs all four (xnu's `machine_thread_state_convert_to_user`); on
    // arm64 stripping changes nothing.
    let strip = frame_pointers::strip;
    (result == libc::KERN_SUCCESS).then_some(Registers {
        fp: strip(state[29]),
        link: Some(strip(state[30])),
        sp: strip(state[31]),
        pc: strip(state[32]),
    })
}

/// The suspended thread's registers (`x86_THREAD_STATE64`: rax, rbx, rcx, rdx, rdi, rsi, rbp,
/// rsp, r8-r15, rip, rflags, cs, fs, gs).
#[cfg(target_arch = "x86_64")]
fn registers(port: libc::thread_act_t) -> Option<Registers> {
    const X86_THREAD_STATE64: libc::c_int = 4;
    let mut state = [0u64; 21];
    let mut count = (size_of_val(&state) / 4) as libc::mach_msg_type_number_t;
    // SAFETY: `state` holds `count` 32-bit words.
    let result = unsafe { thread_get_state(port, X86_THREAD_STATE64, state.as_mut_ptr().cast(), &mut count) };
    (result == libc::KERN_SUCCESS).then_some(Registers {
        fp: state[6],
        sp: state[7],
        pc: state[16],
        link: None,
    })
}

//! Windows x86_64: other threads' stacks by suspending them, as Chromium's stack sampler does.
//!
//! # Design
//!
//! A suspended thread may hold any lock of the process: the heap's, the loader's (which the
//! system's unwinder, `RtlLookupFunctionEntry`, takes). So the suspended window does only what
//! needs no lock: everything is prepared before (the thread opened and checked to be this
//! process's, as thread ids are reused system-wide; its TEB located; a [`StackCopy`] buffer the
//! size of its committed stack allocated), then `SuspendThread`, `GetThreadContext` (which also
//! waits until the suspension has taken effect), one read of the stack's bounds from the TEB (the
//! thread cannot exit and free it now), one `memcpy` of the stack from its stack pointer up to its
//! base if the stack pointer lies in the committed range (never the guard page below it), the
//! innermost [`CAPACITY`] words at most, `ResumeThread`. Only then is the copy
//! made walkable (pointers into the stack rewritten into the copy, the registers too) and unwound
//! with `RtlLookupFunctionEntry` and `RtlVirtualUnwind`, reading the copy and never the live stack.
//! A frame without unwind data is a leaf function: its return address is at its stack pointer.
//!
//! Suspension is invisible to the thread (no interrupted call, nothing like `EINTR`), so the
//! capture [`Policy`] changes nothing here, and no thread is ever left suspended on an error.
//! Snapshots are taken one at a time in the process (two threads suspending each other would
//! both stay suspended), never of the calling thread, whose stack is walked directly.
//! The same [`imp::Snapshot`] serves the wait reading (`probe/sys/windows_wait.rs`), which looks at
//! the registers and the arguments on the copied stack.
//! Other architectures say so ([`Captured::Unsupported`]).

use std::time::Duration;

use super::copy::StackCopy;
use super::{Captured, Policy};

/// The signature of [`capture`], to compare its address.
type Entry = fn(&[i32], Duration, Policy) -> Vec<Captured>;

/// The innermost words of a stack that are copied at most: 8 MiB, more than the stacks std gives
/// threads (2 MiB) and the main thread (1 MiB), so a copy is whole unless a thread was built with
/// a larger stack and uses it; then the walk stops short of the copy's end.
#[cfg(target_arch = "x86_64")]
const CAPACITY: usize = 8 * 1024 * 1024 / size_of::<usize>();

/// Words added to a thread's committed stack when its copy's buffer is sized (before it is
/// suspended): room for the stack to grow until then.
#[cfg(target_arch = "x86_64")]
const GROWTH: usize = 64 * 1024 / size_of::<usize>();

/// At most this many frames are unwound (a corrupt stack cannot loop the unwinder forever).
#[cfg(target_arch = "x86_64")]
const MAX_FRAMES: usize = 256;

/// See [`super::capture`]. Nothing here waits on the thread, so `timeout` is not needed.
pub(super) fn capture(tids: &[i32], _timeout: Duration, _policy: Policy) -> Vec<Captured> {
    // SAFETY: no preconditions.
    let own = unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() } as i32;
    tids.iter()
        .map(|&tid| match tid {
            tid if tid == own => super::own_stack(&[capture as Entry as usize]),
            tid if tid <= 0 => Captured::Exited,
            tid => imp::capture_other(tid as u32),
        })
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::{Captured, StackCopy};

    /// Only x86_64's unwind data and context are read here.
    pub(super) fn capture_other(_tid: u32) -> Captured {
        let _ = StackCopy::with_capacity;
        Captured::Unsupported("capturing other threads' stacks on Windows is implemented only for x86_64")
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod imp {
    use std::ffi::c_void;
    use std::ptr::null_mut;
    use std::sync::{Mutex, PoisonError};

    use windows_sys::Wdk::System::Threading::NtQueryInformationThread;
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::System::Diagnostics::Debug::{
        GetThreadContext, RtlLookupFunctionEntry, RtlVirtualUnwind, CONTEXT, CONTEXT_FULL_AMD64,
        UNW_FLAG_NHANDLER,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcessId, GetCurrentThreadId, GetProcessIdOfThread, OpenThread, ResumeThread,
        SuspendThread, THREAD_GET_CONTEXT, THREAD_QUERY_INFORMATION, THREAD_SUSPEND_RESUME,
    };

    use super::{Captured, StackCopy, CAPACITY, GROWTH, MAX_FRAMES};

    /// How far short of a truncated copy's end the walk stops: more than any frame's unwind
    /// reads above its stack pointer in practice.
    const MARGIN: usize = 64 * 1024;

    /// `THREADINFOCLASS::ThreadBasicInformation`.
    const THREAD_BASIC_INFORMATION_CLASS: i32 = 0;

    /// `THREAD_BASIC_INFORMATION`, as `NtQueryInformationThread` fills it.
    #[repr(C)]
    #[derive(Default)]
    struct BasicInformation {
        exit_status: i32,
        teb: usize,
        process: usize,
        thread: usize,
        affinity: usize,
        priority: i32,
        base_priority: i32,
    }

    /// `GetThreadContext` needs a 16-byte aligned `CONTEXT`.
    #[repr(C, align(16))]
    struct Context(CONTEXT);

    /// An open thread handle, closed on drop.
    struct Thread(HANDLE);

    impl Drop for Thread {
        fn drop(&mut self) {
            // SAFETY: a handle we opened, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// Suspends, copies and resumes thread `tid`, then unwinds the copy: see the module docs.
    pub(super) fn capture_other(tid: u32) -> Captured {
        match Snapshot::take(tid) {
            Ok(snapshot) => Captured::Frames(snapshot.frames()),
            Err(why) => why,
        }
    }

    /// A thread's registers and the innermost part of its stack, as they were while it was
    /// suspended (it runs again by the time this exists).
    pub(crate) struct Snapshot {
        context: Context,
        copy: StackCopy,
        /// The copy reaches the stack's base.
        whole: bool,
    }

    impl Snapshot {
        /// Suspends thread `tid`, reads its registers, copies its stack and resumes it; the
        /// reason as a [`Captured`] where it could not. Snapshots are taken one at a time in
        /// the process, so two threads never suspend each other; the calling thread is never
        /// suspended (it would never resume).
        pub(crate) fn take(tid: u32) -> Result<Snapshot, Captured> {
            static SERIAL: Mutex<()> = Mutex::new(());
            // SAFETY: no preconditions.
            if tid == unsafe { GetCurrentThreadId() } {
                return Err(Captured::Unsupported("a thread cannot suspend itself"));
            }
            let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: plain arguments; the handle is checked.
            let handle = unsafe {
                OpenThread(
                    THREAD_SUSPEND_RESUME | THREAD_GET_CONTEXT | THREAD_QUERY_INFORMATION,
                    0,
                    tid,
                )
            };
            if handle.is_null() {
                return Err(Captured::Exited);
            }
            let thread = Thread(handle);
            // Thread ids are reused system-wide: an id whose thread ended may name another
            // process's thread now, which must never be suspended (nor its TEB read here).
            // SAFETY: an open handle; no preconditions.
            if unsafe { GetProcessIdOfThread(thread.0) != GetCurrentProcessId() } {
                return Err(Captured::Exited);
            }
            let Some(teb) = teb(&thread) else {
                return Err(Captured::Unsupported(
                    "its stack's bounds could not be read (NtQueryInformationThread)",
                ));
            };
            // The committed part of its stack now, `NT_TIB`'s `StackLimit..StackBase` (offsets 16
            // and 8 of the TEB), and a margin for growth until the suspension: the whole used
            // stack fits, unless it is deeper than [`CAPACITY`].
            // SAFETY: a live thread's TEB is mapped in its process, this one.
            let committed = unsafe {
                ((teb + 8) as *const usize)
                    .read_volatile()
                    .saturating_sub(((teb + 16) as *const usize).read_volatile())
            };
            let words = (committed / size_of::<usize>() + GROWTH).min(CAPACITY);
            let mut copy = StackCopy::with_capacity(words);
            // SAFETY: zeroed is a valid CONTEXT (plain integers).
            let mut context = Context(unsafe { std::mem::zeroed() });
            context.0.ContextFlags = CONTEXT_FULL_AMD64;
            // From here until `ResumeThread`: no allocation, no lock, no call that may take one.
            // SAFETY: an open handle with THREAD_SUSPEND_RESUME.
            if unsafe { SuspendThread(thread.0) } == u32::MAX {
                return Err(Captured::Exited);
            }
            // SAFETY: an open handle with THREAD_GET_CONTEXT, an aligned CONTEXT.
            let read = unsafe { GetThreadContext(thread.0, &mut context.0) } != 0;
            // `NT_TIB.StackBase` and `StackLimit`, at offsets 8 and 16 of the TEB: read now that
            // the thread cannot exit (and free its TEB) under us. Only `StackLimit..StackBase` is
            // committed: below it lies the guard page, whose read from another thread raises
            // STATUS_GUARD_PAGE_VIOLATION here (a thread suspended after moving its stack pointer
            // down, before touching the new page), and a thread on another stack (a fiber midway
            // through a switch) is outside the range too.
            // SAFETY: a live thread's TEB is mapped in its process, this one.
            let (stack_base, stack_limit) = unsafe {
                (
                    ((teb + 8) as *const usize).read_volatile(),
                    ((teb + 16) as *const usize).read_volatile(),
                )
            };
            let sp = context.0.Rsp as usize;
            let copied =
                read && stack_limit <= sp && sp < stack_base && sp.is_multiple_of(size_of::<usize>());
            if copied {
                let len = ((stack_base - sp) / size_of::<usize>()).min(copy.capacity());
                // SAFETY: `sp..stack_base` is the committed part of the thread's stack (it
                // grows down from its base), and the thread cannot change it while suspended.
                unsafe { copy.fill(sp, len) };
            }
            // SAFETY: suspended above, resumed once.
            unsafe { ResumeThread(thread.0) };
            if !read {
                return Err(Captured::Unsupported(
                    "its registers could not be read (GetThreadContext)",
                ));
            }
            if !copied {
                return Err(Captured::Unsupported("its stack pointer lies outside its stack"));
            }
            let whole = copy.capacity() * size_of::<usize>() >= stack_base - sp;
            Ok(Snapshot { context, copy, whole })
        }

        /// The instruction pointer it was suspended at.
        pub(crate) fn pc(&self) -> usize {
            self.context.0.Rip as usize
        }

        /// Its stack pointer.
        pub(crate) fn sp(&self) -> usize {
            self.context.0.Rsp as usize
        }

        /// Its `rdx`: a system call's second argument where the saved context keeps it.
        pub(crate) fn rdx(&self) -> usize {
            self.context.0.Rdx as usize
        }

        /// The word at `address` of its stack as copied, if that part was copied.
        pub(crate) fn read(&self, address: usize) -> Option<usize> {
            self.copy.read_original(address)
        }

        /// Unwinds the copy: return-address-like pcs, innermost first (the first is the
        /// interrupted pc + 1).
        pub(crate) fn frames(mut self) -> Vec<usize> {
            unwind(&mut self.copy, self.context, self.whole)
        }
    }

    /// The address of the thread's TEB, which lies in this process.
    fn teb(thread: &Thread) -> Option<usize> {
        let mut info = BasicInformation::default();
        // SAFETY: `info` is a THREAD_BASIC_INFORMATION of the size given.
        let status = unsafe {
            NtQueryInformationThread(
                thread.0,
                THREAD_BASIC_INFORMATION_CLASS,
                (&raw mut info).cast::<c_void>(),
                size_of::<BasicInformation>() as u32,
                null_mut(),
            )
        };
        (status >= 0 && info.teb != 0).then_some(info.teb)
    }

    /// Unwinds the copied stack from the suspended registers: return-address-like pcs,
    /// innermost first (the first is the interrupted pc + 1). `whole`: the copy reaches the
    /// stack's base; else the walk stops [`MARGIN`] short of the copy's end, so that no frame's
    /// unwind reads past the buffer.
    fn unwind(copy: &mut StackCopy, mut context: Context, whole: bool) -> Vec<usize> {
        copy.rewrite_pointers();
        let registers = &mut context.0;
        for register in [
            &mut registers.Rsp,
            &mut registers.Rbp,
            &mut registers.Rbx,
            &mut registers.Rsi,
            &mut registers.Rdi,
            &mut registers.R12,
            &mut registers.R13,
            &mut registers.R14,
            &mut registers.R15,
        ] {
            *register = copy.relocate(*register as usize) as u64;
        }
        let mut frames = vec![registers.Rip as usize + 1];
        while frames.len() < MAX_FRAMES {
            let (pc, sp) = (registers.Rip, registers.Rsp as usize);
            if pc == 0 || !copy.holds(sp) || !(whole || copy.holds(sp + MARGIN)) {
                break;
            }
            let mut image_base = 0;
            // SAFETY: a lookup by address; no thread is suspended now.
            let entry = unsafe { RtlLookupFunctionEntry(pc, &mut image_base, null_mut()) };
            if entry.is_null() {
                // A leaf function pushes nothing; only the interrupted frame can be one.
                let Some((ret, caller_sp)) = copy.pop_leaf(sp).filter(|_| frames.len() == 1) else {
                    break;
                };
                registers.Rip = ret as u64;
                registers.Rsp = caller_sp as u64;
            } else {
                let (mut handler_data, mut establisher) = (null_mut(), 0);
                // SAFETY: `entry` is the function entry for `pc` in the image at `image_base`;
                // the context's stack pointer lies in the copy, whose pointers were rewritten,
                // so the unwinder reads the copy (plus its zeroed slack).
                unsafe {
                    RtlVirtualUnwind(
                        UNW_FLAG_NHANDLER,
                        image_base,
                        pc,
                        entry,
                        registers,
                        &mut handler_data,
                        &mut establisher,
                        null_mut(),
                    )
                };
            }
            let next_sp = registers.Rsp as usize;
            // Each frame lies above the last; anything else is a broken stack.
            if registers.Rip == 0 || next_sp <= sp {
                break;
            }
            frames.push(registers.Rip as usize);
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
    };

    /// The threads of process `pid`, from a Toolhelp snapshot.
    fn threads_of(pid: u32) -> Vec<i32> {
        // SAFETY: the handle is checked and closed; `entry` is a sized THREADENTRY32.
        unsafe {
            let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
            assert!(!snapshot.is_null());
            let mut entry = THREADENTRY32 {
                dwSize: size_of::<THREADENTRY32>() as u32,
                ..Default::default()
            };
            let mut tids = Vec::new();
            let mut more = Thread32First(snapshot, &mut entry) != 0;
            while more {
                if entry.th32OwnerProcessID == pid {
                    tids.push(entry.th32ThreadID as i32);
                }
                more = Thread32Next(snapshot, &mut entry) != 0;
            }
            CloseHandle(snapshot);
            tids
        }
    }

    /// Thread ids are system-wide: an id that names another process's thread (as a stale id of
    /// an ended thread may) is never suspended nor read, and reads as ended; the other process
    /// runs on.
    #[test]
    fn another_process_thread_is_left_alone() {
        let mut child = std::process::Command::new("ping")
            .args(["-n", "30", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut tids = Vec::new();
        for _ in 0..100 {
            tids = threads_of(child.id());
            if !tids.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!tids.is_empty(), "no thread of the child listed");
        let captured = capture(&tids, Duration::from_secs(1), Policy::Transparent);
        assert!(captured.iter().all(|c| *c == Captured::Exited), "{captured:?}");
        assert!(child.try_wait().unwrap().is_none(), "the child must run on");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

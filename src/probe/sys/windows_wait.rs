//! What a Windows thread waits on, read from where it is stopped: the thread is suspended for a
//! moment (`probe::stack`'s `Snapshot`) and its instruction pointer matched against ntdll's
//! wait system calls (`NtWaitForAlertByThreadId`: std's park, condvar and mutex through
//! `WaitOnAddress`; `NtWaitForMultipleObjects`: `WaitForSingleObject`; `NtDelayExecution`:
//! `Sleep`; `NtRemoveIoCompletion(Ex)`: IO completion ports, mio's and so tokio's; ...). The
//! call's timeout is read from its arguments where they are kept: on the stack (the fifth
//! argument on) always, in `rdx` (the second) where the saved context keeps it (wine does; a
//! value that is neither null nor a pointer into the thread's stack is not trusted). The socket
//! call above the wait (ws2_32's `accept`, `recv`, `select`, ...) makes it an IO wait.
//!
//! The kernel's own view (`NtQuerySystemInformation`'s thread state and wait reason) is not read:
//! wine reports every thread as state 0, wait reason 0, with no context switches. So waits carry
//! no wake-up count, and a sleep is not told from a sleep loop (its block says where it sleeps and
//! the stack's cause stands).
//!
//! Measured under wine only. On Windows itself `WaitForSingleObject` calls
//! `NtWaitForSingleObject` (wine's goes through `NtWaitForMultipleObjects`), so std's timer sleep
//! may read as that call without "on a timer", and whether a thread's saved context keeps `rdx`
//! inside a system call is unverified: where it does not, a null `rdx` would read a timed park as
//! untimed. The stack, and the cause read from it, do not depend on either.

use crate::model::KernelWait;

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn kernel_wait(_tid: i32) -> KernelWait {
    KernelWait::default()
}

#[cfg(target_arch = "x86_64")]
pub(super) use imp::kernel_wait;

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::sync::OnceLock;

    use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectTypeInformation};
    use windows_sys::Win32::System::Diagnostics::Debug::RtlLookupFunctionEntry;
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

    use crate::model::{KernelWait, Wait, WaitKind};
    use crate::probe::stack::Snapshot;

    /// Where a wait call keeps its timeout (a pointer to a `LARGE_INTEGER`; null: none).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Timeout {
        /// The second argument, in `rdx`.
        Rdx,
        /// The fifth argument, on the stack above the return address.
        Fifth,
        /// In a register the saved context does not keep: not read.
        Unread,
    }

    /// What an ntdll wait system call tells of the wait: where its timeout is, whether it is a
    /// sleep, whether it waits for IO.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Known {
        timeout: Timeout,
        sleep: bool,
        io: bool,
    }

    /// The system calls a thread waits in: a stub's whole code lies within this many bytes of
    /// its export.
    const STUB: usize = 32;

    /// ntdll's waits, by export name.
    const WAITS: &[(&str, Known)] = &[
        ("NtWaitForAlertByThreadId", wait(Timeout::Rdx)),
        ("NtWaitForMultipleObjects", wait(Timeout::Fifth)),
        ("NtWaitForSingleObject", wait(Timeout::Unread)),
        ("NtWaitForKeyedEvent", wait(Timeout::Unread)),
        ("NtSignalAndWaitForSingleObject", wait(Timeout::Unread)),
        // A sleep's length is not read: without wake-ups a sleep is not classified.
        (
            "NtDelayExecution",
            Known {
                timeout: Timeout::Unread,
                sleep: true,
                io: false,
            },
        ),
        ("NtRemoveIoCompletion", io(Timeout::Fifth)),
        ("NtRemoveIoCompletionEx", io(Timeout::Fifth)),
        ("NtReadFile", io(Timeout::Unread)),
        ("NtDeviceIoControlFile", io(Timeout::Unread)),
    ];

    /// ws2_32's blocking calls, by export name.
    const SOCKETS: &[(&str, &str)] = &[
        ("accept", "accept"),
        ("WSAAccept", "accept"),
        ("recv", "recv"),
        ("recvfrom", "recv"),
        ("WSARecv", "recv"),
        ("WSARecvFrom", "recv"),
        ("connect", "connect"),
        ("WSAConnect", "connect"),
        ("select", "select"),
        ("WSAPoll", "poll"),
    ];

    const fn wait(timeout: Timeout) -> Known {
        Known {
            timeout,
            sleep: false,
            io: false,
        }
    }

    const fn io(timeout: Timeout) -> Known {
        Known {
            timeout,
            sleep: false,
            io: true,
        }
    }

    /// The frames above the wait searched for a socket call.
    const SOCKET_DEPTH: usize = 8;

    /// ntdll's waits' addresses, resolved once per process.
    fn waits() -> &'static [(usize, &'static str, Known)] {
        static TABLE: OnceLock<Vec<(usize, &'static str, Known)>> = OnceLock::new();
        TABLE.get_or_init(|| {
            WAITS
                .iter()
                .filter_map(|&(name, known)| Some((export("ntdll.dll", name)?, name, known)))
                .collect()
        })
    }

    /// The socket calls' function starts, resolved once ws2_32 is loaded (a process with no
    /// socket has no socket wait).
    fn sockets() -> &'static [(usize, &'static str)] {
        static SOCKET_TABLE: OnceLock<Vec<(usize, &'static str)>> = OnceLock::new();
        if let Some(table) = SOCKET_TABLE.get() {
            return table;
        }
        if !loaded("ws2_32.dll") {
            return &[];
        }
        SOCKET_TABLE.get_or_init(|| {
            SOCKETS
                .iter()
                .filter_map(|&(name, call)| Some((function_start(export("ws2_32.dll", name)?)?, call)))
                .collect()
        })
    }

    /// Whether `dll` is loaded (without loading it).
    fn loaded(dll: &str) -> bool {
        let wide: Vec<u16> = dll.encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated name.
        !unsafe { GetModuleHandleW(wide.as_ptr()) }.is_null()
    }

    /// The address of `name`, exported by the loaded `dll`.
    fn export(dll: &str, name: &str) -> Option<usize> {
        let wide: Vec<u16> = dll.encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated name; the module is not loaded by this call.
        let module = unsafe { GetModuleHandleW(wide.as_ptr()) };
        if module.is_null() {
            return None;
        }
        let name: Vec<u8> = name.bytes().chain([0]).collect();
        // SAFETY: a loaded module and a NUL-terminated name.
        unsafe { GetProcAddress(module, name.as_ptr()) }.map(|function| function as usize)
    }

    /// The start of the function holding `address`, from its unwind data.
    fn function_start(address: usize) -> Option<usize> {
        let mut image_base = 0;
        // SAFETY: a lookup by address.
        let entry = unsafe { RtlLookupFunctionEntry(address as u64, &mut image_base, std::ptr::null_mut()) };
        // SAFETY: a non-null entry points into the image's unwind data.
        (!entry.is_null()).then(|| (image_base + u64::from(unsafe { (*entry).BeginAddress })) as usize)
    }

    /// Reads what thread `tid` waits on: see the module docs.
    /// A thread caught between two waits (a sleep loop's brief work, which under wine includes
    /// a round trip to its server) reads as running or unknown: look again a few times, 2 ms
    /// apart, before saying so (as Linux's classification does).
    pub(in crate::probe::sys) fn kernel_wait(tid: i32) -> KernelWait {
        const RETRIES: usize = 4;
        let mut wait = read_wait(tid);
        for _ in 0..RETRIES {
            // In a known wait, or gone: nothing to look at again.
            if !matches!(wait, Some((_, false))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
            wait = read_wait(tid);
        }
        wait.map(|(wait, _)| wait).unwrap_or_default()
    }

    /// One reading of thread `tid`'s wait, and whether it is in a known wait call (`None`: it
    /// could not be suspended, it has exited).
    fn read_wait(tid: i32) -> Option<(KernelWait, bool)> {
        let waits = waits();
        let snapshot = Snapshot::take(tid as u32).ok()?;
        let pc = snapshot.pc();
        let Some(&(_, name, known)) = waits.iter().find(|&&(at, _, _)| (at..at + STUB).contains(&pc)) else {
            return Some(match in_system_code(pc) {
                // Inside ntdll or another system library, not in a known wait: nothing said.
                true => (KernelWait::default(), false),
                false => (running(), false),
            });
        };
        let Known { timeout, sleep, io } = known;
        // The stub pushed nothing: its return address is at the stack pointer, its fifth
        // argument four words above the caller's home area.
        let timeout = match timeout {
            Timeout::Rdx => pointer_argument(&snapshot, snapshot.rdx()),
            Timeout::Fifth => snapshot
                .read(snapshot.sp() + 5 * size_of::<usize>())
                .and_then(|arg| pointer_argument(&snapshot, arg)),
            Timeout::Unread => None,
        };
        let on_timer = name == "NtWaitForMultipleObjects" && first_handle_is_timer(&snapshot);
        let socket = (!sleep && !on_timer)
            .then(|| socket_call(snapshot.frames()))
            .flatten();
        let (call, kind) = match (socket, sleep || on_timer, io, timeout) {
            (Some(call), ..) => (call, Some(WaitKind::Io)),
            // Whether a sleep loops needs its wake-ups, which are not read here.
            (None, true, ..) => (
                if on_timer {
                    "NtWaitForMultipleObjects on a timer"
                } else {
                    name
                },
                None,
            ),
            (None, false, true, _) => (name, Some(WaitKind::Io)),
            (None, false, false, Some(timed)) => (
                name,
                Some(if timed { WaitKind::Timed } else { WaitKind::Untimed }),
            ),
            (None, false, false, None) => (name, None),
        };
        let wait = KernelWait {
            state: Some('S'),
            wchan: None,
            syscall: Some(call.to_owned()),
            wait: kind.map(|kind| Wait {
                kind,
                call: Some(call.to_owned()),
                wakeups: None,
                window: None,
                cpu: None,
                resources: Vec::new(),
            }),
        };
        Some((wait, true))
    }

    /// A thread stopped in its own code: running (or runnable).
    fn running() -> KernelWait {
        KernelWait {
            state: Some('R'),
            syscall: Some("running".into()),
            wait: Some(Wait {
                kind: WaitKind::Running,
                call: None,
                wakeups: None,
                window: None,
                cpu: None,
                resources: Vec::new(),
            }),
            ..KernelWait::default()
        }
    }

    /// Whether a timeout argument is set: `Some(false)` for null (no timeout), `Some(true)` for a
    /// pointer into the thread's copied stack (where callers keep the `LARGE_INTEGER`), `None`
    /// for anything else (a register the context did not keep).
    fn pointer_argument(snapshot: &Snapshot, arg: usize) -> Option<bool> {
        match arg {
            0 => Some(false),
            arg => snapshot.read(arg).map(|_| true),
        }
    }

    /// Whether `NtWaitForMultipleObjects`' first handle (its array in `rdx`, on the thread's
    /// stack) is a waitable timer: how std's `thread::sleep` waits on Windows.
    fn first_handle_is_timer(snapshot: &Snapshot) -> bool {
        let Some(handle) = snapshot.read(snapshot.rdx()) else {
            return false;
        };
        // PUBLIC_OBJECT_TYPE_INFORMATION: a UNICODE_STRING (length in bytes, then the buffer
        // pointer at offset 8), its text after it.
        let mut info = [0u64; 64];
        // SAFETY: `info` is a writable buffer of the size given; the handle is only queried.
        let status = unsafe {
            NtQueryObject(
                handle as _,
                ObjectTypeInformation,
                info.as_mut_ptr().cast(),
                size_of_val(&info) as u32,
                std::ptr::null_mut(),
            )
        };
        if status < 0 {
            return false;
        }
        let bytes = (info[0] & 0xffff) as usize;
        let text = info[1] as *const u16;
        let inside = info.as_ptr() as usize..info.as_ptr() as usize + size_of_val(&info);
        if text.is_null() || !inside.contains(&(text as usize)) || !inside.contains(&(text as usize + bytes))
        {
            return false;
        }
        // SAFETY: `bytes` of UTF-16 inside `info`, checked just above.
        let name = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, bytes / 2) });
        name == "Timer"
    }

    /// The socket call among the frames just above the wait, if any.
    fn socket_call(frames: Vec<usize>) -> Option<&'static str> {
        let sockets = sockets();
        if sockets.is_empty() {
            return None;
        }
        frames.iter().skip(1).take(SOCKET_DEPTH).find_map(|&ret| {
            let start = function_start(ret.wrapping_sub(1))?;
            sockets
                .iter()
                .find(|&&(at, _)| at == start)
                .map(|&(_, call)| call)
        })
    }

    /// Whether `pc` lies in a system library (a DLL), not in the executable.
    fn in_system_code(pc: usize) -> bool {
        use windows_sys::Win32::System::LibraryLoader::{
            GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
            GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
        };
        let mut module = std::ptr::null_mut();
        // SAFETY: looks the address up without taking a reference; `module` is only compared.
        let found = unsafe {
            GetModuleHandleExW(
                GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                pc as *const u16,
                &mut module,
            )
        } != 0;
        // SAFETY: a null name asks for the executable's module.
        found && module != unsafe { GetModuleHandleW(std::ptr::null()) }
    }
}

//! What the kernel publishes under `/proc/self`: the process's threads, their names, and what each
//! one waits on. Needs no signal and touches no thread, so it is safe on any thread at any time,
//! and is enough to tell "blocked on a futex" from "busy" even where no stack can be captured.

use crate::model::KernelWait;

/// Every thread of the process, by kernel id (empty where `/proc` is not available).
pub(crate) fn process_tids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// How many threads the process has, from the `Threads:` line of `/proc/self/status` (one
/// small read, whatever the count; listing `/proc/self/task` costs per thread).
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Threads:"))?;
    line["Threads:".len()..].trim().parse().ok()
}

/// The kernel's name of a thread of this process.
pub(crate) fn thread_name(tid: i32) -> Option<String> {
    if tid == 0 {
        return None;
    }
    let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
    Some(name.trim_end_matches('\n').to_string())
}

/// A name as the kernel keeps it: at most 15 bytes.
pub(crate) fn truncate_comm(name: &str) -> String {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Reads what the kernel says thread `tid` of this process is waiting on; unknown parts are `None`.
pub(crate) fn kernel_wait(tid: i32) -> KernelWait {
    #[cfg(target_os = "linux")]
    {
        let read = |file: &str| std::fs::read_to_string(format!("/proc/self/task/{tid}/{file}")).ok();
        KernelWait {
            state: read("stat").as_deref().and_then(parse_stat_state),
            wchan: read("wchan").as_deref().and_then(parse_wchan),
            syscall: read("syscall").as_deref().and_then(parse_syscall),
            wait: None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        KernelWait::default()
    }
}

/// One raw reading of a thread's wait: what the classification across the settle window compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Scheduler state letter.
    pub(crate) state: Option<char>,
    /// System call number and its six arguments, when blocked in one.
    pub(crate) syscall: Option<(i64, [u64; 6])>,
    /// `voluntary_ctxt_switches` from `status`: how often it went to sleep.
    pub(crate) voluntary_switches: Option<u64>,
    /// `nonvoluntary_ctxt_switches` from `status`: how often it was preempted.
    pub(crate) involuntary_switches: Option<u64>,
    /// User plus system CPU time, in clock ticks (`stat` fields 14 and 15).
    pub(crate) cpu_ticks: Option<u64>,
    /// When the thread started, in clock ticks since boot (`stat` field 22).
    pub(crate) started: Option<u64>,
}

/// Reads `stat`, `syscall` and `status` of thread `tid` (nothing where `/proc` is missing).
pub(crate) fn sample(tid: i32) -> Sample {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/self/task/{tid}/{file}")).ok();
    let stat = read("stat");
    let status = read("status");
    let switches = |key: &str| {
        status
            .as_deref()?
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.trim().parse().ok())
    };
    Sample {
        state: stat.as_deref().and_then(parse_stat_state),
        syscall: read("syscall").as_deref().and_then(parse_syscall_args),
        voluntary_switches: switches("voluntary_ctxt_switches:"),
        involuntary_switches: switches("nonvoluntary_ctxt_switches:"),
        cpu_ticks: stat
            .as_deref()
            .and_then(|stat| Some(stat_field(stat, 14)? + stat_field(stat, 15)?)),
        started: stat.as_deref().and_then(|stat| stat_field(stat, 22)),
    }
}

/// Clock ticks per second, for [`Sample::cpu_ticks`].
pub(crate) fn ticks_per_second() -> u64 {
    #[cfg(unix)]
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[cfg(not(unix))]
    let ticks = 100;
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// The name of system call `nr` (`futex`, `accept4`, ...), or `syscall N`.
pub(crate) fn call_name(nr: i64) -> String {
    syscall_name(nr).map_or_else(|| format!("syscall {nr}"), str::to_owned)
}

/// Numeric field `n` of `stat` (1-based, as `proc(5)` counts: 14 utime, 15 stime, 22 starttime),
/// counted after the command name, which may hold spaces and parentheses.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    // Field 3 (state) is the first after the name.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(n - 3)?
        .parse()
        .ok()
}

/// `nr arg1 .. arg6 sp pc` of a thread blocked in a system call.
fn parse_syscall_args(line: &str) -> Option<(i64, [u64; 6])> {
    let mut fields = line.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for arg in &mut args {
        let field = fields.next()?;
        *arg = u64::from_str_radix(field.trim_start_matches("0x"), 16).ok()?;
    }
    Some((nr, args))
}

/// What file descriptor `fd` of this process is, for a report: a socket's local address
/// (`127.0.0.1:40123 (tcp, listening)`), `a unix socket`, `a pipe`, `an eventfd`, a path.
pub(crate) fn describe_fd(fd: u64) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let target = target.to_string_lossy();
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return Some(socket_address(inode).unwrap_or_else(|| "a unix socket".to_owned()));
    }
    Some(match target.as_ref() {
        t if t.starts_with("pipe:") => "a pipe".to_owned(),
        "anon_inode:[eventfd]" => "an eventfd".to_owned(),
        "anon_inode:[eventpoll]" => "an epoll set".to_owned(),
        "anon_inode:[signalfd]" => "a signalfd".to_owned(),
        "anon_inode:[timerfd]" => "a timerfd".to_owned(),
        other => other.to_owned(),
    })
}

/// The file descriptors an epoll set `epfd` watches, from `/proc/self/fdinfo/<epfd>`.
pub(crate) fn epoll_targets(epfd: u64) -> Vec<u64> {
    let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")) else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.strip_prefix("tfd:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The local address of the TCP or UDP socket with inode `inode`, from `/proc/net/*`.
fn socket_address(inode: &str) -> Option<String> {
    for (table, protocol) in [("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(9) != Some(&inode) {
                continue;
            }
            let address = parse_net_address(fields.get(1)?)?;
            let state = match (protocol, fields.get(3).copied()) {
                ("tcp", Some("0A")) => ", listening",
                ("tcp", Some("01")) => ", connected",
                _ => "",
            };
            return Some(format!("{address} ({protocol}{state})"));
        }
    }
    None
}

/// `0100007F:9C7B` → `127.0.0.1:40059`; IPv6 as 4 little-endian words.
fn parse_net_address(field: &str) -> Option<String> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match ip.len() {
        8 => {
            let word = u32::from_str_radix(ip, 16).ok()?;
            Some(format!("{}:{port}", std::net::Ipv4Addr::from(word.to_le_bytes())))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Where a thread is, from `/proc/self/task/<tid>/syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyscallState {
    /// On a CPU or runnable, in user code (the kernel cannot say where).
    Running,
    /// Blocked outside any system call (a page fault, being stopped).
    OutsideCall,
    /// Blocked in system call `nr` with these arguments, its user stack pointer at `sp`.
    InCall { nr: i64, args: [usize; 6], sp: usize },
}

/// Reads where thread `tid` of this process is; `None` if it is gone or `/proc` says nothing.
pub(crate) fn syscall_state(tid: i32) -> Option<SyscallState> {
    let line = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    parse_syscall_state(&line)
}

/// `running`, `-1 sp pc`, or `nr arg1..arg6 sp pc` (numbers in hex but `nr`).
fn parse_syscall_state(line: &str) -> Option<SyscallState> {
    let mut fields = line.split_whitespace();
    let first = fields.next()?;
    if first == "running" {
        return Some(SyscallState::Running);
    }
    let nr: i64 = first.parse().ok()?;
    if nr < 0 {
        return Some(SyscallState::OutsideCall);
    }
    let mut hex = fields.map(|field| usize::from_str_radix(field.trim_start_matches("0x"), 16).ok());
    let mut args = [0; 6];
    for arg in &mut args {
        *arg = hex.next()??;
    }
    let sp = hex.next()??;
    Some(SyscallState::InCall { nr, args, sp })
}

/// The signals a thread in `rt_sigtimedwait` waits for (bit `signo - 1`): `None` if it is not in
/// that call, `Some(None)` if the set cannot be read. The kernel unblocks the waited set for the
/// call's duration, so `SigBlk` does not show it; the set is read from the call's first argument,
/// in our own memory, with `process_vm_readv` (a stale address fails instead of faulting).
pub(crate) fn sigtimedwait_set(state: SyscallState) -> Option<Option<u64>> {
    let SyscallState::InCall { nr, args, .. } = state else {
        return None;
    };
    #[cfg(target_os = "linux")]
    if nr == libc::SYS_rt_sigtimedwait {
        let mut set = 0u64;
        let local = libc::iovec {
            iov_base: (&mut set as *mut u64).cast(),
            iov_len: size_of::<u64>(),
        };
        let remote = libc::iovec {
            iov_base: args[0] as *mut libc::c_void,
            iov_len: size_of::<u64>(),
        };
        // SAFETY: process_vm_readv on our own process copies into `set` and reports a bad
        // address as an error instead of faulting.
        let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        return Some((read == size_of::<u64>() as isize).then_some(set));
    }
    let _ = (nr, args);
    None
}

/// The signals thread `tid` blocks (`SigBlk` of its `status`, bit `signo - 1`).
pub(crate) fn blocked_signals(tid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    parse_sig_blk(&status)
}

fn parse_sig_blk(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("SigBlk:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// The writable private mappings of the process, `[start, end)`, sorted: a thread stack is one,
/// its guard page (no access) below it.
pub(crate) fn writable_mappings() -> Vec<(usize, usize)> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    parse_writable_mappings(&maps)
}

fn parse_writable_mappings(maps: &str) -> Vec<(usize, usize)> {
    let mut mappings: Vec<(usize, usize)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            fields.next()?.starts_with("rw").then_some(())?;
            let start = usize::from_str_radix(start, 16).ok()?;
            Some((start, usize::from_str_radix(end, 16).ok()?))
        })
        .collect();
    mappings.sort_unstable();
    mappings
}

/// Field 3 of `stat`; the command name before it may itself contain spaces and parentheses.
fn parse_stat_state(stat: &str) -> Option<char> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

/// The kernel writes `0` when the thread is not sleeping or the symbol is hidden.
fn parse_wchan(wchan: &str) -> Option<String> {
    let wchan = wchan.trim();
    (!wchan.is_empty() && wchan != "0").then(|| wchan.to_owned())
}

/// First field of `syscall`: a number, `running`, or `-1` (blocked outside any system call).
fn parse_syscall(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    if first == "running" {
        return Some(first.to_owned());
    }
    let nr: i64 = first.parse().ok()?;
    if nr < 0 {
        return None;
    }
    Some(syscall_label(nr))
}

/// The name of system call `nr` if known, else `syscall {nr}`.
pub(crate) fn syscall_label(nr: i64) -> String {
    match syscall_name(nr) {
        Some(name) => name.to_owned(),
        None => format!("syscall {nr}"),
    }
}

/// Names of the system calls a blocked thread usually sits in.
#[cfg(target_os = "linux")]
fn syscall_name(nr: i64) -> Option<&'static str> {
    use libc::*;
    #[cfg(target_arch = "x86_64")]
    let legacy: &[(c_long, &str)] = &[
        (SYS_epoll_wait, "epoll_wait"),
        (SYS_poll, "poll"),
        (SYS_select, "select"),
        (SYS_pause, "pause"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let legacy: &[(c_long, &str)] = &[];
    let common: &[(c_long, &str)] = &[
        (SYS_futex, "futex"),
        (SYS_nanosleep, "nanosleep"),
        (SYS_clock_nanosleep, "clock_nanosleep"),
        (SYS_read, "read"),
        (SYS_write, "write"),
        (SYS_epoll_pwait, "epoll_pwait"),
        (SYS_epoll_pwait2, "epoll_pwait2"),
        (SYS_ppoll, "ppoll"),
        (SYS_pselect6, "pselect6"),
        (SYS_accept, "accept"),
        (SYS_accept4, "accept4"),
        (SYS_recvfrom, "recvfrom"),
        (SYS_recvmsg, "recvmsg"),
        (SYS_connect, "connect"),
        (SYS_wait4, "wait4"),
        (SYS_waitid, "waitid"),
        (SYS_rt_sigtimedwait, "rt_sigtimedwait"),
        (SYS_rt_sigsuspend, "rt_sigsuspend"),
        (SYS_readv, "readv"),
        (SYS_writev, "writev"),
        (SYS_pread64, "pread64"),
        (SYS_pwrite64, "pwrite64"),
        (SYS_sendto, "sendto"),
        (SYS_sendmsg, "sendmsg"),
    ];
    common
        .iter()
        .chain(legacy)
        .find(|(number, _)| *number == nr)
        .map(|(_, name)| *name)
}

#[cfg(not(target_os = "linux"))]
fn syscall_name(_nr: i64) -> Option<&'static str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc` parsing copes with odd thread names, hidden wait channels and unknown syscalls.
    #[test]
    #[cfg(target_os = "linux")]
    fn proc_parsing() {
        assert_eq!(parse_stat_state("42 (a) b (c)) S 1 2 3"), Some('S'));
        assert_eq!(parse_stat_state("42 (tokio-rt) R 1"), Some('R'));
        assert_eq!(parse_stat_state("garbage"), None);
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(
            parse_wchan("futex_wait_queue\n").as_deref(),
            Some("futex_wait_queue")
        );
        assert_eq!(parse_syscall("running\n").as_deref(), Some("running"));
        assert_eq!(parse_syscall("-1 0x7ffd 0x1\n"), None);
        let futex = format!("{} 0x7f 0x80 0x2 0x0", libc::SYS_futex);
        assert_eq!(parse_syscall(&futex).as_deref(), Some("futex"));
        assert_eq!(parse_syscall("9999 0x1").as_deref(), Some("syscall 9999"));
        assert_eq!(
            parse_syscall_args("202 0x7f 0x89 0x0 0x7ffd 0x0 0xffffffff 0x7ff 0x7f1"),
            Some((202, [0x7f, 0x89, 0, 0x7ffd, 0, 0xffffffff]))
        );
        assert_eq!(parse_syscall_args("running"), None);
        let stat = "1 (a b) S 1 2 3 4 5 6 7 8 9 10 17 4 0 0 20 0 1 0 4242 0";
        assert_eq!(stat_field(stat, 14).zip(stat_field(stat, 15)), Some((17, 4)));
        assert_eq!(stat_field(stat, 22), Some(4242));
        assert_eq!(
            parse_net_address("0100007F:9C7B").as_deref(),
            Some("127.0.0.1:40059")
        );
        assert_eq!(
            parse_net_address("00000000000000000000000001000000:0050").as_deref(),
            Some("[::1]:80")
        );
    }

    /// The raw syscall line, `SigBlk` and the map of writable mappings parse.
    #[test]
    fn raw_state_parsing() {
        assert_eq!(parse_syscall_state("running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall_state("-1 0x7ffd0 0x7f00\n"),
            Some(SyscallState::OutsideCall)
        );
        let read = parse_syscall_state("0 0x3 0x7f10 0x400 0x0 0x0 0x0 0x7ffe10 0x7f0042\n");
        assert_eq!(
            read,
            Some(SyscallState::InCall {
                nr: 0,
                args: [3, 0x7f10, 0x400, 0, 0, 0],
                sp: 0x7ffe10
            })
        );
        assert_eq!(parse_syscall_state("0 0x3"), None);
        let status = "Name:\tx\nSigPnd:\t0000000000000000\nSigBlk:\t0000000400000000\n";
        assert_eq!(parse_sig_blk(status), Some(1 << 34));
        let maps = "7f00-7f10 ---p 00000000 00:00 0\n7f10-7f20 rw-p 00000000 00:00 0\n\
                    5500-5600 r-xp 00000000 08:01 12 /bin/x\n1000-2000 rw-p 0 00:00 0 [heap]\n";
        assert_eq!(
            parse_writable_mappings(maps),
            [(0x1000, 0x2000), (0x7f10, 0x7f20)]
        );
    }
}

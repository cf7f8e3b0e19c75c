//! Where the members of one group differ. A group shares its stack, creation site and name
//! pattern, not how each member waits nor the hint drawn from that wait: one may be in an untimed
//! wait and another in a timed one. When all agree the group reads as one; otherwise the report
//! says which members wait how, and which hint belongs to which members.
//!
//! Design: members are split into classes in group order (largest first for waits), so a group
//! whose members agree renders exactly as a single survivor would.

use std::fmt::{self, Write as _};

use super::{wait_text, IDS_SHOWN};
use crate::model::{Hint, Kind, Survivor, WaitKind};

/// Members split by a key, in order of first appearance.
fn split<'a, K: PartialEq>(
    group: &[&'a Survivor],
    key: impl Fn(&'a Survivor) -> K,
) -> Vec<(K, Vec<&'a Survivor>)> {
    let mut classes: Vec<(K, Vec<&'a Survivor>)> = Vec::new();
    for &survivor in group {
        let value = key(survivor);
        match classes.iter_mut().find(|(class, _)| *class == value) {
            Some((_, members)) => members.push(survivor),
            None => classes.push((value, vec![survivor])),
        }
    }
    classes
}

/// How a member waits, as far as it was classified.
fn wait_class(survivor: &Survivor) -> Option<WaitKind> {
    Some(survivor.kernel.as_ref()?.wait.as_ref()?.kind)
}

/// Members by wait class, the most common class first.
fn by_wait<'a>(group: &[&'a Survivor]) -> Vec<(Option<WaitKind>, Vec<&'a Survivor>)> {
    let mut classes = split(group, wait_class);
    classes.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
    classes
}

/// The end of a group's first line: how its members wait (`, untimed wait (futex with no
/// timeout, ...)`), or when they differ, each class and how many are in it (`, waits differ:
/// untimed wait (2), timed wait (1)`).
pub(super) fn state(group: &[&Survivor]) -> String {
    let classes = by_wait(group);
    if let [(_, members)] = classes.as_slice() {
        return members[0]
            .kernel
            .as_ref()
            .map(wait_text::kernel)
            .unwrap_or_default();
    }
    let parts: Vec<String> = classes
        .iter()
        .map(|(class, members)| format!("{} ({})", wait_text::class(*class), members.len()))
        .collect();
    format!(", waits differ: {}", parts.join(", "))
}

/// When members wait differently, one line per class: the wait in words and its members
/// (`untimed wait (futex with no timeout, no wake-up in 300ms): tids 11, 12`).
pub(super) fn render_waits(f: &mut fmt::Formatter<'_>, group: &[&Survivor]) -> fmt::Result {
    let classes = by_wait(group);
    if classes.len() < 2 {
        return Ok(());
    }
    for (_, members) in &classes {
        let text = members[0]
            .kernel
            .as_ref()
            .map(wait_text::kernel)
            .unwrap_or_default();
        let text = text.trim_start_matches(", ");
        let text = if text.is_empty() { "not classified" } else { text };
        writeln!(f, "   {text}: {}", ids(members))?;
    }
    Ok(())
}

/// The group's cause-and-fix hint: once when all members share it; otherwise each hint with the
/// members it is for (and their wait class, when that is what sets them apart). Hints are the
/// same when cause and fix are: the evidence may differ by a count (`woken 14 times`), and the
/// first member's stands for the others.
pub(super) fn render_hints(f: &mut fmt::Formatter<'_>, group: &[&Survivor]) -> fmt::Result {
    let hints = split(group, |survivor| {
        survivor.hint.as_ref().map(|hint| (&hint.cause, &hint.fix))
    });
    let shared = hints.len() == 1;
    for (_, members) in &hints {
        let Some(Hint { cause, fix, evidence }) = &members[0].hint else {
            continue;
        };
        let label = if shared {
            String::new()
        } else {
            let waits = split(members, wait_class);
            let class = match waits.as_slice() {
                [(class, _)] if by_wait(group).len() > 1 => format!(", {}", wait_text::class(*class)),
                _ => String::new(),
            };
            format!(" (for {}{class})", ids(members))
        };
        writeln!(f, "   cause{label}: {cause}")?;
        writeln!(f, "   fix:   {fix}")?;
        writeln!(f, "   evidence: {evidence}")?;
    }
    Ok(())
}

/// `tid 11`, `tids 11, 12`, `ids 3, 4 and 2 more`; `1 task` when no id is known.
pub(super) fn ids(members: &[&Survivor]) -> String {
    let Some(first) = members.first() else {
        return String::new();
    };
    let label = match first.kind {
        Kind::Thread => "tid",
        Kind::Task => "id",
        Kind::Process => "pid",
    };
    let mut ids: Vec<String> = members
        .iter()
        .filter(|s| s.id != 0)
        .map(|s| s.id.to_string())
        .collect();
    if ids.is_empty() {
        return format!("{} {}", members.len(), first.kind.noun(members.len()));
    }
    let more = ids.len().saturating_sub(IDS_SHOWN);
    ids.truncate(IDS_SHOWN);
    let mut text = format!(
        "{label}{} {}",
        if members.len() > 1 { "s" } else { "" },
        ids.join(", ")
    );
    if more > 0 {
        let _ = write!(text, " and {more} more");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KernelWait, Stack, Wait};

    fn thread(id: u64, kind: WaitKind, hint: Option<(&str, &str)>) -> Survivor {
        Survivor {
            kind: Kind::Thread,
            name: None,
            id,
            kernel: Some(KernelWait {
                wait: Some(Wait {
                    kind,
                    call: Some("futex".into()),
                    wakeups: None,
                    window: None,
                    cpu: None,
                    resources: Vec::new(),
                }),
                ..KernelWait::default()
            }),
            stack: Stack::Frames(Vec::new()),
            created_at: Vec::new(),
            creator: None,
            test: None,
            spawn_site: None,
            hint: hint.map(|(cause, evidence)| Hint {
                cause: cause.into(),
                fix: "fix it".into(),
                evidence: evidence.into(),
            }),
            process: None,
            wakes_in: None,
            parent: None,
        }
    }

    struct Hints<'a>(&'a [&'a Survivor]);

    impl fmt::Display for Hints<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            render_hints(f, self.0)
        }
    }

    /// Members that agree read as one; members that differ are counted per class, and a hint
    /// that holds for some members only names them. Evidence that differs by a count is one hint.
    #[test]
    fn members_that_differ_are_named() {
        let a = thread(1, WaitKind::SleepLoop, Some(("a loop", "woken 3 times")));
        let b = thread(2, WaitKind::SleepLoop, Some(("a loop", "woken 4 times")));
        assert!(
            state(&[&a, &b]).starts_with(", sleep loop"),
            "{}",
            state(&[&a, &b])
        );
        assert_eq!(Hints(&[&a, &b]).to_string().matches("cause: a loop").count(), 1);
        let c = thread(3, WaitKind::Untimed, None);
        let d = thread(4, WaitKind::Untimed, None);
        let group = [&a, &c, &d];
        assert_eq!(state(&group), ", waits differ: untimed wait (2), sleep loop (1)");
        let hints = Hints(&group).to_string();
        assert!(
            hints.starts_with("   cause (for tid 1, sleep loop): a loop\n"),
            "{hints}"
        );
        assert_eq!(hints.matches("cause").count(), 1, "{hints}");
    }
}

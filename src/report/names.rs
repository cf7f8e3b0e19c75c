//! Names of a group: counters folded into a pattern (`r2d2-worker-{0..2}`), and the narrowest
//! ignore rule that would hide the group, ready to paste.

use crate::model::frame::{self, Tier};
use crate::model::{IgnoreKind, Kind, Survivor};

/// A name with each run of digits replaced by `{}`: survivors whose names differ only by a
/// counter share it.
pub(crate) fn template(name: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str("{}");
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// The digit runs of a name, in order.
fn counters(name: &str) -> Vec<&str> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .collect()
}

/// The names of a group folded into one: `r2d2-worker-{0..2}`, `pool-worker-{0,1}`; the name
/// itself when all are equal.
pub(crate) fn fold(names: &[&str]) -> String {
    fold_with(names, value_set)
}

/// A glob matching every name of the group: counters that vary become `*`.
pub(crate) fn glob(names: &[&str]) -> String {
    fold_with(names, |_| "*".to_owned())
}

/// Folds the names, rendering each counter that varies with `varying`.
fn fold_with(names: &[&str], varying: impl Fn(&[&str]) -> String) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    if names.iter().all(|name| name == first) {
        return (*first).to_owned();
    }
    let runs: Vec<Vec<&str>> = names.iter().map(|name| counters(name)).collect();
    let slots = runs[0].len();
    let mut parts = template(first)
        .split("{}")
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    let mut out = parts.next().unwrap_or_default();
    for slot in 0..slots {
        let mut values: Vec<&str> = runs.iter().filter_map(|run| run.get(slot).copied()).collect();
        values.sort_by_key(|value| (value.len(), *value));
        values.dedup();
        match values.as_slice() {
            [one] => out.push_str(one),
            values => out.push_str(&varying(values)),
        }
        out.push_str(&parts.next().unwrap_or_default());
    }
    out
}

/// `7`, `{0,1}`, `{0..2}` (three or more consecutive numbers).
fn value_set(values: &[&str]) -> String {
    if let [one] = values {
        return (*one).to_owned();
    }
    let numbers: Option<Vec<u64>> = values.iter().map(|value| value.parse().ok()).collect();
    if let Some(numbers) = numbers {
        let consecutive = numbers.windows(2).all(|pair| pair[1] == pair[0] + 1);
        let plain = values
            .iter()
            .all(|value| !value.starts_with('0') || value.len() == 1);
        if consecutive && plain && numbers.len() >= 3 {
            return format!("{{{}..{}}}", numbers[0], numbers[numbers.len() - 1]);
        }
    }
    format!("{{{}}}", values.join(","))
}

/// The narrowest ignore rule that would hide this group, as an attribute argument:
/// `ignore_thread = "r2d2-worker-*"`, `ignore_creator = "app::Pool::new"`,
/// `ignore_spawn_site = "src/server.rs:40"`.
pub(crate) fn hiding_rule(group: &[&Survivor]) -> Option<String> {
    let first = group.first()?;
    if first.kind == Kind::Thread {
        let names: Vec<&str> = group.iter().filter_map(|s| s.name.as_deref()).collect();
        if names.len() == group.len() && !names.is_empty() {
            return Some(IgnoreKind::Thread.argument(&glob(&names)));
        }
    }
    if let Some(site) = &first.spawn_site {
        return Some(IgnoreKind::SpawnSite.argument(&site.at));
    }
    if let Some(spawner) = first
        .created_at
        .iter()
        .find(|frame| frame::tier(frame) != Tier::Internal)
    {
        let function = spawner.key.replace("::{{closure}}", "");
        return Some(IgnoreKind::Creator.argument(&function));
    }
    let stuck = first.stuck_frame()?;
    Some(IgnoreKind::AnyFunction.argument(&stuck.key.replace("::{{closure}}", "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters fold into ranges or sets; other differences keep the first name's shape.
    #[test]
    fn folds_counters() {
        assert_eq!(template("r2d2-worker-12"), "r{}d{}-worker-{}");
        assert_eq!(
            fold(&["r2d2-worker-0", "r2d2-worker-1", "r2d2-worker-2"]),
            "r2d2-worker-{0..2}"
        );
        assert_eq!(fold(&["pool-worker-1", "pool-worker-0"]), "pool-worker-{0,1}");
        assert_eq!(fold(&["w-3", "w-1", "w-10"]), "w-{1,3,10}");
        assert_eq!(fold(&["mailbox", "mailbox"]), "mailbox");
        assert_eq!(glob(&["r2d2-worker-0", "r2d2-worker-1"]), "r2d2-worker-*");
    }
}

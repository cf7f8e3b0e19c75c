//! The notice of what this platform cannot check, once per process: a check that cannot see
//! threads (or children) must not pass in silence.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use super::json::json_str;
use crate::probe::sys::{Unseen, UNSEEN};

/// Says once per process, at its first check, what this platform leaves unchecked: one line on
/// the process's stderr (written directly: libtest captures `eprintln!` of a passing test, and
/// this must be seen in a captured run, like the `LEAKCHECK=off` notice), and one JSON line in
/// `LEAKCHECK_JSON`'s file. Nothing where everything is seen.
pub(crate) fn say_once() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if UNSEEN.is_empty() || SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    let _ = writeln!(std::io::stderr(), "{}", line(UNSEEN));
    if let Some(path) = crate::config::get().ok().and_then(|config| config.json.clone()) {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(json(UNSEEN).as_bytes()));
    }
}

/// `leakcheck: not checked on this platform: threads (cannot list ...); ...`
fn line(unseen: &[Unseen]) -> String {
    let parts: Vec<String> = unseen
        .iter()
        .map(|unseen| format!("{} ({})", unseen.what, unseen.why))
        .collect();
    format!("leakcheck: not checked on this platform: {}", parts.join("; "))
}

/// `{"unchecked":[{"what":"threads","why":"..."}]}` and a newline.
fn json(unseen: &[Unseen]) -> String {
    let items: Vec<String> = unseen
        .iter()
        .map(|unseen| {
            format!(
                "{{\"what\":{},\"why\":{}}}",
                json_str(unseen.what),
                json_str(unseen.why)
            )
        })
        .collect();
    format!("{{\"unchecked\":[{}]}}\n", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING: &[Unseen] = &[
        Unseen {
            what: "threads",
            why: "cannot list the process's threads",
        },
        Unseen {
            what: "child processes",
            why: "cannot \"list\" them",
        },
    ];

    /// The notice names each missing capability and why, in one line and in JSON.
    #[test]
    fn names_what_and_why() {
        assert_eq!(
            line(MISSING),
            "leakcheck: not checked on this platform: threads (cannot list the process's \
             threads); child processes (cannot \"list\" them)"
        );
        assert_eq!(
            json(MISSING),
            "{\"unchecked\":[{\"what\":\"threads\",\"why\":\"cannot list the process's threads\"},\
             {\"what\":\"child processes\",\"why\":\"cannot \\\"list\\\" them\"}]}\n"
        );
    }
}

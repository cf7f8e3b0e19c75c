//! Child processes in reports: the block for a group of leaked children, their JSON fields and
//! their cause-and-fix hint. Kept apart from the thread and task rendering it sits beside.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::IDS_SHOWN;
use crate::model::frame;
use crate::model::{Hint, ProcessInfo, Survivor};

/// Renders one group of leaked child processes (same program, creation site and test).
pub(crate) fn render_group(f: &mut fmt::Formatter<'_>, group: &[&Survivor], name_tests: bool) -> fmt::Result {
    let first = group[0];
    let count = group.len();
    let info = first.process.clone().unwrap_or_default();
    let mut pids: Vec<String> = group.iter().map(|s| s.id.to_string()).collect();
    let more = pids.len().saturating_sub(IDS_SHOWN);
    pids.truncate(IDS_SHOWN);
    let mut pids = format!("pid{} {}", if count > 1 { "s" } else { "" }, pids.join(", "));
    if more > 0 {
        let _ = write!(pids, " and {more} more");
    }
    let command = match info.command() {
        command if command.is_empty() => "(command line unknown)".to_string(),
        command => format!("`{command}`"),
    };
    let noun = first.kind.noun(count);
    let mut line = format!("×{count} {noun} {command} ({pids})");
    if let Some(state) = info.state.map(state_text) {
        let _ = write!(line, ", {state}");
    }
    if let Some(age) = info.age {
        let _ = write!(line, ", started {} ago", age_text(age));
    }
    writeln!(f, "{line}")?;
    let origin = first
        .origin()
        .unwrap_or_else(|| "an unknown site (no creation backtrace)".into());
    let by = first
        .creator
        .as_ref()
        .map(|c| format!(", by thread {c:?}"))
        .unwrap_or_default();
    let via = info.via.map(|via| format!(" (`{via}`)")).unwrap_or_default();
    writeln!(f, "   started at {origin}{by}{via}")?;
    if let Some(test) = first.test.as_ref().filter(|_| name_tests) {
        writeln!(f, "   started by test `{test}`")?;
    }
    if let Some(hint) = &first.hint {
        writeln!(f, "   cause: {}", hint.cause)?;
        writeln!(f, "   fix:   {}", hint.fix)?;
        writeln!(f, "   evidence: {}", hint.evidence)?;
    }
    Ok(())
}

/// `sleeping`, `running`, `exited, never waited for (zombie)`.
pub(crate) fn state_text(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "in uninterruptible wait",
        'T' | 't' => "stopped",
        'Z' => "exited, never waited for (zombie)",
        'X' => "exiting",
        _ => "in an unknown state",
    }
}

fn age_text(age: Duration) -> String {
    if age >= Duration::from_secs(1) {
        format!("{:.1}s", age.as_secs_f64())
    } else {
        format!("{}ms", age.as_millis())
    }
}

/// The process fields of a survivor's JSON object: `pid`, `command`, `argv`, `state`, `age_ms`,
/// `via` (written after the common fields; `id` is the pid too).
pub(crate) fn json_fields(survivor: &Survivor, out: &mut String, json_str: fn(&str) -> String) {
    let Some(info) = &survivor.process else {
        return;
    };
    let argv: Vec<String> = info.argv.iter().map(|arg| json_str(arg)).collect();
    let _ = write!(
        out,
        ",\"pid\":{},\"command\":{},\"argv\":[{}],\"process_state\":{},\"age_ms\":{},\"via\":{}",
        survivor.id,
        json_str(&info.command()),
        argv.join(","),
        info.state
            .map_or("null".to_string(), |state| json_str(&state.to_string())),
        info.age
            .map_or("null".to_string(), |age| age.as_millis().to_string()),
        info.via.map_or("null".to_string(), json_str),
    );
}

/// The cause and fix for a leaked child, told apart by its creation backtrace.
pub(crate) fn hint(survivor: &Survivor) -> Option<Hint> {
    let info = survivor.process.as_ref()?;
    let frame = |needle: &str| {
        survivor
            .created_at
            .iter()
            .find(|frame| frame.key.contains(needle))
            .map(|frame| frame.function.clone())
    };
    let at = frame::first_user_frame(&survivor.created_at)
        .map(|user| format!(", called from `{}`", user.function))
        .unwrap_or_default();
    if let Some(function) = frame("tokio::process") {
        return Some(Hint {
            cause: "a `tokio::process::Child` dropped (or kept) without being killed: tokio does not \
                    kill a child on drop unless asked, so it outlives the test"
                .into(),
            fix: "build the command with `.kill_on_drop(true)`, or `child.kill().await` (which also \
                  waits) before the test ends"
                .into(),
            evidence: format!("`{function}` in the creation backtrace{at}"),
        });
    }
    if let Some(function) = frame("std::process") {
        return Some(Hint {
            cause: "a `std::process::Child` dropped (or kept) without `kill()` + `wait()`: std never \
                    kills nor waits for a child on drop, so it outlives the test"
                .into(),
            fix: "call `child.kill()` then `child.wait()` when the test is done (a guard whose `Drop` \
                  does both also covers panics), or `wait()` for it to finish"
                .into(),
            evidence: format!("`{function}` in the creation backtrace{at}"),
        });
    }
    (info.via == Some("fork")).then(|| Hint {
        cause: "a child started with `fork` was never killed nor waited for".into(),
        fix: "`kill` it and `waitpid` for it before the test ends".into(),
        evidence: format!("started through `fork`{at}"),
    })
}

/// One line per zombie for the report's note: `pid 42 `sleep 0` (started at ...)`.
pub(crate) fn zombie_line(survivor: &Survivor) -> String {
    let command = survivor
        .process
        .as_ref()
        .map(ProcessInfo::command)
        .filter(|command| !command.is_empty())
        .unwrap_or_else(|| "?".into());
    let origin = survivor
        .origin()
        .map(|origin| format!(", started at {origin}"))
        .unwrap_or_default();
    format!("pid {} `{command}`{origin}", survivor.id)
}

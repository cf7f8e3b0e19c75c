//! The user's source, read only for a report, for what the running program does not tell: the
//! branches of a `select!` whose async trace shows only some of them (tokio's task dumps leave IO
//! branches such as `accept()` without a leaf), the name a task's `Builder` gives it (tokio keeps
//! it only in a `tracing` span), and whether a `recv` is called under a lock.
//!
//! Design: [`tokens`] lexes, [`chains`] walks method chains; this file finds and reads the files.
//! A file that cannot be read, or text that does not match, gives nothing rather than a guess.

mod chains;
mod tokens;

#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) use chains::BuilderName;

/// The name the task builder at `file`:`line`:`column` (a spawn location from tokio's spawn hook)
/// gives its task: `.name("ticker")` in the same chain as the `.spawn(..)` there.
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) fn task_name(file: &str, line: u32, column: u32) -> Option<BuilderName> {
    chains::builder_name(&read(file)?, line, column)
}

/// The guard a `.recv()` at `file`:`line` is called on (`receiver.lock().unwrap()`), if the
/// receiver is reached through a `Mutex::lock` (the Rust Book's pool).
pub(crate) fn recv_guard(file: &str, line: u32) -> Option<String> {
    chains::recv_on_guard(&read(file)?, line)
}

/// The text of `file`: as given, or for a relative path (`std::panic::Location` gives them relative
/// to the workspace root), relative to the current directory or one of its ancestors.
fn read(file: &str) -> Option<String> {
    let path = std::path::Path::new(file);
    if path.is_absolute() {
        return std::fs::read_to_string(path).ok();
    }
    let current = std::env::current_dir().ok()?;
    current
        .ancestors()
        .find_map(|dir| std::fs::read_to_string(dir.join(path)).ok())
}

/// The branch futures of the `select!` that starts at `line` (1-based) of `file`:
/// `listener.accept()`, `tokio::signal::ctrl_c()`. Empty when the file cannot be read or no
/// `select!` starts there.
pub(crate) fn select_branches(file: &str, line: u32) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = (line as usize).checked_sub(1) else {
        return Vec::new();
    };
    if !lines.get(start).is_some_and(|first| first.contains("select!")) {
        return Vec::new();
    }
    branches(&lines[start..])
}

/// Branches of a `select!` block given from its first line: `<pattern> = <future> =>` at the
/// block's top level, up to the brace that closes it.
fn branches(lines: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut depth = 0i32;
    for (index, line) in lines.iter().enumerate() {
        let top = depth == 1;
        if top && index > 0 {
            if let Some((head, _)) = line.split_once("=>") {
                if let Some((_, future)) = head.split_once(" = ") {
                    let future = future.trim().trim_end_matches(", if").trim();
                    if !future.is_empty() {
                        found.push(future.to_owned());
                    }
                }
            }
        }
        for c in line.chars() {
            match c {
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                _ => {}
            }
        }
        if index > 0 && depth <= 0 {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-level branches are found; nested blocks and the handlers are not branches.
    #[test]
    fn finds_select_branches() {
        let block = [
            "        tokio::select! {",
            "            accepted = listener.accept() => drop(accepted),",
            "            _ = tokio::signal::ctrl_c() => {",
            "                let x = 1 => 2;",
            "                return;",
            "            }",
            "        }",
            "        let after = 3;",
        ];
        assert_eq!(branches(&block), ["listener.accept()", "tokio::signal::ctrl_c()"]);
    }
}

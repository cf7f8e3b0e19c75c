//! The user's source, read only for a report: the branches of a `select!` whose async trace shows
//! only some of them (tokio's task dumps leave IO branches such as `accept()` without a leaf).

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

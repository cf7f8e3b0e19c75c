//! Where a frame is, as reports and rules write it: `tests/app.rs:12 in app::leaky_worker`, a
//! dependency's crate and version, and the creation chain from a spawn out to the test.

use super::*;

/// `src/worker.rs:17 in app::Worker::start, called from tests/app.rs:12 in leaky_worker`: the
/// spawn (the first frame of `frames`, caller first, that is not internal), then every user frame
/// outward up to the test, one per function (a closure counts as its function), however many
/// library frames lie between them (a pool's builder is five or more): those are folded, never a
/// reason to stop before the test's line.
pub(crate) fn creation_chain(frames: &[Frame]) -> Option<String> {
    let start = frames.iter().position(|frame| tier(frame) != Tier::Internal)?;
    let mut links: Vec<&Frame> = vec![&frames[start]];
    let mut seen: Vec<&str> = vec![base_name(&frames[start].key)];
    for frame in &frames[start + 1..] {
        if frame.library || seen.contains(&base_name(&frame.key)) {
            continue;
        }
        seen.push(base_name(&frame.key));
        links.push(frame);
    }
    let text = links
        .iter()
        .map(|frame| location_text(frame))
        .collect::<Vec<_>>()
        .join(", called from ");
    Some(text)
}

/// `tests/app.rs:12 in app::leaky_worker`, or for a dependency
/// `src/lib.rs:375 in scheduled_thread_pool::Worker::start (scheduled-thread-pool 0.2.8)`.
pub(crate) fn location_text(frame: &Frame) -> String {
    let function = &frame.function;
    match (shown_location(frame), dependency_of_tier(frame)) {
        (Some(location), Some(krate)) => format!("{location} in {function} ({krate})"),
        (None, Some(krate)) => format!("{function} ({krate})"),
        (Some(location), None) => format!("{location} in {function}"),
        (None, None) => function.clone(),
    }
}

/// `app::Worker::start at src/worker.rs:17`, or for a dependency
/// `scheduled_thread_pool::Worker::get_job (scheduled-thread-pool 0.2.8) at src/lib.rs:412`.
pub(crate) fn frame_text(frame: &Frame) -> String {
    let mut text = frame.function.clone();
    if let Some(krate) = dependency_of_tier(frame) {
        text = format!("{text} ({krate})");
    }
    if let Some(location) = shown_location(frame) {
        text = format!("{text} at {location}");
    }
    text
}

/// The crate a library frame's source comes from, when cargo fetched it (a dependency, or a
/// runtime's internals such as tokio's): shown with its version, its path relative to the crate.
fn dependency_of_tier(frame: &Frame) -> Option<Crate> {
    (tier(frame) != Tier::User)
        .then(|| dependency_crate(frame))
        .flatten()
}

/// A frame's location: relative to its crate's root for a dependency, else [`short_location`].
fn shown_location(frame: &Frame) -> Option<String> {
    if dependency_of_tier(frame).is_some() {
        let file = frame.file.as_deref()?;
        let root = file
            .find("/registry/src/")
            .map(|at| at + "/registry/src/".len())
            .or_else(|| {
                file.find("/git/checkouts/")
                    .map(|at| at + "/git/checkouts/".len())
            })?;
        // `<index>/<crate>-<version>/src/lib.rs` or `<crate>-<hash>/<rev>/src/lib.rs`.
        let inside = file[root..].splitn(3, '/').nth(2)?;
        return Some(match frame.line {
            Some(line) => format!("{inside}:{line}"),
            None => inside.to_owned(),
        });
    }
    short_location(frame)
}

/// `src/mailbox.rs:12`: the frame's file as [`relative_path`] shows it, and its line; `None`
/// without a file.
pub(crate) fn short_location(frame: &Frame) -> Option<String> {
    let shown = relative_path(frame.file.as_deref()?);
    Some(match frame.line {
        Some(line) => format!("{shown}:{line}"),
        None => shown,
    })
}

/// `file` relative to the current directory, the package or the workspace root when it lies
/// under one of them (with `/` separators, on every platform), else as given.
pub(crate) fn relative_path(file: &str) -> String {
    roots()
        .iter()
        .filter_map(|root| strip_root(file, &root.to_string_lossy()))
        .find(|relative| !relative.is_empty())
        .unwrap_or_else(|| file.to_owned())
}

/// `file` relative to `root` (`None` if it is not under it), the parts joined with `/`, for
/// paths as any platform writes them: `\` or `/` separators, a `\\?\` prefix, a drive letter in
/// either case, and Wine's mapping of the Unix root to a drive (`Z:\work\app` is `/work/app`, as
/// a Windows build under Wine sees its current directory while the debug info keeps the Unix path
/// the build recorded). Drive paths compare without regard to case, as Windows does.
pub(crate) fn strip_root(file: &str, root: &str) -> Option<String> {
    let (file_drive, file_parts) = parts(file);
    let (root_drive, root_parts) = parts(root);
    let insensitive = match (file_drive, root_drive) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(&b) => return None,
        (None, None) => false,
        _ => true,
    };
    if file_parts.len() < root_parts.len() {
        return None;
    }
    let same = |a: &str, b: &str| {
        if insensitive {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    if !file_parts.iter().zip(&root_parts).all(|(a, b)| same(a, b)) {
        return None;
    }
    Some(file_parts[root_parts.len()..].join("/"))
}

/// An absolute path's drive letter (if any) and its parts; `None` parts for a relative path.
fn parts(path: &str) -> (Option<char>, Vec<&str>) {
    let path = path
        .strip_prefix(r"\\?\")
        .or_else(|| path.strip_prefix("//?/"))
        .unwrap_or(path);
    let mut chars = path.chars();
    let drive = match (chars.next(), chars.next()) {
        (Some(letter), Some(':')) if letter.is_ascii_alphabetic() => Some(letter),
        _ => None,
    };
    let rest = if drive.is_some() { &path[2..] } else { path };
    let parts = rest
        .split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    (drive, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::frame::tests::frame;

    /// Locations are shown relative to the current directory, else as recorded.
    #[test]
    fn short_locations() {
        let here = std::env::current_dir().unwrap();
        let inside = here.join("src/mailbox.rs").display().to_string();
        assert_eq!(
            short_location(&frame("app::f", Some(&inside), Some(12))).as_deref(),
            Some("src/mailbox.rs:12")
        );
        let outside = frame("app::f", Some("/elsewhere/lib.rs"), None);
        assert_eq!(short_location(&outside).as_deref(), Some("/elsewhere/lib.rs"));
        assert_eq!(short_location(&frame("app::f", None, Some(3))), None);
        assert_eq!(relative_path(&inside), "src/mailbox.rs");
    }

    /// Windows paths are made relative as Unix ones: separators, `\\?\`, drive case, and Wine's
    /// `Z:` for the Unix root.
    #[test]
    fn strips_roots_written_by_any_platform() {
        let cases = [
            ("/work/app/tests/report.rs", "/work/app", Some("tests/report.rs")),
            ("/work/app/tests/report.rs", "/work/app/", Some("tests/report.rs")),
            ("/work/app2/tests/report.rs", "/work/app", None),
            ("/work/App/tests/report.rs", "/work/app", None),
            (
                r"C:\Users\u\app\tests\report.rs",
                r"C:\Users\u\app",
                Some("tests/report.rs"),
            ),
            (
                r"c:\users\U\app\tests\report.rs",
                r"C:\Users\u\app",
                Some("tests/report.rs"),
            ),
            (
                r"\\?\C:\Users\u\app\src\lib.rs",
                r"C:\Users\u\app",
                Some("src/lib.rs"),
            ),
            (
                r"C:\Users\u\app\src\lib.rs",
                r"\\?\C:\Users\u\app",
                Some("src/lib.rs"),
            ),
            ("C:/Users/u/app/src/lib.rs", r"C:\Users\u\app", Some("src/lib.rs")),
            (r"D:\Users\u\app\src\lib.rs", r"C:\Users\u\app", None),
            // Wine: the debug info keeps the Unix path; the current directory is on `Z:`.
            (
                "/work/app/tests/report.rs",
                r"Z:\work\app",
                Some("tests/report.rs"),
            ),
            (
                r"Z:\work\app\tests\report.rs",
                "/work/app",
                Some("tests/report.rs"),
            ),
            ("/work/app", "/work/app", Some("")),
            ("tests/report.rs", "/work/app", None),
        ];
        for (file, root, relative) in cases {
            assert_eq!(strip_root(file, root).as_deref(), relative, "{file} under {root}");
        }
    }

    /// A creation chain starts at the spawn and lists each user function once, out to the test.
    #[test]
    fn creation_chain_lists_user_frames() {
        let frames = [
            frame("app::Worker::start", Some("/work/app/src/worker.rs"), Some(17)),
            frame("std::thread::Builder::spawn", None, None),
            frame(
                "app::leaky_worker::{{closure}}",
                Some("/work/app/tests/app.rs"),
                Some(12),
            ),
            frame("app::leaky_worker", Some("/work/app/tests/app.rs"), Some(10)),
        ];
        assert_eq!(
            creation_chain(&frames).unwrap(),
            "/work/app/src/worker.rs:17 in app::Worker::start, called from /work/app/tests/app.rs:12 in \
             app::leaky_worker::{{closure}}"
        );
        assert_eq!(clean_name("t::__leakcheck_body::{{closure}}"), "t::{{closure}}");
    }
}

//! The report as one JSON line, appended to the file `LEAKCHECK_JSON` names.

use std::fmt::Write as _;

use super::Report;
use crate::model::frame;
use crate::model::Kind;

impl Report {
    /// Appends the report as one JSON line to the file `LEAKCHECK_JSON` names, if any.
    pub(crate) fn write_json(&self) -> Result<(), String> {
        let Some(path) = crate::config::get().ok().and_then(|config| config.json.clone()) else {
            return Ok(());
        };
        let line = self.to_json();
        use std::io::Write as _;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .map_err(|error| {
                format!(
                    "leakcheck: cannot append to `LEAKCHECK_JSON={}`: {error}",
                    path.display()
                )
            })
    }

    /// The report as one JSON object and a newline.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::from("{");
        let _ = write!(out, "\"test\":{}", json_str(&self.test));
        let (file, line) = match &self.location {
            Some((file, line)) => (json_str(file), line.to_string()),
            None => ("null".to_string(), "null".to_string()),
        };
        let binary = crate::config::binary_name();
        let _ = write!(
            out,
            ",\"file\":{file},\"line\":{line},\"binary\":{},\"survivors\":[",
            json_opt(binary.as_deref())
        );
        for (i, survivor) in self.survivors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            let kind = match survivor.kind {
                Kind::Thread => "thread",
                Kind::Task => "task",
                Kind::Process => "process",
            };
            let _ = write!(out, "\"kind\":\"{kind}\",\"id\":{}", survivor.id);
            let _ = write!(out, ",\"name\":{}", json_opt(survivor.name.as_deref()));
            match survivor.stuck_frame() {
                Some(frame) => {
                    let _ = write!(
                        out,
                        ",\"stuck\":{{\"function\":{},\"location\":{}}}",
                        json_str(&frame.function),
                        json_opt(frame::short_location(frame).as_deref())
                    );
                }
                None => out.push_str(",\"stuck\":null"),
            }
            let _ = write!(out, ",\"origin\":{}", json_opt(survivor.origin().as_deref()));
            let _ = write!(out, ",\"creator\":{}", json_opt(survivor.creator.as_deref()));
            let site = survivor.spawn_site.as_ref();
            let _ = write!(
                out,
                ",\"spawn_site\":{},\"named_by\":{}",
                json_opt(site.map(|site| site.at.as_str())),
                json_opt(site.and_then(|site| site.named_by.as_deref()))
            );
            let state = survivor.kernel.as_ref().and_then(|k| k.state.map(String::from));
            let wchan = survivor.kernel.as_ref().and_then(|k| k.wchan.clone());
            let _ = write!(
                out,
                ",\"state\":{},\"wchan\":{}",
                json_opt(state.as_deref()),
                json_opt(wchan.as_deref())
            );
            super::children::json_fields(survivor, &mut out, json_str);
            match &survivor.hint {
                Some(hint) => {
                    let _ = write!(
                        out,
                        ",\"hint\":{{\"cause\":{},\"fix\":{},\"evidence\":{}}}",
                        json_str(&hint.cause),
                        json_str(&hint.fix),
                        json_str(&hint.evidence)
                    );
                }
                None => out.push_str(",\"hint\":null"),
            }
            out.push('}');
        }
        out.push(']');
        let _ = write!(
            out,
            ",\"task_count\":{}",
            self.task_count
                .as_ref()
                .map_or("null".to_string(), |t| t.alive.to_string())
        );
        out.push_str("}\n");
        out
    }
}

fn json_opt(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_string(), json_str)
}

pub(super) fn json_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

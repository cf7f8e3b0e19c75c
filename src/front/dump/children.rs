//! The child processes of a [`Dump`](super::Dump): each with its command line, state, and the
//! thread (and test) that started it.

use std::collections::BTreeSet;
use std::fmt;

use crate::check::children::{describe, Candidate};
use crate::model::frame;
use crate::probe::children::{self, Liveness};
use crate::probe::sys;
use crate::report::children::state_text;

/// One child process of a [`Dump`](super::Dump).
#[derive(Debug, Clone)]
pub struct DumpedChild {
    pid: i32,
    argv: Vec<String>,
    state: Option<char>,
    creator: Option<String>,
    test: Option<String>,
    created_at: Option<String>,
}

impl DumpedChild {
    /// The child's process id.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = std::process::Command::new("sleep").arg("1").spawn().unwrap();
    /// assert!(leakcheck::dump().children().any(|c| c.pid() == child.id() as i32));
    /// child.kill().unwrap();
    /// child.wait().unwrap();
    /// ```
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its command line, arguments joined by spaces (empty if unknown).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut child = std::process::Command::new("sleep").arg("1").spawn().unwrap();
    /// assert!(leakcheck::dump().children().any(|c| c.command() == "sleep 1"));
    /// child.kill().unwrap();
    /// child.wait().unwrap();
    /// ```
    pub fn command(&self) -> String {
        self.argv.join(" ")
    }

    /// Its `/proc` state: `R` running, `S` sleeping, `Z` exited but never waited for, ...
    ///
    /// # Examples
    ///
    /// ```
    /// for child in leakcheck::dump().children() {
    ///     println!("{:?}", child.state());
    /// }
    /// ```
    pub fn state(&self) -> Option<char> {
        self.state
    }

    /// The name of the thread that started it, where known.
    ///
    /// # Examples
    ///
    /// ```
    /// for child in leakcheck::dump().children() {
    ///     println!("{:?}", child.creator());
    /// }
    /// ```
    pub fn creator(&self) -> Option<&str> {
        self.creator.as_deref()
    }
}

/// The process's children: those the interposers recorded, and any other child `/proc` shows.
pub(crate) fn children() -> Vec<DumpedChild> {
    let recorded = children::all();
    let mut pids: BTreeSet<i32> = sys::child_pids().unwrap_or_default().into_iter().collect();
    pids.extend(recorded.iter().map(|(child, _)| child.pid));
    pids.into_iter()
        .map(|pid| {
            let entry = recorded.iter().find(|(child, _)| child.pid == pid);
            let candidate = Candidate {
                pid,
                child: entry.map(|(child, _)| child.clone()),
                zombie: entry.is_some_and(|(_, liveness)| *liveness == Liveness::Zombie),
            };
            let survivor = describe(&candidate);
            let info = survivor.process.clone().unwrap_or_default();
            DumpedChild {
                pid,
                argv: info.argv,
                state: info.state,
                creator: survivor.creator.clone(),
                test: survivor.test.clone(),
                created_at: frame::first_user_frame(&survivor.created_at).and_then(frame::short_location),
            }
        })
        .collect()
}

/// The dump's block for one child.
pub(crate) fn render(f: &mut fmt::Formatter<'_>, child: &DumpedChild) -> fmt::Result {
    let command = match child.command() {
        command if command.is_empty() => "(command line unknown)".to_string(),
        command => format!("`{command}`"),
    };
    let state = child
        .state
        .map(|state| format!(" [{state}: {}]", state_text(state)))
        .unwrap_or_default();
    writeln!(f, "child process {} {command}{state}", child.pid)?;
    if let Some(creator) = &child.creator {
        let at = child
            .created_at
            .as_deref()
            .map(|at| format!(" at {at}"))
            .unwrap_or_default();
        writeln!(f, "   started by thread {creator:?}{at}")?;
    }
    if let Some(test) = child
        .test
        .as_ref()
        .filter(|test| Some(*test) != child.creator.as_ref())
    {
        writeln!(f, "   in test `{test}`")?;
    }
    Ok(())
}

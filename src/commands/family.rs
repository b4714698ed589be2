//! A trace's family for `ttvm info`: the parent it was branched from, that parent's parent,
//! and so on, followed through files next to the trace (families are kept side by side).

use std::path::Path;

use ttvm_replay::trace::{Lineage, TraceFile};

/// Ancestors followed at most (a chain longer than this is most likely a loop of renames).
const MAX_DEPTH: usize = 64;

/// One ancestor of a trace, nearest first.
pub struct Ancestor {
    /// Its file name as the child names it.
    pub file: String,
    /// The step of this ancestor its child starts from.
    pub branch_icount: u64,
    /// Whether the file was found next to the child, and is the trace the child names.
    pub found: Found,
}

/// What was found under an ancestor's name.
pub enum Found {
    /// The named trace.
    Yes,
    /// No file of that name next to the child.
    Missing,
    /// A file of that name that is not the named trace (another recording, or damaged).
    Different(String),
}

impl Found {
    /// For people and JSON.
    pub fn describe(&self) -> String {
        match self {
            Found::Yes => "found".into(),
            Found::Missing => "not found next to it".into(),
            Found::Different(why) => format!("a different file of that name: {why}"),
        }
    }
}

/// The chain of ancestors of a trace whose header has `lineage`, in directory `dir`.
pub fn ancestors(dir: &Path, lineage: Option<&Lineage>) -> Vec<Ancestor> {
    let mut out = Vec::new();
    let mut next = lineage.cloned();
    while let Some(l) = next.take() {
        if out.len() >= MAX_DEPTH {
            break;
        }
        let path = dir.join(&l.parent_file);
        let found = if !path.is_file() {
            Found::Missing
        } else {
            match ttvm_replay::branch::trace_id(&path) {
                Ok(id) if id == l.parent_id => match TraceFile::open(&path) {
                    Ok(f) => {
                        next = f.header.lineage;
                        Found::Yes
                    }
                    Err(e) => Found::Different(e.to_string()),
                },
                Ok(id) => Found::Different(format!("its id is {id:016x}, the child names {:016x}", l.parent_id)),
                Err(e) => Found::Different(e.to_string()),
            }
        };
        out.push(Ancestor { file: l.parent_file, branch_icount: l.branch_icount, found });
    }
    out
}

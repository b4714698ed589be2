//! Runs docs/WALKTHROUGH.md: every command in it, in order, in a scratch directory, so the
//! documentation cannot drift from what ttvm does.
//!
//! Blocks are taken from the Markdown by their info string: ```` ```sh walkthrough ````
//! (shell commands; a trailing `# exit N` means that status is expected),
//! ```` ```gdb walkthrough-file=NAME ```` (a file the commands use) and
//! ```` ```sh walkthrough-tui ```` (run in tmux and driven with the keys the text names).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::require_kvm;

enum Block {
    Shell(String),
    File { name: String, body: String },
    Tui(String),
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let info = info.trim();
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let mut words = info.split_whitespace();
        let (_lang, tag) = (words.next(), words.next());
        match tag {
            Some("walkthrough") => out.push(Block::Shell(body)),
            Some("walkthrough-tui") => out.push(Block::Tui(body)),
            Some(t) if t.starts_with("walkthrough-file=") => {
                out.push(Block::File { name: t["walkthrough-file=".len()..].to_string(), body })
            }
            _ => {}
        }
    }
    out
}

/// Turns a block into a bash script that stops at the first unexpected status.
fn script(block: &str) -> String {
    let mut s = String::from("set -u\n");
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (cmd, expect) = match line.split_once("# exit ") {
            Some((c, n)) => (c.trim(), n.trim().parse::<i32>().expect("status after `# exit`")),
            None => (line, 0),
        };
        if cmd.ends_with('&') {
            s.push_str(cmd);
            s.push('\n');
            continue;
        }
        s.push_str(&format!(
            "{cmd}\nrc=$?; if [ $rc -ne {expect} ]; then echo \"WALKTHROUGH: expected status {expect}, got $rc: {}\"; exit 1; fi\n",
            cmd.replace('"', "\\\"").replace('$', "\\$")
        ));
    }
    s.push_str("wait\n");
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tui(dir: &Path, path_env: &str, cmd: &str) {
    let socket = format!("ttvm-walkthrough-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let o = Command::new("tmux").args(["-L", &socket, "-f", "/dev/null"]).args(args).output().expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let line = format!("cd {} && PATH={} {}", dir.display(), path_env, cmd.trim());
    tmux(&["new-session", "-d", "-s", "w", "-x", "160", "-y", "48", &line]);
    let wait_for = |what: &str| {
        let t0 = Instant::now();
        loop {
            let s = tmux(&["capture-pane", "-p", "-t", "w"]);
            if s.contains(what) {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "waiting for {what:?}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("Console");
    // The keys the walkthrough names: `/`, `PANIC`, Enter, then `q`.
    tmux(&["send-keys", "-t", "w", "/"]);
    tmux(&["send-keys", "-t", "w", "-l", "PANIC"]);
    tmux(&["send-keys", "-t", "w", "Enter"]);
    let screen = wait_for("PANIC: lost update");
    let console: Vec<&str> = screen.lines().filter(|l| l.contains("PANIC: lost update")).collect();
    assert!(!console.is_empty(), "{screen}");
    tmux(&["send-keys", "-t", "w", "q"]);
    tmux(&["kill-server"]);
}

#[test]
fn the_walkthrough_runs_as_written() {
    if !require_kvm("the_walkthrough_runs_as_written") {
        return;
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/WALKTHROUGH.md")).unwrap();
    let port = free_port().to_string();
    let doc = doc.replace("127.0.0.1:1234", &format!("127.0.0.1:{port}"));
    let blocks = blocks(&doc);
    assert!(blocks.len() >= 6, "the walkthrough's blocks were not found");

    let dir = common::tempdir();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ttvm"), bin.join("ttvm")).unwrap();
    let path_env = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let work = dir.path().join("project");
    std::fs::create_dir(&work).unwrap();
    let git = |args: &[&str]| assert!(Command::new("git").args(args).current_dir(&work).status().unwrap().success());
    git(&["init", "-q"]);
    git(&["config", "user.email", "walkthrough@ttvm.invalid"]);
    git(&["config", "user.name", "ttvm walkthrough"]);

    for b in &blocks {
        if let Block::File { name, body } = b {
            std::fs::write(work.join(name), body).unwrap();
        }
    }
    let mut all_output = String::new();
    for b in &blocks {
        match b {
            Block::Shell(body) => {
                let o = Command::new("bash")
                    .arg("-c")
                    .arg(script(body))
                    .current_dir(&work)
                    .env("PATH", &path_env)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                assert!(o.status.success(), "walkthrough block failed:\n{body}\n---\n{text}");
                all_output.push_str(&text);
            }
            Block::Tui(cmd) => tui(&work, &path_env, cmd),
            Block::File { .. } => {}
        }
    }
    // What the text promises each step shows.
    for promise in [
        "the failure was recorded on run",
        "PANIC: lost update",
        "verified",
        "Hardware access (read/write) watchpoint",
        "threads/main.rs",
        "check ok",
    ] {
        assert!(all_output.contains(promise), "the walkthrough's output lacks {promise:?}:\n{all_output}");
    }
    let log = Command::new("git").args(["log", "--oneline"]).current_dir(&work).output().unwrap();
    assert!(String::from_utf8_lossy(&log.stdout).contains("recorded lost-update failure"));
}

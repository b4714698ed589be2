//! A real terminal for end-to-end tests of `ttvm tui`: a private tmux server running one
//! command in a fixed-size pane, driven with `send-keys` and read with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

/// Pane width.
pub const W: u16 = 160;
/// Pane height.
pub const H: u16 = 48;

/// A private tmux server (its own socket) running one shell command line in a W x H pane.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts the server running `cmd` in its pane.
    pub fn start(cmd: &str) -> Self {
        let socket = format!("ttvm-tui-{}-{}", std::process::id(), rand_suffix());
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(["new-session", "-d", "-s", "t", "-x", &W.to_string(), "-y", &H.to_string(), cmd])
            .status()
            .unwrap_or_else(|e| panic!("tmux is needed for this test (apt-get install tmux): {e}"));
        assert!(ok.success(), "tmux new-session failed");
        Self { socket }
    }

    /// Runs a tmux command against this server; its stdout.
    pub fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Sends keys (tmux key names) to the pane.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The pane's visible text.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// A tmux format variable of the pane (e.g. `pane_dead`).
    pub fn var(&self, name: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "t", &format!("#{{{name}}}")]).trim().to_string()
    }

    /// Waits until `pred` holds for the screen; panics with the last screen otherwise.
    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for ttvm to exit (the shell then prints its status); returns the status.
    pub fn wait_exit(&self) -> i32 {
        let s = self.wait("ttvm to exit", |s| s.contains("EXIT="));
        let status = s.split("EXIT=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok());
        status.unwrap_or_else(|| panic!("no exit status on screen:\n{s}"))
    }

    /// The pid of ttvm: the child of the pane's shell.
    pub fn ttvm_pid(&self) -> String {
        let shell = self.var("pane_pid");
        let t0 = Instant::now();
        loop {
            for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1));
                if ppid == Some(shell.as_str()) && stat.contains("(ttvm)") {
                    return e.file_name().to_string_lossy().into_owned();
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no ttvm process under the pane's shell {shell}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts the program left the terminal as it found it (read while the shell that ran
    /// it still lives: tmux resets modes of dead panes).
    pub fn assert_restored(&self) {
        assert_eq!(self.var("alternate_on"), "0", "still on the alternate screen");
        for flag in ["mouse_any_flag", "mouse_button_flag", "mouse_standard_flag", "mouse_sgr_flag"] {
            assert_eq!(self.var(flag), "0", "{flag} still set");
        }
        assert_eq!(self.var("cursor_flag"), "1", "cursor still hidden");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

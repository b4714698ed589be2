//! The network view: `ttvm tui DIR` on a network recording (`ttvm record --vm … --vm … -o
//! DIR`). The VMs' timelines are stacked, one lane each on one icount scale, with every
//! frame drawn as an arrow from its send to its reception; the keys move the selected VM's
//! cursor and every other VM's cursor follows to the consistent cut through it
//! (`ttvm_replay::network::cut::consistent_cut`, the rule of `ttvm snapshot --at` and of
//! gdb's `monitor goto`). Below: the frames around the selected VM's cursor with both ends,
//! and the cut's positions and frames in flight.
//!
//! All of it comes from the manifest: nothing is replayed to move cursors. Enter opens the
//! selected VM's trace at its cursor in the single-trace view (which replays it); quitting
//! that view comes back here with the VM where it was left.
//!
//! Structure as for the single-trace view, with input apart: [`app`] (state, pure),
//! [`keys`] (keys and mouse onto that state), [`event`] (the loop), [`ui`] with [`lanes`]
//! and [`panes`] (drawing), [`frames`] (one VM's sends and receptions).

pub mod app;
pub mod event;
pub mod frames;
pub mod keys;
pub mod lanes;
pub mod panes;
pub mod ui;

use std::path::{Path, PathBuf};

use crossterm::event::{Event, KeyEvent};
use ratatui::backend::Backend;
use ratatui::{Frame, Terminal};
use ttvm_replay::network::manifest::{NetworkManifestV1, MANIFEST_FILE};

use crate::error::TuiError;
use crate::event::Input;
use crate::{terminal, Session, TuiExit};
use app::{NetAction, NetApp};
use event::NetLoopEnd;

/// Whether `path` is a network recording directory (it holds a manifest).
pub fn is_network_dir(path: &Path) -> bool {
    path.is_dir() && path.join(MANIFEST_FILE).exists()
}

/// A network recording: its manifest and each VM's trace file.
#[derive(Clone, Debug)]
pub struct Network {
    /// The directory.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: NetworkManifestV1,
    /// VM v's trace file.
    pub traces: Vec<PathBuf>,
}

impl Network {
    /// Reads the manifest of `dir` and finds each VM's trace, refusing a damaged manifest
    /// or one that names a file outside the directory or a missing one.
    pub fn open(dir: &Path) -> Result<Self, TuiError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| TuiError::NetworkDir(format!("not a network recording ({MANIFEST_FILE}: {e})")))?;
        let manifest = NetworkManifestV1::decode(&bytes)?;
        let mut traces = Vec::new();
        for (i, vm) in manifest.vms.iter().enumerate() {
            let name = Path::new(&vm.trace);
            if name.components().count() != 1 || name.file_name().is_none() {
                return Err(TuiError::NetworkDir(format!(
                    "{MANIFEST_FILE}: VM {i}'s trace {:?} is not a file name inside the directory",
                    vm.trace
                )));
            }
            let p = dir.join(name);
            if !p.is_file() {
                return Err(TuiError::NetworkDir(format!("VM {i} ({})'s trace {} is missing", vm.name, p.display())));
            }
            traces.push(p);
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, traces })
    }
}

/// A network recording open in the UI.
#[derive(Debug)]
pub struct NetSession {
    /// The recording.
    pub net: Network,
    /// UI state.
    pub app: NetApp,
    title: String,
}

impl NetSession {
    /// Opens the view on a recording: VM 0 selected at icount 0, the others at the cut.
    pub fn new(net: Network) -> Self {
        let app = NetApp::new(&net.manifest);
        let title = net.dir.display().to_string();
        Self { net, app, title }
    }

    /// Handles one input event.
    pub fn handle(&mut self, ev: &Event) -> NetAction {
        match ev {
            Event::Key(k) => self.app.on_key(*k, &self.net.manifest),
            Event::Mouse(mo) => self.app.on_mouse(*mo, &self.net.manifest),
            _ => NetAction::None,
        }
    }

    /// Shorthand for a key press.
    pub fn key(&mut self, key: KeyEvent) -> NetAction {
        self.handle(&Event::Key(key))
    }

    /// Draws the view.
    pub fn render(&mut self, frame: &mut Frame<'_>) {
        let model = ui::NetModel { app: &self.app, m: &self.net.manifest, title: &self.title };
        self.app.layout = ui::render(frame, &model);
    }

    /// Back from the single-trace view of `vm`, which was left at `icount`: select it and
    /// move it there (the others to the cut).
    pub fn returned(&mut self, vm: usize, icount: u64) {
        self.app.selected = vm;
        self.app.status = None;
        self.app.move_selected(&self.net.manifest, icount);
        if self.app.status.is_none() {
            self.app.status = Some(format!("back from VM {vm}'s trace at icount {icount}; the others are at the cut"));
        }
    }
}

/// Runs the network view (and the single-trace views Enter opens from it) until the user
/// quits, a signal arrives, or scripted input ends (tests: `stop_when_idle`).
pub fn run_views<B: Backend>(
    term: &mut Terminal<B>,
    ns: &mut NetSession,
    input: &mut dyn Input,
    signal: &dyn Fn() -> Option<i32>,
    stop_when_idle: bool,
) -> Result<NetLoopEnd, TuiError> {
    loop {
        let (vm, icount) = match event::run_loop(term, ns, input, signal, stop_when_idle)? {
            NetLoopEnd::Open { vm, icount } => (vm, icount),
            end => return Ok(end),
        };
        let Some(path) = ns.net.traces.get(vm).cloned() else { continue };
        let name = ns.net.manifest.vms[vm].name.clone();
        ns.app.status = Some(format!("opening VM {vm} ({name})'s trace at icount {icount}…"));
        event::draw(term, ns)?;
        let mut s = match Session::open(&path, None) {
            Ok(s) => s,
            Err(e) => {
                ns.app.status = Some(format!("cannot open VM {vm}'s trace: {e}"));
                continue;
            }
        };
        s.app.status = Some(format!("VM {vm} ({name}) of the network {} · q goes back to the network view", ns.title));
        s.seek(icount);
        let end = crate::event::run_loop(term, &mut s, input, signal, stop_when_idle)?;
        if let crate::event::LoopEnd::Signal(sig) = end {
            return Ok(NetLoopEnd::Signal(sig));
        }
        ns.returned(vm, s.app.cursor);
        term.clear().map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
        if end == crate::event::LoopEnd::InputEnded {
            return Ok(NetLoopEnd::InputEnded);
        }
    }
}

/// Opens the network recording `dir` and runs the view on the process's terminal until the
/// user quits. The manifest is read before the terminal is touched, so a damaged one fails
/// with a plain error on stderr.
pub fn run_network_tui(dir: &Path) -> Result<TuiExit, TuiError> {
    let mut ns = NetSession::new(Network::open(dir)?);
    terminal::run_full_screen(|term| {
        let end = run_views(term, &mut ns, &mut crate::event::CrosstermInput, &terminal::pending_signal, false)?;
        Ok(match end {
            NetLoopEnd::Signal(s) => Some(s),
            _ => None,
        })
    })
}

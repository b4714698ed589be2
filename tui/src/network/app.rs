//! The network view's state and its transitions (the keys that drive them are in
//! [`super::keys`]). Pure: no terminal, no replay. Positions
//! and frames come from the manifest alone, and every move of the selected VM recomputes
//! the consistent cut through it with [`consistent_cut`] (the rule `ttvm snapshot --at`
//! and gdb's `monitor goto` use), so the other VMs' cursors are always where that cut puts
//! them.

use ratatui::layout::Rect;
use ttvm_replay::network::cut::{consistent_cut, Cut};
use ttvm_replay::network::manifest::NetworkManifestV1;

use super::frames::frame_points;

/// Narrowest window a zoom goes down to, in icounts.
const MIN_SPAN: u64 = 16;

/// The input mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// Keys are commands.
    Normal,
    /// `g`: typing an icount for the selected VM.
    Goto(String),
    /// The `?` overlay; any key closes it.
    Help,
}

/// What a key asks of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetAction {
    /// Nothing beyond redrawing.
    None,
    /// Leave the UI.
    Quit,
    /// Open this VM's trace at this icount in the single-trace view.
    Open {
        /// The VM's position.
        vm: usize,
        /// Where to open it.
        icount: u64,
    },
}

/// Where the lanes were drawn (filled in by the renderer), for mouse clicks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetLayout {
    /// Each VM's lane (one row; columns map to icounts of the window).
    pub lanes: Vec<Rect>,
}

/// Everything the keys change.
#[derive(Clone, Debug)]
pub struct NetApp {
    /// The VM whose cursor the keys move.
    pub selected: usize,
    /// The point the cut goes through: (VM, icount).
    pub anchor: (usize, u64),
    /// The consistent cut through `anchor`: every VM's cursor and the frames in flight.
    pub cut: Cut,
    /// The icounts the lanes show, `[lo, hi]`, the same for every VM (one common scale).
    pub window: (u64, u64),
    /// Input mode.
    pub mode: NetMode,
    /// A one-line message.
    pub status: Option<String>,
    /// Where the lanes were drawn.
    pub layout: NetLayout,
}

/// The longest VM's steps: the common scale's end.
pub fn longest(m: &NetworkManifestV1) -> u64 {
    m.vms.iter().map(|v| v.steps).max().unwrap_or(0).max(1)
}

impl NetApp {
    /// VM 0 at icount 0, the whole run in view.
    pub fn new(m: &NetworkManifestV1) -> Self {
        let cut = consistent_cut(m, 0, 0).unwrap_or(Cut { positions: vec![0; m.vms.len()], in_flight: Vec::new() });
        Self {
            selected: 0,
            anchor: (0, 0),
            cut,
            window: (0, longest(m)),
            mode: NetMode::Normal,
            status: Some("←/→ move the selected VM, the others follow to the consistent cut · ? help".into()),
            layout: NetLayout::default(),
        }
    }

    /// The selected VM's cursor.
    pub fn cursor(&self) -> u64 {
        self.cut.positions.get(self.selected).copied().unwrap_or(0)
    }

    /// Moves the selected VM to `icount` (clamped to its run) and every other VM to the
    /// consistent cut through it.
    pub fn move_selected(&mut self, m: &NetworkManifestV1, icount: u64) {
        let Some(vm) = m.vms.get(self.selected) else { return };
        let t = icount.min(vm.steps);
        match consistent_cut(m, self.selected, t) {
            Ok(cut) => {
                self.cut = cut;
                self.anchor = (self.selected, t);
                self.follow(t);
            }
            // Only a damaged manifest has no cut here; say so and stay.
            Err(e) => self.status = Some(format!("no consistent cut: {e}")),
        }
    }

    /// Scrolls the window (keeping its width) so that `t` is in it.
    fn follow(&mut self, t: u64) {
        let (lo, hi) = self.window;
        if t >= lo && t <= hi {
            return;
        }
        let span = hi - lo;
        let lo = t.saturating_sub(span / 2);
        self.window = (lo, lo + span);
    }

    /// Narrows (`in`) or widens the window by two around the selected cursor.
    pub(super) fn zoom(&mut self, m: &NetworkManifestV1, zoom_in: bool) {
        let full = longest(m);
        let (lo, hi) = self.window;
        let span = if zoom_in { ((hi - lo) / 2).max(MIN_SPAN) } else { (hi - lo).saturating_mul(2) };
        if span >= full {
            self.window = (0, full);
        } else {
            let c = self.cursor();
            let lo = c.saturating_sub(span / 2).min(full - span);
            self.window = (lo, lo + span);
        }
        self.status = Some(format!("showing icounts {} to {}", self.window.0, self.window.1));
    }

    /// `f`: the window around every frame's ends; again: the whole run.
    pub(super) fn fit_frames(&mut self, m: &NetworkManifestV1) {
        let full = (0, longest(m));
        let points = m.frames.iter().flat_map(|f| std::iter::once(f.sent_at).chain(f.to.iter().filter_map(|d| d.at)));
        let (lo, hi) = points.fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p), hi.max(p)));
        if lo > hi {
            self.status = Some("the network sent no frames".into());
            return;
        }
        let margin = ((hi - lo) / 20).max(MIN_SPAN / 2);
        let frames = (lo.saturating_sub(margin), (hi + margin).min(full.1));
        if self.window == frames {
            self.window = full;
            self.status = Some("showing the whole run (f: only where frames are)".into());
        } else {
            self.window = frames;
            self.status = Some(format!("showing the frames: icounts {} to {} (f: the whole run)", frames.0, frames.1));
        }
    }

    pub(super) fn select(&mut self, m: &NetworkManifestV1, vm: usize) -> NetAction {
        if vm >= m.vms.len() {
            self.status = Some(format!("no VM {vm} (the network has {})", m.vms.len()));
            return NetAction::None;
        }
        // Selecting moves nothing: the cut stays; the next move goes through this VM.
        self.selected = vm;
        self.status = Some(format!("VM {vm} ({}) selected at icount {}", m.vms[vm].name, self.cursor()));
        NetAction::None
    }

    pub(super) fn step(&mut self, m: &NetworkManifestV1, delta: i64) -> NetAction {
        let c = self.cursor();
        let steps = m.vms.get(self.selected).map_or(0, |v| v.steps);
        if (delta < 0 && c == 0) || (delta > 0 && c >= steps) {
            self.status =
                Some(format!("at the {} of VM {}'s history", if delta < 0 { "start" } else { "end" }, self.selected));
            return NetAction::None;
        }
        self.status = None;
        self.move_selected(m, c.saturating_add_signed(delta));
        NetAction::None
    }

    /// `[` / `]`: the selected VM's previous / next send or reception.
    pub(super) fn frame_jump(&mut self, m: &NetworkManifestV1, forward: bool) -> NetAction {
        let points = frame_points(m, self.selected);
        let c = self.cursor();
        let target = if forward { points.iter().find(|p| p.at > c) } else { points.iter().rev().find(|p| p.at < c) };
        match target {
            Some(p) => {
                self.status = Some(p.describe(m));
                self.move_selected(m, p.at);
            }
            None => {
                self.status = Some(format!(
                    "no {} frame in VM {}'s history",
                    if forward { "later" } else { "earlier" },
                    self.selected
                ))
            }
        }
        NetAction::None
    }
}

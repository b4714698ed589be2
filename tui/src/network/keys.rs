//! The network view's input: keys and mouse clicks mapped onto [`NetApp`]'s transitions.
//! Pure like the state it drives: no terminal, no replay; a key that asks for more than a
//! redraw (quit, open a VM's trace) comes back as a [`NetAction`] for the loop.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Position;
use ttvm_replay::network::manifest::NetworkManifestV1;

use super::app::{NetAction, NetApp, NetMode};
use crate::app::{BIG_STEP, HUGE_STEP};
use crate::parse::parse_icount;

impl NetApp {
    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent, m: &NetworkManifestV1) -> NetAction {
        if key.kind == KeyEventKind::Release {
            return NetAction::None;
        }
        match self.mode.clone() {
            NetMode::Help => {
                self.mode = NetMode::Normal;
                NetAction::None
            }
            NetMode::Goto(input) => self.prompt_key(input, key, m),
            NetMode::Normal => self.normal_key(key, m),
        }
    }

    fn normal_key(&mut self, key: KeyEvent, m: &NetworkManifestV1) -> NetAction {
        let mods = key.modifiers;
        let step = if mods.contains(KeyModifiers::CONTROL) {
            HUGE_STEP
        } else if mods.contains(KeyModifiers::SHIFT) {
            BIG_STEP
        } else {
            1
        } as i64;
        let n = m.vms.len().max(1);
        match key.code {
            KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => NetAction::Quit,
            KeyCode::Char('q') => NetAction::Quit,
            KeyCode::Left => self.step(m, -step),
            KeyCode::Right => self.step(m, step),
            KeyCode::Char('h') => self.step(m, -1),
            KeyCode::Char('l') => self.step(m, 1),
            KeyCode::Char('H') => self.step(m, -(BIG_STEP as i64)),
            KeyCode::Char('L') => self.step(m, BIG_STEP as i64),
            KeyCode::Char('[') => self.frame_jump(m, false),
            KeyCode::Char(']') => self.frame_jump(m, true),
            KeyCode::Home => {
                self.move_selected(m, 0);
                NetAction::None
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.move_selected(m, u64::MAX);
                NetAction::None
            }
            KeyCode::Char('g') => {
                self.mode = NetMode::Goto(String::new());
                NetAction::None
            }
            KeyCode::Tab | KeyCode::Down | KeyCode::Char('j') => self.select(m, (self.selected + 1) % n),
            KeyCode::BackTab | KeyCode::Up | KeyCode::Char('k') => self.select(m, (self.selected + n - 1) % n),
            KeyCode::Char(d @ '0'..='9') => self.select(m, d as usize - '0' as usize),
            KeyCode::Char('+' | '=') => {
                self.zoom(m, true);
                NetAction::None
            }
            KeyCode::Char('-') => {
                self.zoom(m, false);
                NetAction::None
            }
            KeyCode::Char('f') => {
                self.fit_frames(m);
                NetAction::None
            }
            KeyCode::Enter => NetAction::Open { vm: self.selected, icount: self.cursor() },
            KeyCode::Char('?') => {
                self.mode = NetMode::Help;
                NetAction::None
            }
            KeyCode::Esc => {
                self.status = None;
                NetAction::None
            }
            _ => NetAction::None,
        }
    }

    fn prompt_key(&mut self, mut input: String, key: KeyEvent, m: &NetworkManifestV1) -> NetAction {
        match key.code {
            KeyCode::Esc => self.mode = NetMode::Normal,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => self.mode = NetMode::Normal,
            KeyCode::Enter => {
                self.mode = NetMode::Normal;
                let steps = m.vms.get(self.selected).map_or(0, |v| v.steps);
                match parse_icount(&input, self.cursor(), steps) {
                    Ok(t) => {
                        self.status = None;
                        self.move_selected(m, t);
                    }
                    Err(e) => self.status = Some(e),
                }
            }
            KeyCode::Backspace => {
                input.pop();
                self.mode = NetMode::Goto(input);
            }
            KeyCode::Char(c) => {
                input.push(c);
                self.mode = NetMode::Goto(input);
            }
            _ => {}
        }
        NetAction::None
    }

    /// Handles a mouse event: a click on a lane selects that VM and moves it there.
    pub fn on_mouse(&mut self, ev: MouseEvent, m: &NetworkManifestV1) -> NetAction {
        if self.mode != NetMode::Normal || ev.kind != MouseEventKind::Down(MouseButton::Left) {
            return NetAction::None;
        }
        let at = Position::new(ev.column, ev.row);
        let Some(vm) = self.layout.lanes.iter().position(|r| r.contains(at)) else { return NetAction::None };
        let lane = self.layout.lanes[vm];
        let t = super::ui::icount_at(self.window, lane.width, ev.column - lane.x);
        self.selected = vm;
        self.status = None;
        self.move_selected(m, t);
        NetAction::None
    }
}

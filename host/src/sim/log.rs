//! The sim's apply log: what makes an apply cost time linear in its actions, not in the
//! size of the state. Each action that changed the state is appended (and synced) to
//! `STATE.log` beside the state file before the apply journals it as done; reading the
//! state replays the log after the file. When the log has grown as large as the state
//! file, and at the end of an apply, the state is written whole and the log removed.
//!
//! Crash safety: an entry is one JSON line `{"seq", "now", "action"}`; a line torn by a
//! crash in the middle of its write can only be the last one and is ignored (its action
//! was never journaled as done, so the resumed apply re-checks it); the state file
//! records the last entry it holds (`log_seq`), so a crash between writing the state
//! and removing the log replays nothing twice. Replaying an action is deterministic: a
//! copy's ids derive from its action id, and its creation time is the entry's `now`.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::SimState;
use crate::backend::ActionOutcome;
use crate::model::Timestamp;
use crate::plan::PlannedAction;

/// One applied action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    pub seq: u64,
    pub now: Timestamp,
    pub action: PlannedAction,
}

/// The log beside `state`: `STATE.log`.
pub(super) fn path(state: &Path) -> PathBuf {
    let mut name = state.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".log");
    state.with_file_name(name)
}

/// Applies the entries of `state_path`'s log that `state` does not hold yet, in order;
/// false when there were none.
pub(super) fn replay(state: &mut SimState, state_path: &Path) -> anyhow::Result<bool> {
    let log = path(state_path);
    if !log.exists() {
        return Ok(false);
    }
    let text = crate::files::read_text(&log, crate::files::Input::SimState)?;
    let complete = &text[..text.rfind('\n').map_or(0, |n| n + 1)];
    let mut replayed = false;
    for (n, line) in complete.lines().enumerate() {
        let at = || format!("sim apply log {} line {}", log.display(), n + 1);
        let entry: Entry = serde_json::from_str(line).with_context(at)?;
        if entry.seq <= state.log_seq {
            continue;
        }
        if entry.seq != state.log_seq + 1 {
            anyhow::bail!("{}: entry {} follows entry {}; the log is damaged", at(), entry.seq, state.log_seq);
        }
        super::ops::execute(state, &entry.action, entry.now);
        state.log_seq = entry.seq;
        replayed = true;
    }
    Ok(replayed)
}

/// Removes `state`'s log, durably.
pub(super) fn remove(state: &Path) -> anyhow::Result<()> {
    let log = path(state);
    match std::fs::remove_file(&log) {
        Ok(()) => {
            if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty())
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", log.display())),
    }
}

/// Whether an outcome changed the state (only those are logged).
pub(super) fn changed(outcome: &ActionOutcome) -> bool {
    matches!(outcome, ActionOutcome::Done { .. })
}

/// The apply log of one state file, as one process writes it.
pub(super) struct Writer {
    /// The state file.
    state: PathBuf,
    /// Its log.
    path: PathBuf,
    file: Option<File>,
    /// Bytes appended since the state file was last written whole.
    appended: u64,
    /// The size of the state file when last read or written whole.
    state_bytes: u64,
}

impl Writer {
    /// The log of the state file `state`, which is `state_bytes` long.
    pub fn new(state: &Path, state_bytes: u64) -> Writer {
        Writer { state: state.to_path_buf(), path: path(state), file: None, appended: 0, state_bytes }
    }

    /// Whether the log has grown as large as the state file: writing the state whole now
    /// costs no more than the log already did (linear in the actions).
    pub fn due(&self) -> bool {
        self.appended >= self.state_bytes
    }

    /// Whether there is a log to fold into the state file (this process's, or one a crash
    /// left and the state was read with).
    pub fn pending(&self) -> bool {
        self.appended > 0 || self.path.exists()
    }

    /// Writes `state` whole (its `log_seq` covers every entry) and removes the log.
    pub fn fold(&mut self, state: &SimState) -> anyhow::Result<()> {
        self.state_bytes = state.save(&self.state)?;
        self.file = None;
        self.appended = 0;
        Ok(())
    }

    /// Appends `entries` and syncs them.
    pub fn append(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry)?);
            text.push('\n');
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(self.open()?),
        };
        let what = || format!("cannot write the sim apply log {}", self.path.display());
        file.write_all(text.as_bytes()).with_context(what)?;
        file.sync_data().with_context(what)?;
        self.appended += text.len() as u64;
        Ok(())
    }

    /// Opens the log for appending, cutting a line torn by an earlier crash.
    fn open(&self) -> anyhow::Result<File> {
        let what = || format!("cannot open the sim apply log {}", self.path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .with_context(what)?;
        let bytes = std::fs::read(&self.path).with_context(what)?;
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |n| n + 1) as u64;
        if keep < bytes.len() as u64 {
            file.set_len(keep).with_context(what)?;
        }
        file.seek(SeekFrom::Start(keep)).with_context(what)?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::path;
    use crate::backend::{ActionOutcome, Backend};
    use crate::model::{CopyRequest, Principal, Timestamp};
    use crate::plan::{Op, PlannedAction};
    use crate::sim::{SimBackend, SimState};

    const NOW: Timestamp = Timestamp(1_795_000_000);

    /// A synthetic org of `n` images written to `dir/state.json`, and the actions of a
    /// small apply on it: a tag, an unshare, a copy, and a deregistration with its
    /// snapshot deletion, for each of the first `images` images.
    fn setup(dir: &Path, n: usize, images: usize) -> (std::path::PathBuf, Vec<PlannedAction>) {
        let state = crate::sim::synth::generate(n, NOW, 7);
        let file = dir.join("state.json");
        state.save(&file).unwrap();
        let mut actions = Vec::new();
        for (account, acc) in &state.accounts {
            for (region, reg) in &acc.regions {
                for image in reg.images.iter().take(images) {
                    let snapshot_id = image.block_devices[0].snapshot_id.clone().unwrap();
                    for op in [
                        Op::Tag { tags: [("owner".to_string(), "platform".to_string())].into() },
                        Op::Unshare { principal: Principal::Public },
                        Op::Copy {
                            request: Box::new(CopyRequest {
                                region: "eu-west-1".into(),
                                encrypted: false,
                                kms_key_id: None,
                                copy_tags: true,
                                name: None,
                            }),
                        },
                        Op::Deregister,
                        Op::DeleteSnapshot { snapshot_id },
                    ] {
                        actions.push(PlannedAction {
                            id: PlannedAction::id_for(account, region, &image.id, &op),
                            location: crate::model::Location { account: account.clone(), region: region.clone() }
                                .into(),
                            image_id: image.id.clone(),
                            image_name: image.name.clone(),
                            op,
                            plugins: Default::default(),
                            reasons: Default::default(),
                            monthly_cost_delta: 0,
                            one_time_cost: 0,
                        });
                    }
                }
            }
        }
        (file, actions)
    }

    fn run(backend: &SimBackend, actions: &[PlannedAction]) {
        for action in actions {
            assert!(matches!(backend.execute(action), ActionOutcome::Done { .. }), "{action:?}");
            backend.commit().unwrap();
        }
    }

    #[test]
    fn every_change_is_in_the_state_as_read_after_each_commit_and_the_file_is_whole_after_finish() {
        let dir = tempfile::tempdir().unwrap();
        let (file, actions) = setup(dir.path(), 400, 2);
        let size = std::fs::metadata(&file).unwrap().len();
        let backend = SimBackend::open(&file, NOW).unwrap();
        for action in &actions {
            backend.execute(action);
            backend.commit().unwrap();
            // What another process reads now is what this one holds: nothing waits for
            // the end of the apply to be durable.
            assert_eq!(SimState::load(&file).unwrap(), backend.state());
        }
        // The file was not rewritten per action: the log is far smaller than the state.
        assert!(std::fs::metadata(path(&file)).unwrap().len() < size, "the log stays under the state's size here");
        backend.finish().unwrap();
        assert!(!path(&file).exists(), "finish folds the log into the file");
        let text: SimState = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(text, backend.state());
    }

    #[test]
    fn the_state_is_written_whole_once_the_log_outgrows_it() {
        let dir = tempfile::tempdir().unwrap();
        let (file, actions) = setup(dir.path(), 12, 2);
        let backend = SimBackend::open(&file, NOW).unwrap();
        run(&backend, &actions);
        let log = std::fs::metadata(path(&file)).map(|m| m.len()).unwrap_or(0);
        assert!(log < std::fs::metadata(&file).unwrap().len(), "the log never outgrows the file: {log} bytes");
        let raw: SimState = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert!(raw.log_seq > 0 && raw.log_seq < backend.state().log_seq, "written whole mid-apply: {}", raw.log_seq);
        assert_eq!(SimState::load(&file).unwrap(), backend.state());
    }

    #[test]
    fn a_line_torn_by_a_crash_is_ignored_and_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let (file, actions) = setup(dir.path(), 400, 1);
        let backend = SimBackend::open(&file, NOW).unwrap();
        run(&backend, &actions[..2]);
        let after_two = backend.state();
        // A crash in the middle of the third append.
        let mut log = std::fs::read(path(&file)).unwrap();
        log.extend_from_slice(b"{\"seq\":3,\"now\":");
        std::fs::write(path(&file), &log).unwrap();
        assert_eq!(SimState::load(&file).unwrap(), after_two);
        let resumed = SimBackend::open(&file, NOW).unwrap();
        run(&resumed, &actions[2..]);
        assert_eq!(SimState::load(&file).unwrap(), resumed.state());
        let uninterrupted = SimBackend::in_memory(crate::sim::synth::generate(400, NOW, 7), NOW);
        run(&uninterrupted, &actions);
        assert_eq!(resumed.state().accounts, uninterrupted.state().accounts);
    }

    #[test]
    fn a_crash_between_writing_the_state_and_removing_the_log_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (file, actions) = setup(dir.path(), 400, 1);
        let backend = SimBackend::open(&file, NOW).unwrap();
        run(&backend, &actions);
        let log = std::fs::read(path(&file)).unwrap();
        backend.finish().unwrap();
        std::fs::write(path(&file), &log).unwrap();
        assert_eq!(SimState::load(&file).unwrap(), backend.state());
    }

    #[test]
    fn a_damaged_log_is_refused_naming_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (file, actions) = setup(dir.path(), 400, 1);
        let backend = SimBackend::open(&file, NOW).unwrap();
        run(&backend, &actions[..3]);
        let text = std::fs::read_to_string(path(&file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // A lost line: entry 3 follows entry 1.
        std::fs::write(path(&file), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let err = format!("{:#}", SimState::load(&file).unwrap_err());
        assert!(err.contains("state.json.log line 2") && err.contains("damaged"), "{err}");
        // A garbled line that is not the last.
        std::fs::write(path(&file), format!("{}\n{{oops}}\n{}\n", lines[0], lines[2])).unwrap();
        let err = format!("{:#}", SimState::load(&file).unwrap_err());
        assert!(err.contains("state.json.log line 2"), "{err}");
    }
}

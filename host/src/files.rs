//! Files the host reads from outside, bounded: a regular file (not a device, pipe or
//! directory) no larger than the limit for its kind, else an `InputError` naming it.
//! Files the host writes whole (sim state, plans, the service's records): atomically,
//! through a temporary file in the same directory that is synced, renamed over the
//! target, and followed by a sync of the directory, so a crash leaves the old file or
//! the new one, never a torn one and never a stray temporary.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;

use crate::error::InputError;

const MIB: u64 = 1 << 20;

/// The kinds of file the host reads, each with the largest size it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A policy file (a few KB in practice).
    Policy,
    /// An event (EventBridge caps events at 256 KB, SQS messages at 1 MiB).
    Event,
    /// A plugin's wasm component, or a test case's files.
    Plugin,
    /// A saved plan or a journal (~1 KB per action).
    Plan,
    /// A sim state file (~1 KB per image).
    SimState,
    /// A run record's metadata.json (a few KB).
    RunRecord,
}

impl Input {
    /// The largest file of this kind, in bytes.
    pub const fn limit(self) -> u64 {
        match self {
            Input::Policy => MIB,
            Input::Event => MIB,
            Input::Plugin => 64 * MIB,
            Input::Plan => 1024 * MIB,
            Input::SimState => 2048 * MIB,
            Input::RunRecord => MIB,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Input::Policy => "policy file",
            Input::Event => "event",
            Input::Plugin => "plugin",
            Input::Plan => "plan",
            Input::SimState => "sim state",
            Input::RunRecord => "run record",
        }
    }
}

/// The bytes of `path`, read as `kind`: refused with an `InputError` naming the file when
/// it cannot be opened, is not a regular file, or is larger than `kind.limit()`.
pub fn read_input(path: &Path, kind: Input) -> anyhow::Result<Vec<u8>> {
    let (file, len) = open_input(path, kind)?;
    // Sized from the file's length: grown by doubling, a 117 MB state file was read into
    // a 128 MiB buffer through a 64 MiB one.
    read_bounded(file, kind, len).map_err(|e| refuse(path, kind, e).into())
}

/// `path` opened as `kind` to be read as a stream, and its length: the checks of
/// `read_input`; a file that grows past the limit while it is read ends one byte after it
/// (so a parser fails on it rather than reading on).
pub fn open_input(path: &Path, kind: Input) -> anyhow::Result<(impl Read + use<>, u64)> {
    let file = std::fs::File::open(path).map_err(|e| refuse(path, kind, format!("cannot read it: {e}")))?;
    let meta = file.metadata().map_err(|e| refuse(path, kind, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(path, kind, "not a regular file".into()).into());
    }
    if meta.len() > kind.limit() {
        return Err(refuse(path, kind, format!("larger than the limit of {} MiB", kind.limit() / MIB)).into());
    }
    Ok((file.take(kind.limit() + 1), meta.len()))
}

fn refuse(path: &Path, kind: Input, why: String) -> InputError {
    InputError(format!("{} {}: {why}", kind.name(), path.display()))
}

/// At most `kind.limit()` bytes from `reader`, with room for the `expected` bytes made at
/// once; an error text when there are more or the read fails.
fn read_bounded(reader: impl Read, kind: Input, expected: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected.min(kind.limit())).unwrap_or(0));
    reader.take(kind.limit() + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > kind.limit() {
        return Err(format!("larger than the limit of {} MiB", kind.limit() / MIB));
    }
    Ok(bytes)
}

/// `read_input` for a text file: UTF-8 or refused.
pub fn read_text(path: &Path, kind: Input) -> anyhow::Result<String> {
    String::from_utf8(read_input(path, kind)?)
        .map_err(|e| InputError(format!("{} {}: not UTF-8 text ({e})", kind.name(), path.display())).into())
}

/// Text from a reader (stdin) as `kind`, at most `kind.limit()` bytes.
pub fn read_text_from(reader: impl Read, kind: Input, what: &str) -> anyhow::Result<String> {
    let bytes = read_bounded(reader, kind, 0).map_err(|e| InputError(format!("{what}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| InputError(format!("{what}: not UTF-8 text ({e})")).into())
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// Replaces `path` atomically and durably with what `write` writes, streamed: a large
/// plan's text is never held whole.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut file)?;
        file.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Input, read_input, read_text};

    #[test]
    fn inputs_are_regular_files_within_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "x = 1").unwrap();
        assert_eq!(read_text(&path, Input::Policy).unwrap(), "x = 1");
        let refused = |path: &std::path::Path, kind| {
            let err = read_input(path, kind).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{err}");
            err.to_string()
        };
        assert!(refused(Path::new("/dev/zero"), Input::Policy).contains("/dev/zero: not a regular file"));
        assert!(refused(dir.path(), Input::Plan).contains("not a regular file"));
        assert!(refused(&dir.path().join("missing"), Input::Event).contains("cannot read it"));
        let big = dir.path().join("big.json");
        std::fs::File::create(&big).unwrap().set_len(Input::Event.limit() + 1).unwrap();
        assert!(refused(&big, Input::Event).contains("big.json: larger than the limit of 1 MiB"));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_text(&path, Input::Policy).unwrap_err().to_string().contains("not UTF-8"));
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        super::write_atomically(&path, b"one").unwrap();
        super::write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/x.json");
        assert!(super::write_atomically(&missing, b"x").is_err());
    }
}

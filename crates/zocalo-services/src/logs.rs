//! `logs/NAME.log`: each line a service writes, prefixed with the instant (UTC, milliseconds)
//! and the stream (`out`, `err`); rotated by size into `NAME.log.1` … `NAME.log.K`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};

use crate::ServicesError;

/// The longest line kept whole; longer ones are split, so one runaway write cannot grow memory.
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
    /// The supervisor itself, only for what the service could not say (it never started).
    Supervisor,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
            Stream::Supervisor => "zocalo",
        }
    }
}

/// One service's log file, shared by its stdout and stderr readers across restarts.
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Mutex<Option<(File, u64)>>,
}

impl LogFile {
    /// `max_bytes`: rotate when the file would grow past it; `keep`: rotated files kept.
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> Self {
        Self {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (a trailing newline in `text` is dropped; invalid UTF-8 is replaced).
    pub fn write_line(&self, stream: Stream, text: &[u8]) {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let line = format!(
            "{} {} {}\n",
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            stream.tag(),
            String::from_utf8_lossy(text)
        );
        if let Err(e) = self.append(line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), "cannot write service log: {e}");
        }
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open_append(&self.path)?);
        }
        if let Some((_, size)) = guard.as_ref() {
            if *size > 0 && *size + line.len() as u64 > self.max_bytes {
                *guard = None;
                self.rotate()?;
                *guard = Some(open_append(&self.path)?);
            }
        }
        if let Some((file, size)) = guard.as_mut() {
            file.write_all(line)?;
            *size += line.len() as u64;
        }
        Ok(())
    }

    /// NAME.log.(K-1) -> NAME.log.K, …, NAME.log -> NAME.log.1; the oldest beyond K goes.
    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(rotated(&self.path, self.keep));
        for i in (1..self.keep).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
    }
}

/// `NAME.log.N`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut open = OpenOptions::new();
    open.create(true).append(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open.open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// The last `lines` lines of the log and, when the current file has fewer, of the rotated
/// ones before it; oldest first. A service that never wrote has no lines.
pub fn tail(path: &Path, lines: usize) -> Result<Vec<String>, ServicesError> {
    let mut out: Vec<String> = Vec::new();
    let mut files = vec![path.to_path_buf()];
    files.extend((1..=64).map(|i| rotated(path, i)));
    for file in files {
        if out.len() >= lines {
            break;
        }
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(ServicesError::io(format!("reading {}", file.display()), e)),
        };
        let mut chunk: Vec<String> = text.lines().map(str::to_owned).collect();
        let need = lines - out.len();
        if chunk.len() > need {
            chunk.drain(..chunk.len() - need);
        }
        chunk.append(&mut out);
        out = chunk;
    }
    Ok(out)
}

/// Reads what was appended to `path` since `offset`, following a rotation (the file got
/// shorter, or was replaced): returns the new bytes and the offset to continue from.
pub fn read_from(path: &Path, offset: u64) -> Result<(Vec<u8>, u64), ServicesError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(ServicesError::io(format!("reading {}", path.display()), e)),
    };
    let io = |e| ServicesError::io(format!("reading {}", path.display()), e);
    let len = file.metadata().map_err(io)?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(io)?;
    // Only whole lines; a partial last line is read again next time.
    let keep = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(keep);
    Ok((buf.clone(), start + keep as u64))
}

/// Hands `out` every whole line appended to `path` (following rotations) until `stop`
/// completes, looking every 200 ms.
pub async fn follow(
    path: &Path,
    stop: impl std::future::Future<Output = ()>,
    mut out: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), ServicesError> {
    let mut offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        let (bytes, next) = read_from(path, offset)?;
        offset = next;
        if !bytes.is_empty() {
            out(&bytes).map_err(|e| ServicesError::io("writing the log".to_owned(), e))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/web.log");
        let log = LogFile::new(path.clone(), 200, 2);
        for i in 0..20 {
            log.write_line(Stream::Out, format!("line {i:02}\n").as_bytes());
        }
        log.write_line(Stream::Err, b"oops");
        let current = std::fs::read_to_string(&path).unwrap();
        for file in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let len = std::fs::metadata(&file).unwrap().len();
            assert!(len <= 200, "{} has {len} bytes", file.display());
        }
        assert!(!rotated(&path, 3).exists(), "only 2 rotated files are kept");
        let last = current.lines().last().unwrap();
        let (ts, rest) = last.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert_eq!(rest, "err oops");
        // tail reads across the rotation, oldest first, and stops at what exists.
        let lines = tail(&path, 6).unwrap();
        assert_eq!(lines.len(), 6);
        let texts: Vec<&str> = lines.iter().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            texts,
            [
                "out line 15",
                "out line 16",
                "out line 17",
                "out line 18",
                "out line 19",
                "err oops"
            ]
        );
        assert!(
            tail(&path, 1000).unwrap().len() < 21,
            "the oldest lines were rotated away"
        );
        assert!(tail(&dir.path().join("none.log"), 5).unwrap().is_empty());
    }

    #[test]
    fn follow_reads_whole_lines_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntw").unwrap();
        let (got, off) = read_from(&path, 0).unwrap();
        assert_eq!(got, b"one\n");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let (got, off) = read_from(&path, off).unwrap();
        assert_eq!(got, b"two\n");
        std::fs::write(&path, "x\n").unwrap(); // rotated: shorter than the offset
        let (got, _) = read_from(&path, off).unwrap();
        assert_eq!(got, b"x\n");
    }
}

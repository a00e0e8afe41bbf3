//! Container logs: Docker's `json-file` format, rotated by size.
//!
//! `<state>/exec/<id>/container.log` holds one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`; rotated files are
//! `container.log.1` (newest) to `container.log.<max_files-1>` (oldest). Rotation happens when
//! the current file reaches `max_size`, so disk use stays within about
//! `max_files * (max_size + one line)`. Output is split into lines; a line longer than 16 KiB is
//! written in 16 KiB pieces without a trailing newline (as Docker does), so that one endless line
//! cannot hold unbounded memory in the monitor. Invalid UTF-8 is replaced (U+FFFD).
//!
//! A failed write (a full disk, an exhausted quota, an I/O error) never stops the monitor: the
//! record is dropped and counted, a partly written line is cut off again (the file is truncated
//! back to its last whole record), and the next write tries again. The first record written
//! after a failure is preceded by one `stderr` record of the agent's own,
//! `agent: N log lines dropped (<error>)`, so a reader sees where and how many records are
//! missing. The container never waits for the disk: its output pipes are always drained.
//!
//! With `logging: {driver: journald}` ([`LogConfig::journald`]) each record is also sent to the
//! systemd journal over its native protocol (one datagram per line to
//! `/run/systemd/journal/socket`, or the socket the agent config names): `MESSAGE` (the line
//! without its newline), `PRIORITY` 6 for stdout and 3 for stderr, `CONTAINER_NAME`,
//! `CONTAINER_ID`, `SYSLOG_IDENTIFIER` (the name), as Docker's journald driver. The file is
//! written as well (Docker's dual logging), so `agent logs` keeps working. The socket is
//! non-blocking: a line the journal does not take at once (not running, its queue full) is
//! dropped from the journal only, counted, and reported once per streak on the monitor's
//! stderr (`monitor.log`); the container never waits for the journal.
//!
//! [`LogWriter`] is what the monitor uses; [`read`] and [`follow`] are what `agent logs` uses.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Error;
use super::spec::{Journald, LogConfig};

/// Longest line piece written as one record.
pub const MAX_LINE: usize = 16 * 1024;

/// The file name of the current log.
pub const LOG_FILE: &str = "container.log";

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Appends records to the current log file and rotates it.
pub struct LogWriter {
    dir: PathBuf,
    cfg: LogConfig,
    /// The current log file; `None` when opening it failed (tried again at the next record).
    file: Option<File>,
    /// Bytes of whole records in the current file.
    size: u64,
    /// Incomplete line per stream (stdout, stderr).
    pending: [Vec<u8>; 2],
    /// Records dropped since the last successful write, and the last error.
    dropped: u64,
    last_error: Option<std::io::Error>,
    /// The journal, with `logging: {driver: journald}`.
    journal: Option<Journal>,
}

/// The native-protocol sender of one container's lines.
struct Journal {
    socket: Option<std::os::unix::net::UnixDatagram>,
    target: PathBuf,
    /// The fields every datagram carries (`CONTAINER_NAME=...\n...`).
    fields: Vec<u8>,
    /// Lines the journal did not take since the last one it took.
    dropped: u64,
}

impl Journal {
    fn new(j: &Journald) -> Journal {
        let mut fields = Vec::new();
        for (k, v) in [
            ("CONTAINER_NAME", j.container_name.as_str()),
            ("CONTAINER_ID", j.container_id.as_str()),
            ("SYSLOG_IDENTIFIER", j.container_name.as_str()),
        ] {
            journal_field(&mut fields, k, v.as_bytes());
        }
        let socket = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        Journal {
            socket,
            target: j.socket.clone(),
            fields,
            dropped: 0,
        }
    }

    fn send(&mut self, stream: Stream, text: &[u8]) {
        let mut msg = self.fields.clone();
        let priority: &[u8] = match stream {
            Stream::Stdout => b"6",
            Stream::Stderr => b"3",
        };
        journal_field(&mut msg, "PRIORITY", priority);
        journal_field(
            &mut msg,
            "MESSAGE",
            text.strip_suffix(b"\n").unwrap_or(text),
        );
        let sent = match &self.socket {
            Some(s) => s.send_to(&msg, &self.target),
            None => Err(std::io::Error::other("no socket")),
        };
        match sent {
            Ok(_) => self.dropped = 0,
            Err(e) => {
                if self.dropped == 0 {
                    let _ = writeln!(
                        std::io::stderr(),
                        "WARN monitor: the journal at {} does not take the container's lines \
                         ({e}); they are dropped from the journal (the log file keeps them)",
                        self.target.display()
                    );
                }
                self.dropped += 1;
            }
        }
    }
}

/// Appends one field in the journal's native format: `KEY=VALUE\n`, or, for a value with a
/// newline, `KEY\n` + its length (64-bit little endian) + the value + `\n`.
pub fn journal_field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The text of the record that reports `n` dropped records.
pub fn dropped_marker(n: u64, error: &str) -> String {
    format!("agent: {n} log lines dropped ({error})\n")
}

impl LogWriter {
    /// Opens (appends to) `<dir>/container.log`. Never fails: if the file cannot be opened now
    /// (a full disk), records are dropped and counted until it can.
    pub fn open(dir: &Path, cfg: LogConfig) -> LogWriter {
        let mut w = LogWriter {
            dir: dir.to_path_buf(),
            journal: cfg.journald.as_ref().map(Journal::new),
            cfg: LogConfig {
                max_size: cfg.max_size.max(1),
                max_files: cfg.max_files.max(1),
                journald: None,
            },
            file: None,
            size: 0,
            pending: [Vec::new(), Vec::new()],
            dropped: 0,
            last_error: None,
        };
        if let Err(e) = w.reopen() {
            w.last_error = Some(e);
        }
        w
    }

    /// Records dropped since the last successful write.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// Feeds raw output of `stream`; complete lines (and 16 KiB pieces) are written.
    pub fn feed(&mut self, stream: Stream, data: &[u8]) {
        let idx = stream as usize;
        let mut rest = data;
        while !rest.is_empty() {
            let room = MAX_LINE - self.pending[idx].len();
            let take = rest.len().min(room);
            let chunk = &rest[..take];
            if let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
                self.pending[idx].extend_from_slice(&chunk[..=nl]);
                rest = &rest[nl + 1..];
                self.flush_stream(stream);
            } else {
                self.pending[idx].extend_from_slice(chunk);
                rest = &rest[take..];
                if self.pending[idx].len() >= MAX_LINE {
                    self.flush_stream(stream);
                }
            }
        }
    }

    /// Writes what is pending of `stream` as one record (used at end of output too).
    pub fn flush_stream(&mut self, stream: Stream) {
        let idx = stream as usize;
        if self.pending[idx].is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.pending[idx]);
        self.write_record(stream, &buf, SystemTime::now());
        // Keep the allocation small: a long line once must not pin 16 KiB forever.
        self.pending[idx] = Vec::new();
    }

    /// At the end of the container's output: writes the dropped-records marker if records were
    /// dropped and none could be written since. Returns how many records stay unreported.
    pub fn finish(&mut self) -> u64 {
        if self.dropped > 0 {
            let marker = self.marker(SystemTime::now());
            if self.append(&marker).is_ok() {
                self.dropped = 0;
            }
        }
        self.dropped
    }

    fn encode(text: &[u8], stream: Stream, time: SystemTime) -> Vec<u8> {
        let rec = Record {
            log: String::from_utf8_lossy(text).into_owned(),
            stream,
            time: super::time::format(time),
        };
        // Serialising a struct of strings cannot fail; an empty line would be skipped by readers.
        let mut line = serde_json::to_vec(&rec).unwrap_or_default();
        line.push(b'\n');
        line
    }

    fn marker(&self, time: SystemTime) -> Vec<u8> {
        let error = self
            .last_error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "write failed".into());
        Self::encode(
            dropped_marker(self.dropped, &error).as_bytes(),
            Stream::Stderr,
            time,
        )
    }

    fn write_record(&mut self, stream: Stream, text: &[u8], time: SystemTime) {
        if let Some(j) = &mut self.journal {
            j.send(stream, text);
        }
        let line = Self::encode(text, stream, time);
        // The marker and the record go in one write, all or nothing: on a disk with a few bytes
        // free, markers alone must not fill the log.
        let buf = if self.dropped > 0 {
            let mut buf = self.marker(time);
            buf.extend_from_slice(&line);
            buf
        } else {
            line
        };
        match self.append(&buf) {
            Ok(()) => self.dropped = 0,
            Err(e) => {
                self.dropped += 1;
                self.last_error = Some(e);
            }
        }
    }

    /// Appends one whole record (rotating first if it would not fit). On failure the file is
    /// cut back to its last whole record.
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + line.len() as u64 > self.cfg.max_size {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("log file not open"));
        };
        if let Err(e) = file.write_all(line) {
            // A torn line would also spoil the next record: cut it off.
            let _ = file.set_len(self.size);
            return Err(e);
        }
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let n = self.cfg.max_files;
        if n <= 1 {
            if let Some(f) = &self.file {
                f.set_len(0)?;
            }
            self.size = 0;
            return Ok(());
        }
        let cur = self.dir.join(LOG_FILE);
        let name = |i: u32| self.dir.join(format!("{LOG_FILE}.{i}"));
        let _ = fs::remove_file(name(n - 1));
        for i in (1..n - 1).rev() {
            let from = name(i);
            if from.exists() {
                fs::rename(&from, name(i + 1))?;
            }
        }
        fs::rename(&cur, name(1))?;
        // From here the current name is free: a failed open is retried at the next record.
        self.file = None;
        self.size = 0;
        self.reopen()
    }
}

/// The log files of `dir`, oldest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix(&format!("{LOG_FILE}."))?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let cur = dir.join(LOG_FILE);
    if cur.exists() {
        out.push(cur);
    }
    out
}

/// Which records to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only the last `tail` records.
    pub tail: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<SystemTime>,
    /// Only records at or before this time.
    pub until: Option<SystemTime>,
}

fn keep(rec: &Record, f: &Filter) -> bool {
    if f.since.is_none() && f.until.is_none() {
        return true;
    }
    super::time::parse(&rec.time).is_some_and(|t| {
        f.since.is_none_or(|since| t >= since) && f.until.is_none_or(|until| t <= until)
    })
}

/// Reads the records of `dir` (all files, oldest first) that pass `filter`.
pub fn read(dir: &Path, filter: &Filter) -> Result<Vec<Record>, Error> {
    let mut out = std::collections::VecDeque::new();
    for path in files(dir) {
        let f = match File::open(&path) {
            Ok(f) => f,
            // rotated away between listing and opening: its records moved to an older name
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open log", &path)(e)),
        };
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(Error::io("read log", &path))?;
            let Ok(rec) = serde_json::from_slice::<Record>(&line) else {
                continue; // a torn last line after a crash
            };
            if keep(&rec, filter) {
                out.push_back(rec);
                if let Some(t) = filter.tail
                    && out.len() > t
                {
                    out.pop_front();
                }
            }
        }
    }
    Ok(out.into())
}

/// Follows `dir`'s current log from its end (after `read` printed the past): calls `emit` for
/// each new record, across rotations, until `done()` says the container has ended and the file
/// has no more data. It polls every 100 ms; after a rotation it drains the old file through its
/// open descriptor before switching, so records are lost only if the log rotates twice between
/// two polls (more than `max_size` bytes in 100 ms).
pub fn follow(
    dir: &Path,
    filter: &Filter,
    mut emit: impl FnMut(&Record) -> bool,
    done: impl Fn() -> bool,
) -> Result<(), Error> {
    let path = dir.join(LOG_FILE);
    let open = |p: &Path| -> Option<(File, u64)> {
        let f = File::open(p).ok()?;
        let ino = f.metadata().ok()?.ino();
        Some((f, ino))
    };
    let mut cur = open(&path);
    if let Some((f, _)) = cur.as_mut() {
        f.seek(SeekFrom::End(0))
            .map_err(Error::io("seek log", &path))?;
    }
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut progressed = false;
        if let Some((f, _)) = cur.as_mut() {
            loop {
                let n = f.read(&mut buf).map_err(Error::io("read log", &path))?;
                if n == 0 {
                    break;
                }
                progressed = true;
                partial.extend_from_slice(&buf[..n]);
                while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=nl).collect();
                    if let Ok(rec) = serde_json::from_slice::<Record>(&line[..line.len() - 1])
                        && keep(&rec, filter)
                        && !emit(&rec)
                    {
                        return Ok(());
                    }
                }
            }
        }
        // Rotated (a new file under the name) or created: switch after draining the old one.
        let now_ino = fs::metadata(&path).ok().map(|m| m.ino());
        if now_ino.is_some() && now_ino != cur.as_ref().map(|(_, i)| *i) {
            cur = open(&path);
            partial.clear();
            continue;
        }
        if !progressed {
            if done() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn lines_are_split_and_tagged() {
        let d = dir();
        let mut w = LogWriter::open(d.path(), LogConfig::default());
        w.feed(Stream::Stdout, b"hello\nwor");
        w.feed(Stream::Stderr, b"oops\n");
        w.feed(Stream::Stdout, b"ld\n\xff\n");
        w.feed(Stream::Stdout, b"no newline");
        w.flush_stream(Stream::Stdout);
        let recs = read(d.path(), &Filter::default()).unwrap_or_else(|e| panic!("{e}"));
        let logs: Vec<(&str, Stream)> = recs.iter().map(|r| (r.log.as_str(), r.stream)).collect();
        assert_eq!(
            logs,
            vec![
                ("hello\n", Stream::Stdout),
                ("oops\n", Stream::Stderr),
                ("world\n", Stream::Stdout),
                ("\u{fffd}\n", Stream::Stdout),
                ("no newline", Stream::Stdout),
            ]
        );
        let raw = fs::read_to_string(d.path().join(LOG_FILE)).unwrap_or_default();
        assert!(
            raw.starts_with("{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\""),
            "{raw}"
        );
        let tail = read(
            d.path(),
            &Filter {
                tail: Some(2),
                ..Filter::default()
            },
        )
        .unwrap_or_default();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1].log, "no newline");
        let future = Filter {
            since: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Filter::default()
        };
        assert!(read(d.path(), &future).unwrap_or_default().is_empty());
        let past = Filter {
            until: Some(SystemTime::now() - Duration::from_secs(60)),
            ..Filter::default()
        };
        assert!(read(d.path(), &past).unwrap_or_default().is_empty());
        let window = Filter {
            tail: Some(1),
            since: Some(SystemTime::now() - Duration::from_secs(60)),
            until: Some(SystemTime::now() + Duration::from_secs(60)),
        };
        let last = read(d.path(), &window).unwrap_or_default();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].log, "no newline");
    }

    #[test]
    fn failed_writes_are_dropped_counted_and_reported_when_writing_resumes() {
        let d = dir();
        let mut w = LogWriter::open(d.path(), LogConfig::default());
        w.feed(Stream::Stdout, b"before\n");
        // A full disk: /dev/full fails every write with ENOSPC.
        w.file = Some(
            OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap_or_else(|e| panic!("/dev/full: {e}")),
        );
        for i in 0..5 {
            w.feed(Stream::Stdout, format!("lost {i}\n").as_bytes());
        }
        assert_eq!(w.dropped(), 5);
        // Space is back (the file is opened afresh).
        w.file = None;
        w.feed(Stream::Stderr, b"after\n");
        assert_eq!(w.dropped(), 0);
        assert_eq!(w.finish(), 0);
        let recs = read(d.path(), &Filter::default()).unwrap_or_else(|e| panic!("{e}"));
        let logs: Vec<(&str, Stream)> = recs.iter().map(|r| (r.log.as_str(), r.stream)).collect();
        assert_eq!(
            logs,
            vec![
                ("before\n", Stream::Stdout),
                (
                    "agent: 5 log lines dropped (No space left on device (os error 28))\n",
                    Stream::Stderr
                ),
                ("after\n", Stream::Stderr),
            ]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let d = dir();
        let mut w = LogWriter::open(d.path(), LogConfig::default());
        w.feed(Stream::Stdout, &vec![b'a'; MAX_LINE * 2 + 10]);
        w.feed(Stream::Stdout, b"\n");
        let recs = read(d.path(), &Filter::default()).unwrap_or_default();
        let lens: Vec<usize> = recs.iter().map(|r| r.log.len()).collect();
        assert_eq!(lens, vec![MAX_LINE, MAX_LINE, 11]);
    }

    #[test]
    fn journald_lines_carry_the_containers_fields() {
        let d = dir();
        let sock_path = d.path().join("journal.sock");
        let sock =
            std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("{e}"));
        let cfg = LogConfig {
            journald: Some(Journald {
                socket: sock_path,
                container_name: "web".into(),
                container_id: "web-0123456789ab".into(),
            }),
            ..LogConfig::default()
        };
        let mut w = LogWriter::open(d.path(), cfg);
        w.feed(Stream::Stderr, b"oops\n");
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            "CONTAINER_NAME=web\nCONTAINER_ID=web-0123456789ab\nSYSLOG_IDENTIFIER=web\n\
             PRIORITY=3\nMESSAGE=oops\n"
        );
        // the file has it too
        let recs = read(d.path(), &Filter::default()).unwrap_or_default();
        assert_eq!(recs.len(), 1);
        let mut v = Vec::new();
        journal_field(&mut v, "MESSAGE", b"a\nb");
        assert_eq!(v, b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n");
    }

    #[test]
    fn rotation_bounds_disk_use_and_keeps_order() {
        let d = dir();
        let cfg = LogConfig {
            max_size: 4096,
            max_files: 3,
            journald: None,
        };
        let mut w = LogWriter::open(d.path(), cfg);
        for i in 0..2000 {
            w.feed(Stream::Stdout, format!("line {i:05}\n").as_bytes());
        }
        let fs_ = files(d.path());
        assert_eq!(fs_.len(), 3, "{fs_:?}");
        let total: u64 = fs_
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= 3 * 4096, "{total}");
        let recs = read(d.path(), &Filter::default()).unwrap_or_default();
        assert_eq!(recs.last().map(|r| r.log.as_str()), Some("line 01999\n"));
        let nums: Vec<u32> = recs
            .iter()
            .filter_map(|r| r.log[5..10].parse().ok())
            .collect();
        assert!(
            nums.windows(2).all(|w| w[1] == w[0] + 1),
            "records in order across files"
        );
        // one file: truncated in place
        let d = dir();
        let mut w = LogWriter::open(
            d.path(),
            LogConfig {
                max_size: 1000,
                max_files: 1,
                journald: None,
            },
        );
        for _ in 0..100 {
            w.feed(Stream::Stdout, b"0123456789\n");
        }
        assert_eq!(files(d.path()).len(), 1);
        assert!(
            fs::metadata(d.path().join(LOG_FILE))
                .map(|m| m.len())
                .unwrap_or(0)
                <= 1000
        );
    }

    #[test]
    fn follow_sees_new_records_across_rotation() {
        let d = dir();
        let cfg = LogConfig {
            max_size: 2048,
            max_files: 2,
            journald: None,
        };
        let mut w = LogWriter::open(d.path(), cfg);
        w.feed(Stream::Stdout, b"old\n");
        let path = d.path().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let r = follow(
                &path,
                &Filter::default(),
                |rec| {
                    seen.push(rec.log.clone());
                    true
                },
                || stop2.load(std::sync::atomic::Ordering::SeqCst),
            );
            (r.is_ok(), seen)
        });
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..100 {
            w.feed(Stream::Stdout, format!("new {i:03}\n").as_bytes());
            if i % 5 == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (ok, seen) = t.join().unwrap_or_else(|_| panic!("follower panicked"));
        assert!(ok);
        assert!(
            !seen.contains(&"old\n".to_string()),
            "follow starts at the end"
        );
        assert_eq!(seen.first().map(String::as_str), Some("new 000\n"));
        assert_eq!(seen.last().map(String::as_str), Some("new 099\n"));
    }
}

//! Sightline's durable exporter queue: a directory of append-only segment files.
//!
//! What it owns: the on-disk format, recovery, the ack checkpoint and the byte bound. What it
//! must never do: run on an async worker thread. Every method that touches a file
//! ([`open`], [`Writer::append`], [`Writer::maintain`], [`Reader::next`]) blocks, so callers
//! run them on dedicated threads; [`Queue`]'s own methods (`ack`, `try_reserve`,
//! `drop_oldest`, `close`, `stats`) only take a short lock and never do I/O.
//!
//! Format (little endian, see `docs/adr/0010-disk-queue.md`):
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: a segment, named by the sequence number of its first record;
//!   a 16-byte header (`SLDQSEG1`, first sequence number) then records;
//! - a record: a 32-byte header (CRC32C of the rest of the header and the data, data length,
//!   sequence number, item count, kind, format version, 6 reserved bytes) then the data;
//! - `ack`: the checkpoint, the first sequence number not yet acknowledged (`SLDQACK1`, u64,
//!   CRC32C), replaced by write + rename;
//! - `lock`: held with an exclusive file lock while the queue is open (one process per
//!   directory).
//!
//! Records are removed only when acknowledged: [`Queue::ack`] may come in any order; the
//! checkpoint is the contiguous acknowledged prefix, and a segment whose records are all below
//! it is deleted by [`Writer::maintain`]. After a crash, what was sent but not yet covered by
//! the checkpoint is read again (at-least-once delivery; duplicates are possible).
//!
//! ```no_run
//! use sightline_diskqueue::{open, Entry, Fsync, Options};
//! let opts = Options { max_size_bytes: 1 << 30, segment_size: 64 << 20, fsync: Fsync::Batch };
//! let (queue, mut writer, mut reader, recovery) = open("/var/lib/sightline/q".as_ref(), opts)?;
//! assert!(queue.try_reserve(Entry::stored_len(5)));
//! writer.append(&[Entry { kind: 0, items: 1, data: b"hello" }])?;
//! let rec = reader.next(std::time::Duration::from_secs(1))?.expect("a record");
//! queue.ack(rec.seq);
//! writer.maintain()?;
//! # let _ = recovery;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

const SEGMENT_MAGIC: &[u8; 8] = b"SLDQSEG1";
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of a record's header.
pub const RECORD_HEADER_LEN: usize = 32;
/// The largest record data accepted (anything larger in a header is corruption).
pub const MAX_RECORD_LEN: usize = 1 << 30;
const FORMAT_VERSION: u8 = 1;
const CHECKPOINT_MAGIC: &[u8; 8] = b"SLDQACK1";
const CHECKPOINT_FILE: &str = "ack";
const CHECKPOINT_TMP: &str = "ack.tmp";
const LOCK_FILE: &str = "lock";
/// Writes are gathered into a buffer of about this size before a `write` call.
const WRITE_CHUNK: usize = 1 << 20;

/// When appended records are forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// `fdatasync` after every record.
    Always,
    /// Group commit: one `fdatasync` per [`Writer::append`] call, which carries every record
    /// that arrived while the previous one ran.
    Batch,
    /// Never: the operating system writes back when it likes (survives a process crash, not
    /// a power loss).
    Never,
}

/// How a queue is bounded and synced.
#[derive(Clone, Debug)]
pub struct Options {
    /// Upper bound of the segment files' total size, checked by [`Queue::try_reserve`].
    pub max_size_bytes: u64,
    /// A new segment is started by the first append after the active one reaches this size
    /// (soft: one append call may go past it).
    pub segment_size: u64,
    pub fsync: Fsync,
}

/// What [`open`] found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records not yet acknowledged (the backlog that is read first).
    pub records: u64,
    /// Their items.
    pub items: u64,
    /// Size of the segment files kept.
    pub bytes: u64,
    /// Records lost to corruption (a torn or corrupt tail counts as one record when the number
    /// cannot be known; a gap before the next segment counts exactly).
    pub corrupt_records: u64,
    /// Bytes cut off at the end of segments.
    pub truncated_bytes: u64,
    /// Segment files kept.
    pub segments: usize,
}

/// One record to append.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The caller's tag (Sightline: the signal).
    pub kind: u8,
    /// The caller's item count (spans, points, log records), used to count drops.
    pub items: u64,
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// Bytes a record with `len` bytes of data takes on disk.
    pub fn stored_len(len: usize) -> u64 {
        (RECORD_HEADER_LEN + len) as u64
    }
}

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub kind: u8,
    pub items: u64,
    pub data: Vec<u8>,
}

/// What [`Queue::drop_oldest`] removed before it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub records: u64,
    pub items: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// Counters and sizes, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Size of the segment files (a dropped segment counts as deleted at once).
    pub disk_bytes: u64,
    /// Records appended and not yet acknowledged.
    pub unacked_records: u64,
    /// Records appended and not yet read.
    pub unread_records: u64,
    /// Records found corrupt while reading (skipped), since open.
    pub corrupt_records: u64,
    /// `fdatasync` calls on segment files, since open.
    pub fsyncs: u64,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    /// One past the last record written (committed or not).
    end_seq: u64,
    bytes: u64,
    items: u64,
    path: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    segments: VecDeque<Segment>,
    /// Records below this are written (and synced per the policy): readable.
    end_seq: u64,
    /// The next record to hand to the reader.
    read_seq: u64,
    /// The segment (first sequence number) the reader is in, and the items it read there.
    read_seg: u64,
    read_items_in_seg: u64,
    /// Every record below this is acknowledged.
    ack_floor: u64,
    /// Acknowledged ranges above `ack_floor` (start -> end, exclusive).
    acked: BTreeMap<u64, u64>,
    /// Segment file bytes (a dropped segment's count as freed at once).
    disk_bytes: u64,
    /// Bytes promised to appends not yet written.
    reserved: u64,
    /// Files to delete, with the bytes to subtract from `disk_bytes` when they are gone.
    to_delete: Vec<(PathBuf, u64)>,
    closed: bool,
    corrupt_records: u64,
    fsyncs: u64,
}

impl State {
    fn ack_range(&mut self, start: u64, end: u64) {
        if end <= self.ack_floor || start >= end {
            return;
        }
        if start <= self.ack_floor {
            self.ack_floor = end;
        } else {
            let e = self.acked.entry(start).or_insert(end);
            *e = (*e).max(end);
        }
        while let Some((&s, &e)) = self.acked.first_key_value() {
            if s > self.ack_floor {
                break;
            }
            self.ack_floor = self.ack_floor.max(e);
            self.acked.pop_first();
        }
    }

    fn unacked(&self) -> u64 {
        let above: u64 = self.acked.iter().map(|(s, e)| e.min(&self.end_seq).saturating_sub(*s)).sum();
        self.end_seq.saturating_sub(self.ack_floor).saturating_sub(above)
    }
}

/// The shared part of a queue: acknowledgements, space accounting, stats. Cheap to call from
/// async code (a short lock, no I/O).
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    opts: Options,
    state: Mutex<State>,
    readable: Condvar,
    _lock: File,
}

/// The single appender. Blocking.
#[derive(Debug)]
pub struct Writer {
    q: Arc<Queue>,
    file: Option<File>,
    /// Size of the active segment file (what is committed).
    active_bytes: u64,
    /// First sequence number of the active segment.
    active_first: u64,
    next_seq: u64,
    buf: Vec<u8>,
    checkpoint_written: u64,
}

/// The single reader. Blocking.
#[derive(Debug)]
pub struct Reader {
    q: Arc<Queue>,
    /// (first sequence number of the segment, the file, the sequence number at its position).
    file: Option<(u64, BufReader<File>, u64)>,
}

fn lock(q: &Queue) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the state half-updated in a way that
    // matters more than stopping would: keep going with what is there.
    q.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let n = name.strip_suffix(".seg")?;
    if n.len() != 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn encode_header(out: &mut Vec<u8>, seq: u64, kind: u8, items: u64, data: &[u8]) {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&items.to_le_bytes());
    h[24] = kind;
    h[25] = FORMAT_VERSION;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..]), data);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
}

struct Header {
    crc: u32,
    len: usize,
    seq: u64,
    items: u64,
    kind: u8,
}

fn decode_header(h: &[u8; RECORD_HEADER_LEN]) -> Header {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Header { crc: u32_at(0), len: u32_at(4) as usize, seq: u64_at(8), items: u64_at(16), kind: h[24] }
}

fn record_crc(h: &[u8; RECORD_HEADER_LEN], data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[4..]), data)
}

/// Reads as much as possible into `buf`; the count is short only at end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_checkpoint(dir: &Path) -> Option<u64> {
    let b = fs::read(dir.join(CHECKPOINT_FILE)).ok()?;
    if b.len() != 20 || &b[0..8] != CHECKPOINT_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    if crc32c::crc32c(&b[0..16]) != crc {
        return None;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[8..16]);
    Some(u64::from_le_bytes(v))
}

/// Result of scanning one segment file.
struct Scan {
    end_seq: u64,
    /// Length of the valid prefix.
    valid_len: u64,
    file_len: u64,
    items: u64,
    /// Items of records at or after `from_seq`.
    items_from: u64,
}

/// Walks a segment's records. Stops at the first record that cannot be trusted: a short
/// header or body (torn write), an impossible length, an unexpected sequence number, or a CRC
/// mismatch that is not followed by a good record. A CRC mismatch in a record whose length is
/// sane and which is followed by a good record (or ends the file exactly) is kept in place:
/// the reader skips it and counts it.
fn scan_segment(path: &Path, first_seq: u64, from_seq: u64) -> io::Result<Option<Scan>> {
    let mut f = BufReader::with_capacity(256 << 10, File::open(path)?);
    let file_len = f.get_ref().metadata()?.len();
    let mut sh = [0u8; SEGMENT_HEADER_LEN as usize];
    if read_full(&mut f, &mut sh)? < sh.len() || &sh[0..8] != SEGMENT_MAGIC {
        return Ok(None);
    }
    let mut named = [0u8; 8];
    named.copy_from_slice(&sh[8..16]);
    if u64::from_le_bytes(named) != first_seq {
        return Ok(None);
    }
    let mut off = SEGMENT_HEADER_LEN;
    let mut seq = first_seq;
    let mut items = 0u64;
    let mut items_from = 0u64;
    let mut data = Vec::new();
    let mut h = [0u8; RECORD_HEADER_LEN];
    // A record whose CRC failed, waiting for the next record to confirm the framing:
    // (offset, sequence number).
    let mut suspect: Option<(u64, u64)> = None;
    loop {
        let n = read_full(&mut f, &mut h)?;
        if n == 0 {
            // End of file on a record boundary.
            break;
        }
        let hd = decode_header(&h);
        let framing_ok = n == RECORD_HEADER_LEN
            && hd.len <= MAX_RECORD_LEN
            && hd.seq == seq
            && off + (RECORD_HEADER_LEN + hd.len) as u64 <= file_len;
        let body_ok = framing_ok && {
            data.resize(hd.len, 0);
            read_full(&mut f, &mut data)? == hd.len
        };
        let crc_ok = body_ok && record_crc(&h, &data) == hd.crc;
        if !crc_ok {
            if let Some((o, s)) = suspect {
                // Two bad records in a row: the framing is lost at the first one.
                off = o;
                seq = s;
                break;
            }
            // The sequence number is covered by the CRC, so accept a mismatch only when the
            // length stays inside the file; the next record decides.
            let sane = n == RECORD_HEADER_LEN && hd.len <= MAX_RECORD_LEN;
            let next = off + (RECORD_HEADER_LEN + hd.len) as u64;
            if !sane || next > file_len {
                break;
            }
            if !body_ok {
                f.seek(SeekFrom::Start(next))?;
            }
            suspect = Some((off, seq));
            off = next;
            seq += 1;
            continue;
        }
        suspect = None;
        items += hd.items;
        if seq >= from_seq {
            items_from += hd.items;
        }
        off += (RECORD_HEADER_LEN + hd.len) as u64;
        seq += 1;
    }
    // A suspect record that ends the file exactly is kept (the reader skips and counts it);
    // one followed by garbage was cut with the garbage above.
    Ok(Some(Scan { end_seq: seq, valid_len: off, file_len, items, items_from }))
}

/// Opens (creating if needed) the queue in `dir`: takes the directory lock, recovers every
/// segment (cutting a torn or corrupt tail at the last good record), deletes what the
/// checkpoint says is acknowledged, and returns the queue with its writer and reader.
pub fn open(dir: &Path, opts: Options) -> io::Result<(Arc<Queue>, Writer, Reader, Recovery)> {
    fs::create_dir_all(dir)?;
    let lock_file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
    match lock_file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{}: the queue is in use by another process", dir.display()),
            ));
        }
        Err(fs::TryLockError::Error(e)) => return Err(e),
    }
    let _ = fs::remove_file(dir.join(CHECKPOINT_TMP));
    let checkpoint = read_checkpoint(dir).unwrap_or(0);

    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Some(first) = e.file_name().to_str().and_then(parse_segment_name) {
            names.push((first, e.path()));
        }
    }
    names.sort();

    let mut rec = Recovery::default();
    let mut segments: VecDeque<Segment> = VecDeque::new();
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    for i in 0..names.len() {
        let (first, path) = &names[i];
        let next_first = names.get(i + 1).map(|n| n.0);
        if next_first.is_some_and(|n| n <= checkpoint) {
            // Every record is acknowledged.
            fs::remove_file(path)?;
            continue;
        }
        let Some(scan) = scan_segment(path, *first, checkpoint)? else {
            // Not a segment of ours (bad header): its records are lost.
            rec.corrupt_records += next_first.map_or(1, |n| n.saturating_sub(*first).max(1));
            rec.truncated_bytes += fs::metadata(path)?.len();
            fs::remove_file(path)?;
            continue;
        };
        if scan.valid_len < scan.file_len {
            let cut = scan.file_len - scan.valid_len;
            rec.truncated_bytes += cut;
            rec.corrupt_records += match next_first {
                Some(n) => n.saturating_sub(scan.end_seq).max(1),
                None => 1,
            };
            OpenOptions::new().write(true).open(path)?.set_len(scan.valid_len)?;
        } else if let Some(n) = next_first
            && n > scan.end_seq
        {
            // Records missing between two segments (a file was cut or removed by hand).
            rec.corrupt_records += n - scan.end_seq;
        }
        if let Some(n) = next_first
            && n > scan.end_seq
        {
            gaps.push((scan.end_seq, n));
        }
        if next_first.is_some() && scan.end_seq == *first {
            // An empty segment that is not the last one.
            fs::remove_file(path)?;
            continue;
        }
        rec.items += scan.items_from;
        segments.push_back(Segment {
            first_seq: *first,
            end_seq: scan.end_seq,
            bytes: scan.valid_len,
            items: scan.items,
            path: path.clone(),
        });
    }
    if opts.fsync != Fsync::Never && rec.truncated_bytes > 0 {
        sync_dir(dir)?;
    }

    let first_seq = segments.front().map_or(checkpoint, |s| s.first_seq);
    let end_seq = segments.back().map_or(checkpoint, |s| s.end_seq).max(checkpoint);
    let ack_floor = checkpoint.max(first_seq).min(end_seq);
    let mut st = State {
        disk_bytes: segments.iter().map(|s| s.bytes).sum(),
        segments,
        end_seq,
        read_seq: ack_floor,
        ack_floor,
        ..State::default()
    };
    for (s, e) in gaps {
        st.ack_range(s, e);
    }
    st.read_seq = st.ack_floor;
    // Items of the segment that holds read_seq that are below it.
    if let Some(seg) = st.segments.iter().find(|s| s.first_seq <= st.read_seq && st.read_seq < s.end_seq) {
        let below = seg.items.saturating_sub(scan_items_from(seg, st.read_seq)?);
        st.read_seg = seg.first_seq;
        st.read_items_in_seg = below;
    }
    rec.records = st.unacked();
    rec.bytes = st.disk_bytes;
    rec.segments = st.segments.len();

    let (active_first, active_bytes, file) = match st.segments.back() {
        Some(s) if s.bytes < opts.segment_size => {
            let mut f = OpenOptions::new().write(true).open(&s.path)?;
            f.seek(SeekFrom::End(0))?;
            (s.first_seq, s.bytes, Some(f))
        }
        _ => (end_seq, 0, None),
    };
    let q = Arc::new(Queue {
        dir: dir.to_path_buf(),
        opts,
        state: Mutex::new(st),
        readable: Condvar::new(),
        _lock: lock_file,
    });
    let writer = Writer {
        q: q.clone(),
        file,
        active_bytes,
        active_first,
        next_seq: end_seq,
        buf: Vec::new(),
        checkpoint_written: checkpoint,
    };
    let reader = Reader { q: q.clone(), file: None };
    Ok((q, writer, reader, rec))
}

fn scan_items_from(seg: &Segment, from: u64) -> io::Result<u64> {
    Ok(scan_segment(&seg.path, seg.first_seq, from)?.map_or(0, |s| s.items_from))
}

impl Queue {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Reserves room for a record of `stored_len` bytes ([`Entry::stored_len`]); false when
    /// the queue would exceed `max_size_bytes`. The writer releases the reservation.
    pub fn try_reserve(&self, stored_len: u64) -> bool {
        let mut st = lock(self);
        if st.disk_bytes + st.reserved + stored_len > self.opts.max_size_bytes {
            return false;
        }
        st.reserved += stored_len;
        true
    }

    /// Gives back a reservation that will not be appended.
    pub fn release(&self, stored_len: u64) {
        let mut st = lock(self);
        st.reserved = st.reserved.saturating_sub(stored_len);
    }

    /// Acknowledges a record: it may be deleted. Any order; repeated acks are harmless.
    pub fn ack(&self, seq: u64) {
        lock(self).ack_range(seq, seq + 1);
    }

    /// Drops the oldest segment (never the one being written) to make room: its records not
    /// yet read are lost and returned for counting; its file is deleted by the next
    /// [`Writer::maintain`]. `None` when there is no such segment.
    pub fn drop_oldest(&self) -> Option<Dropped> {
        let mut st = lock(self);
        if st.segments.len() < 2 {
            return None;
        }
        let front = st.segments.front()?;
        if front.end_seq > st.end_seq {
            return None;
        }
        let seg = st.segments.pop_front()?;
        let mut d = Dropped { bytes: seg.bytes, ..Dropped::default() };
        if st.read_seq < seg.end_seq {
            let from = st.read_seq.max(seg.first_seq);
            d.records = seg.end_seq - from;
            let read = if st.read_seg == seg.first_seq { st.read_items_in_seg } else { 0 };
            d.items = seg.items.saturating_sub(read);
            st.ack_range(from, seg.end_seq);
            st.read_seq = seg.end_seq;
        }
        // The room counts at once (the file goes at the next maintain).
        st.disk_bytes = st.disk_bytes.saturating_sub(seg.bytes);
        st.to_delete.push((seg.path, 0));
        Some(d)
    }

    /// Stops the reader: [`Reader::next`] returns `None` from now on. Appends still work.
    pub fn close(&self) {
        lock(self).closed = true;
        self.readable.notify_all();
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        lock(self).closed
    }

    pub fn stats(&self) -> Stats {
        let st = lock(self);
        Stats {
            disk_bytes: st.disk_bytes,
            unacked_records: st.unacked(),
            unread_records: st.end_seq.saturating_sub(st.read_seq),
            corrupt_records: st.corrupt_records,
            fsyncs: st.fsyncs,
        }
    }
}

impl Writer {
    pub fn queue(&self) -> &Arc<Queue> {
        &self.q
    }

    fn roll(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take()
            && self.q.opts.fsync != Fsync::Never
        {
            // Everything in it was synced per record or per group already; this is cheap.
            f.sync_data()?;
        }
        let first = self.next_seq;
        let path = self.q.dir.join(segment_name(first));
        let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        h[0..8].copy_from_slice(SEGMENT_MAGIC);
        h[8..16].copy_from_slice(&first.to_le_bytes());
        f.write_all(&h)?;
        if self.q.opts.fsync != Fsync::Never {
            f.sync_data()?;
            sync_dir(&self.q.dir)?;
        }
        self.file = Some(f);
        self.active_first = first;
        self.active_bytes = SEGMENT_HEADER_LEN;
        let mut st = lock(&self.q);
        st.disk_bytes += SEGMENT_HEADER_LEN;
        st.segments.push_back(Segment { first_seq: first, end_seq: first, bytes: SEGMENT_HEADER_LEN, items: 0, path });
        Ok(())
    }

    /// Appends `entries` as consecutive records and syncs them per the policy: once at the
    /// end (`batch`), after each record (`always`) or not at all (`never`). Returns the
    /// sequence number of the first. The bytes must have been reserved with
    /// [`Queue::try_reserve`]; the reservation is released whether or not this succeeds. On
    /// an error nothing of the call is kept (the file is cut back).
    pub fn append(&mut self, entries: &[Entry<'_>]) -> io::Result<u64> {
        let total: u64 = entries.iter().map(|e| Entry::stored_len(e.data.len())).sum();
        let r = self.append_inner(entries, total);
        let mut st = lock(&self.q);
        st.reserved = st.reserved.saturating_sub(total);
        match r {
            Ok((first, items)) => {
                let n = entries.len() as u64;
                let active_first = self.active_first;
                if let Some(seg) = st.segments.iter_mut().rev().find(|s| s.first_seq == active_first) {
                    seg.end_seq = first + n;
                    seg.bytes += total;
                    seg.items += items;
                }
                st.disk_bytes += total;
                st.end_seq = first + n;
                drop(st);
                self.next_seq = first + n;
                self.active_bytes += total;
                self.q.readable.notify_all();
                Ok(first)
            }
            Err(e) => {
                drop(st);
                // Cut back whatever part of the call reached the file.
                if let Some(f) = &mut self.file {
                    let keep = self.active_bytes;
                    if f.set_len(keep).and_then(|_| f.seek(SeekFrom::Start(keep))).is_err() {
                        self.file = None; // start a fresh segment next time
                        self.active_bytes = u64::MAX;
                    }
                }
                Err(e)
            }
        }
    }

    fn append_inner(&mut self, entries: &[Entry<'_>], _total: u64) -> io::Result<(u64, u64)> {
        if entries.is_empty() {
            return Ok((self.next_seq, 0));
        }
        if let Some(e) = entries.iter().find(|e| e.data.len() > MAX_RECORD_LEN) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("record of {} bytes", e.data.len())));
        }
        if self.file.is_none() || self.active_bytes >= self.q.opts.segment_size {
            self.roll()?;
        }
        let policy = self.q.opts.fsync;
        let mut fsyncs = 0u64;
        let mut items = 0u64;
        let first = self.next_seq;
        let Self { file, buf, .. } = self;
        let Some(f) = file.as_mut() else { return Err(io::Error::other("no active segment")) };
        buf.clear();
        for (i, e) in entries.iter().enumerate() {
            encode_header(buf, first + i as u64, e.kind, e.items, e.data);
            items += e.items;
            if e.data.len() >= WRITE_CHUNK {
                // Large data goes straight from the caller's buffer.
                f.write_all(buf)?;
                buf.clear();
                f.write_all(e.data)?;
            } else {
                buf.extend_from_slice(e.data);
            }
            if policy == Fsync::Always {
                f.write_all(buf)?;
                buf.clear();
                f.sync_data()?;
                fsyncs += 1;
            } else if buf.len() >= WRITE_CHUNK {
                f.write_all(buf)?;
                buf.clear();
            }
        }
        f.write_all(buf)?;
        buf.clear();
        if buf.capacity() > 4 * WRITE_CHUNK {
            buf.shrink_to(WRITE_CHUNK);
        }
        if policy == Fsync::Batch {
            f.sync_data()?;
            fsyncs += 1;
        }
        if fsyncs > 0 {
            lock(&self.q).fsyncs += fsyncs;
        }
        Ok((first, items))
    }

    /// Housekeeping, on the writer's thread: deletes segments whose records are all
    /// acknowledged (or that were dropped) and writes the checkpoint when it moved. Returns
    /// the bytes freed.
    pub fn maintain(&mut self) -> io::Result<u64> {
        let (to_delete, floor) = {
            let mut st = lock(&self.q);
            while st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.end_seq <= st.ack_floor) {
                if let Some(s) = st.segments.pop_front() {
                    st.to_delete.push((s.path, s.bytes));
                }
            }
            (std::mem::take(&mut st.to_delete), st.ack_floor)
        };
        let mut freed = 0;
        let mut err = None;
        for (path, bytes) in to_delete {
            match fs::remove_file(&path) {
                Ok(()) => freed += bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => freed += bytes,
                Err(e) => {
                    err = Some(e);
                    // Keep counting it: the bytes are still on disk.
                    lock(&self.q).to_delete.push((path, bytes));
                }
            }
        }
        if freed > 0 {
            let mut st = lock(&self.q);
            st.disk_bytes = st.disk_bytes.saturating_sub(freed);
        }
        if floor != self.checkpoint_written {
            self.write_checkpoint(floor)?;
        }
        match err {
            Some(e) => Err(e),
            None => Ok(freed),
        }
    }

    fn write_checkpoint(&mut self, floor: u64) -> io::Result<()> {
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(CHECKPOINT_MAGIC);
        b.extend_from_slice(&floor.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.q.dir.join(CHECKPOINT_TMP);
        fs::write(&tmp, &b)?;
        // No sync: a stale checkpoint only means records are sent again after a crash.
        fs::rename(&tmp, self.q.dir.join(CHECKPOINT_FILE))?;
        self.checkpoint_written = floor;
        Ok(())
    }
}

impl Reader {
    pub fn queue(&self) -> &Arc<Queue> {
        &self.q
    }

    /// The next unread record, waiting up to `wait` for one. `None` on timeout or once the
    /// queue is closed. Corrupt records are skipped and counted in [`Stats::corrupt_records`]
    /// (and acknowledged, so they do not hold the checkpoint back).
    pub fn next(&mut self, wait: Duration) -> io::Result<Option<Record>> {
        loop {
            let (seq, seg_first, seg_end, path) = {
                let mut st = lock(&self.q);
                if st.closed {
                    return Ok(None);
                }
                if st.read_seq >= st.end_seq {
                    let (g, timeout) = self
                        .q
                        .readable
                        .wait_timeout_while(st, wait, |s| !s.closed && s.read_seq >= s.end_seq)
                        .map_err(|_| io::Error::other("queue lock poisoned"))?;
                    st = g;
                    if st.closed || timeout.timed_out() && st.read_seq >= st.end_seq {
                        return Ok(None);
                    }
                }
                let rs = st.read_seq;
                match st.segments.iter().find(|s| s.end_seq > rs) {
                    Some(s) if s.first_seq <= rs => (rs, s.first_seq, s.end_seq.min(st.end_seq), s.path.clone()),
                    Some(s) => {
                        // A gap (records lost in recovery): continue at the next segment.
                        let f = s.first_seq;
                        st.read_seq = f;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            match self.read_at(seq, seg_first, &path)? {
                ReadOutcome::Record(r) => {
                    let mut st = lock(&self.q);
                    if st.read_seq == seq {
                        st.read_seq = seq + 1;
                        if st.read_seg != seg_first {
                            st.read_seg = seg_first;
                            st.read_items_in_seg = 0;
                        }
                        st.read_items_in_seg += r.items;
                        return Ok(Some(r));
                    }
                    // Dropped meantime (drop_oldest): reposition.
                    self.file = None;
                }
                ReadOutcome::BadRecord => {
                    let mut st = lock(&self.q);
                    if st.read_seq == seq {
                        st.corrupt_records += 1;
                        st.read_seq = seq + 1;
                        st.ack_range(seq, seq + 1);
                    }
                }
                ReadOutcome::BadSegment => {
                    let mut st = lock(&self.q);
                    if st.read_seq == seq {
                        st.corrupt_records += seg_end.saturating_sub(seq);
                        st.read_seq = seg_end;
                        st.ack_range(seq, seg_end);
                    }
                    self.file = None;
                }
            }
        }
    }

    fn read_at(&mut self, seq: u64, seg_first: u64, path: &Path) -> io::Result<ReadOutcome> {
        let positioned = matches!(&self.file, Some((f, _, s)) if *f == seg_first && *s == seq);
        if !positioned {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadOutcome::BadSegment),
                Err(e) => return Err(e),
            };
            let mut r = BufReader::with_capacity(256 << 10, file);
            r.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))?;
            // Skip to `seq` (only after a restart in the middle of a segment or a drop).
            let mut h = [0u8; RECORD_HEADER_LEN];
            let mut at = seg_first;
            while at < seq {
                if read_full(&mut r, &mut h)? < RECORD_HEADER_LEN {
                    return Ok(ReadOutcome::BadSegment);
                }
                let hd = decode_header(&h);
                if hd.len > MAX_RECORD_LEN {
                    return Ok(ReadOutcome::BadSegment);
                }
                r.seek_relative(hd.len as i64)?;
                at += 1;
            }
            self.file = Some((seg_first, r, seq));
        }
        let Some((_, r, pos_seq)) = &mut self.file else { return Ok(ReadOutcome::BadSegment) };
        let mut h = [0u8; RECORD_HEADER_LEN];
        if read_full(r, &mut h)? < RECORD_HEADER_LEN {
            return Ok(ReadOutcome::BadSegment);
        }
        let hd = decode_header(&h);
        if hd.len > MAX_RECORD_LEN {
            return Ok(ReadOutcome::BadSegment);
        }
        let mut data = vec![0u8; hd.len];
        if read_full(r, &mut data)? < hd.len {
            return Ok(ReadOutcome::BadSegment);
        }
        *pos_seq = seq + 1;
        if hd.seq != seq || record_crc(&h, &data) != hd.crc {
            return Ok(ReadOutcome::BadRecord);
        }
        Ok(ReadOutcome::Record(Record { seq, kind: hd.kind, items: hd.items, data }))
    }
}

enum ReadOutcome {
    Record(Record),
    /// A record whose framing is intact but whose CRC (or sequence number) is wrong.
    BadRecord,
    /// The rest of the segment cannot be read.
    BadSegment,
}

#[cfg(test)]
mod tests;

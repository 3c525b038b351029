//! The segment format and its recovery: round trip, torn tails, corruption in the middle,
//! deletion after acknowledgement, the byte bound and each overflow primitive.

use super::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_millis(50);

fn opts(segment_size: u64, max: u64, fsync: Fsync) -> Options {
    Options { max_size_bytes: max, segment_size, fsync }
}

fn data(i: u64) -> Vec<u8> {
    format!("record-{i:04}-").repeat(4).into_bytes()
}

/// Appends records `range` one per call, reserving first.
fn put(q: &Queue, w: &mut Writer, range: std::ops::Range<u64>) {
    for i in range {
        let d = data(i);
        assert!(q.try_reserve(Entry::stored_len(d.len())), "room for {i}");
        w.append(&[Entry { kind: 2, items: i + 1, data: &d }]).unwrap();
    }
}

fn read_all(r: &mut Reader) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(rec) = r.next(WAIT).unwrap() {
        out.push(rec);
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_and_backlog_recovered_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, mut w, mut r, rec) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
        assert_eq!(rec, Recovery::default());
        put(&q, &mut w, 0..10);
        let got = read_all(&mut r);
        assert_eq!(got.len(), 10);
        assert_eq!(got[3], Record { seq: 3, kind: 2, items: 4, data: data(3) });
        // The first four are acknowledged (out of order), the rest are not.
        for s in [2, 0, 3, 1] {
            q.ack(s);
        }
        w.maintain().unwrap();
        assert_eq!(q.stats().unacked_records, 6);
    }
    let (q, _w, mut r, rec) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
    assert_eq!(rec.records, 6);
    assert_eq!(rec.items, (5..=10).sum::<u64>());
    assert_eq!(rec.corrupt_records, 0);
    let got: Vec<u64> = read_all(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, (4..10).collect::<Vec<_>>(), "the backlog, in order, without the acked ones");
    assert_eq!(q.stats().corrupt_records, 0);
}

#[test]
fn out_of_order_acks_hold_the_checkpoint_until_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let (q, mut w, mut r, _) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Never)).unwrap();
    put(&q, &mut w, 0..5);
    read_all(&mut r);
    q.ack(1);
    q.ack(2);
    q.ack(4);
    assert_eq!(q.stats().unacked_records, 2);
    w.maintain().unwrap();
    assert_eq!(read_checkpoint(dir.path()), None, "floor still 0: nothing written");
    q.ack(0);
    w.maintain().unwrap();
    assert_eq!(read_checkpoint(dir.path()), Some(3));
    q.ack(3);
    w.maintain().unwrap();
    assert_eq!(read_checkpoint(dir.path()), Some(5));
}

#[test]
fn torn_tail_is_truncated_at_the_last_good_record_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, mut w, _r, _) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
        put(&q, &mut w, 0..5);
    }
    let seg = &segment_files(dir.path())[0];
    let len = fs::metadata(seg).unwrap().len();
    // Cut the last record in the middle of its data (a write that did not finish).
    OpenOptions::new().write(true).open(seg).unwrap().set_len(len - 7).unwrap();
    let good = len - Entry::stored_len(data(4).len());
    let (q, mut w, mut r, rec) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
    assert_eq!(rec.records, 4);
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.truncated_bytes, good.abs_diff(len - 7));
    assert_eq!(fs::metadata(seg).unwrap().len(), good);
    // Appending continues after the last good record, with the next sequence number.
    put(&q, &mut w, 4..6);
    let got: Vec<u64> = read_all(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(read_all(&mut r).len(), 0);
    assert_eq!(q.stats().corrupt_records, 0);
}

#[test]
fn zero_filled_tail_is_truncated() {
    // What a file system may leave after a power loss: the size grew, the data did not land.
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, mut w, _r, _) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
        put(&q, &mut w, 0..3);
    }
    let seg = &segment_files(dir.path())[0];
    let len = fs::metadata(seg).unwrap().len();
    OpenOptions::new().write(true).open(seg).unwrap().set_len(len + 4096).unwrap();
    let (_q, _w, mut r, rec) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
    assert_eq!(rec.records, 3);
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.truncated_bytes, 4096);
    assert_eq!(read_all(&mut r).len(), 3);
}

#[test]
fn corrupt_crc_in_the_middle_skips_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, mut w, _r, _) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
        put(&q, &mut w, 0..5);
    }
    let seg = &segment_files(dir.path())[0];
    let mut bytes = fs::read(seg).unwrap();
    // Flip a data byte of record 2.
    let rec_len = Entry::stored_len(data(0).len()) as usize;
    let at = SEGMENT_HEADER_LEN as usize + 2 * rec_len + RECORD_HEADER_LEN + 3;
    bytes[at] ^= 0x40;
    fs::write(seg, &bytes).unwrap();
    let (q, _w, mut r, rec) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Batch)).unwrap();
    assert_eq!(rec.corrupt_records, 0, "framing intact: nothing cut");
    assert_eq!(rec.truncated_bytes, 0);
    let got: Vec<u64> = read_all(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, vec![0, 1, 3, 4]);
    assert_eq!(q.stats().corrupt_records, 1, "counted when the reader reaches it");
    // The corrupt record is acknowledged by the reader, so it does not hold the queue.
    for s in got {
        q.ack(s);
    }
    assert_eq!(q.stats().unacked_records, 0);
}

#[test]
fn corrupt_header_in_an_older_segment_loses_the_rest_of_that_segment_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let rec_len = Entry::stored_len(data(0).len());
    // Four records per segment.
    let seg_size = SEGMENT_HEADER_LEN + 4 * rec_len;
    {
        let (q, mut w, _r, _) = open(dir.path(), opts(seg_size, 1 << 30, Fsync::Never)).unwrap();
        put(&q, &mut w, 0..10);
    }
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 3);
    let mut bytes = fs::read(&segs[0]).unwrap();
    // Record 1's length field becomes huge: nothing after it in this segment can be framed.
    let at = SEGMENT_HEADER_LEN as usize + rec_len as usize + 4;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&segs[0], &bytes).unwrap();
    let (q, _w, mut r, rec) = open(dir.path(), opts(seg_size, 1 << 30, Fsync::Never)).unwrap();
    assert_eq!(rec.corrupt_records, 3, "records 1, 2 and 3 (the next segment starts at 4)");
    let got: Vec<u64> = read_all(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, vec![0, 4, 5, 6, 7, 8, 9]);
    for s in got {
        q.ack(s);
    }
    assert_eq!(q.stats().unacked_records, 0, "the lost range does not hold the checkpoint");
}

#[test]
fn fully_acked_segments_are_deleted_and_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let rec_len = Entry::stored_len(data(0).len());
    let seg_size = SEGMENT_HEADER_LEN + 2 * rec_len;
    {
        let (q, mut w, mut r, _) = open(dir.path(), opts(seg_size, 1 << 30, Fsync::Batch)).unwrap();
        put(&q, &mut w, 0..10);
        assert_eq!(segment_files(dir.path()).len(), 5);
        let got = read_all(&mut r);
        // Acknowledge the first 7: segments [0,1], [2,3], [4,5] are done; [6,7] is not.
        for rec in &got[..7] {
            q.ack(rec.seq);
        }
        let before = q.stats().disk_bytes;
        let freed = w.maintain().unwrap();
        assert_eq!(freed, 3 * seg_size);
        assert_eq!(q.stats().disk_bytes, before - freed);
        let names: Vec<String> =
            segment_files(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, vec![segment_name(6), segment_name(8)]);
    }
    let (_q, _w, mut r, rec) = open(dir.path(), opts(seg_size, 1 << 30, Fsync::Batch)).unwrap();
    assert_eq!(rec.records, 3);
    let got: Vec<u64> = read_all(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, vec![7, 8, 9], "restart in the middle of a segment skips the acked record");
}

#[test]
fn byte_bound_drop_newest_refuses_and_space_comes_back_after_ack() {
    // drop_newest and block both start from try_reserve failing; block then waits until
    // maintain frees a segment.
    let dir = tempfile::tempdir().unwrap();
    let rec_len = Entry::stored_len(data(0).len());
    let seg_size = SEGMENT_HEADER_LEN + 2 * rec_len;
    let max = 3 * seg_size;
    let (q, mut w, mut r, _) = open(dir.path(), opts(seg_size, max, Fsync::Never)).unwrap();
    put(&q, &mut w, 0..6);
    assert!(!q.try_reserve(rec_len), "full");
    assert!(q.stats().disk_bytes <= max);
    let got = read_all(&mut r);
    q.ack(got[0].seq);
    w.maintain().unwrap();
    assert!(!q.try_reserve(rec_len), "half a segment acknowledged frees nothing");
    q.ack(got[1].seq);
    assert_eq!(w.maintain().unwrap(), seg_size);
    assert!(q.try_reserve(rec_len), "a deleted segment makes room");
    q.release(rec_len);
}

#[test]
fn drop_oldest_discards_unread_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let rec_len = Entry::stored_len(data(0).len());
    let seg_size = SEGMENT_HEADER_LEN + 2 * rec_len;
    let (q, mut w, mut r, _) = open(dir.path(), opts(seg_size, 1 << 30, Fsync::Never)).unwrap();
    put(&q, &mut w, 0..6); // segments [0,1] [2,3] [4,5]; items are seq + 1
    // Read record 0 only; 1 is unread in the oldest segment.
    assert_eq!(r.next(WAIT).unwrap().map(|r| r.seq), Some(0));
    let d = q.drop_oldest().expect("an older segment");
    assert_eq!(d, Dropped { records: 1, items: 2, bytes: seg_size });
    let d = q.drop_oldest().expect("another one");
    assert_eq!(d, Dropped { records: 2, items: 3 + 4, bytes: seg_size });
    assert_eq!(q.drop_oldest(), None, "the active segment is never dropped");
    w.maintain().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    let got: Vec<u64> = read_all(&mut r).iter().map(|r| r.seq).collect();
    assert_eq!(got, vec![4, 5]);
    // Record 0 was in flight when its segment went: its ack still lands.
    for s in [0, 4, 5] {
        q.ack(s);
    }
    assert_eq!(q.stats().unacked_records, 0);
}

#[test]
fn fsync_policies_batch_is_one_sync_per_group() {
    for (policy, expect) in [(Fsync::Batch, 1u64), (Fsync::Always, 8), (Fsync::Never, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let (q, mut w, _r, _) = open(dir.path(), opts(1 << 20, 1 << 30, policy)).unwrap();
        // The first append also creates the segment (one sync of its header when syncing).
        let d = data(0);
        assert!(q.try_reserve(Entry::stored_len(d.len())));
        w.append(&[Entry { kind: 0, items: 1, data: &d }]).unwrap();
        let before = q.stats().fsyncs;
        let ds: Vec<Vec<u8>> = (0..8).map(data).collect();
        let entries: Vec<Entry<'_>> = ds.iter().map(|d| Entry { kind: 0, items: 1, data: d }).collect();
        for d in &ds {
            assert!(q.try_reserve(Entry::stored_len(d.len())));
        }
        w.append(&entries).unwrap();
        assert_eq!(q.stats().fsyncs - before, expect, "{policy:?}");
    }
}

#[test]
fn a_directory_is_opened_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Never)).unwrap();
    let err = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Never)).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Never)).unwrap();
}

#[test]
fn close_wakes_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _w, mut r, _) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Never)).unwrap();
    let t = std::thread::spawn(move || r.next(Duration::from_secs(60)).unwrap());
    std::thread::sleep(Duration::from_millis(20));
    q.close();
    assert_eq!(t.join().unwrap(), None);
}

#[test]
fn foreign_file_in_the_directory_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(0)), b"not a segment at all").unwrap();
    let (_q, _w, _r, rec) = open(dir.path(), opts(1 << 20, 1 << 30, Fsync::Never)).unwrap();
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.records, 0);
}

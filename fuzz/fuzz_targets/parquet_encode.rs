//! The `parquet` exporter's encoder (`sightline_parquet::encode_batch`) on arbitrary bytes,
//! and the Parquet writer on what it builds. Input: one byte for the signal, then the request.
//!
//! Oracles:
//! - nothing panics;
//! - every request the wire walker accepts as valid encodes without error, with one row per
//!   span or log record less the items the encoder counted malformed;
//! - each table's team runs cover its rows exactly, and the rows written as Parquet (in
//!   memory) read back with the same count.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sightline_core::Signal;
use sightline_fuzz::split_signal;
use sightline_parquet::{Encoder, Table, encode_batch};

fuzz_target!(|data: &[u8]| {
    let Some((signal, buf)) = split_signal(data) else { return };
    let Ok(summary) = sightline_core::wire::inspect(signal, buf) else { return };
    let mut enc = Encoder::new(&["http.route".into(), "k".into()], &["exception.type".into()]);
    let Ok(tables) = encode_batch(&mut enc, signal, &[Bytes::copy_from_slice(buf)], "owner.team") else {
        assert!(summary.invalid_items > 0, "a valid request must encode");
        return;
    };
    if summary.invalid_items == 0 && signal != Signal::Metrics {
        assert_eq!(enc.stats.items + enc.stats.malformed, summary.items, "one row per item");
    }
    for t in tables {
        assert_eq!(t.runs.iter().map(|r| r.2).sum::<usize>(), t.rows.num_rows());
        if matches!(t.table, Table::Spans | Table::Logs | Table::Histogram) {
            let mut out = Vec::new();
            let mut w = ArrowWriter::try_new(&mut out, t.rows.schema(), None).expect("writer");
            w.write(&t.rows).expect("write");
            w.close().expect("close");
            let read =
                ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out)).expect("read").build().expect("reader");
            let n: usize = read.map(|b| b.expect("batch").num_rows()).sum();
            assert_eq!(n, t.rows.num_rows());
        }
    }
});

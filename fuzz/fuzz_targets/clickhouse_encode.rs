//! The `clickhouse` exporter's encoder (`sightline_clickhouse::encode_bodies`) and its block
//! reader on arbitrary bytes. Input: one byte for the signal, then the request.
//!
//! Oracles:
//! - nothing panics, for every table shape (with and without `OwnerTeam`, `EventName`, metric
//!   times in seconds);
//! - every request the wire walker accepts as valid encodes without error, with as many rows
//!   as it has items minus the malformed ones the encoder counted;
//! - the compressed body reads back (`block::decompress`) to exactly the rows, and the block
//!   reader never panics on the raw input either.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sightline_clickhouse::schema::TableShape;
use sightline_clickhouse::{Compress, Encoder, Shapes, block, encode_bodies};
use sightline_fuzz::split_signal;

fuzz_target!(|data: &[u8]| {
    let _ = block::decompress(data);
    let Some((signal, buf)) = split_signal(data) else { return };
    let Ok(summary) = sightline_core::wire::inspect(signal, buf) else { return };
    let shape = TableShape {
        owner_team: data.len().is_multiple_of(2),
        event_name: data.len().is_multiple_of(3),
        seconds: data.len().is_multiple_of(5),
        unsupported: None,
    };
    let shapes = Shapes { traces: shape.clone(), logs: shape.clone(), metrics: std::array::from_fn(|_| shape.clone()) };
    let mut enc = Encoder::default();
    let chunks = [Bytes::copy_from_slice(buf)];
    let bodies = encode_bodies(&mut enc, signal, &chunks, &shapes, "owner.team", Compress::Lz4, None);
    let Ok(bodies) = bodies else {
        assert!(summary.invalid_items > 0, "a valid request must encode");
        return;
    };
    if summary.invalid_items == 0 && signal != sightline_core::Signal::Metrics {
        assert_eq!(enc.stats.rows + enc.stats.malformed, summary.items, "one row per item");
    }
    let rows: Vec<&Vec<u8>> = match signal {
        sightline_core::Signal::Metrics => enc.metric_rows.iter().collect(),
        _ => vec![&enc.rows],
    };
    for (body, rows) in bodies.iter().zip(rows) {
        assert_eq!(&block::decompress(body).expect("own blocks read back"), rows);
    }
});

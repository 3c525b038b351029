//! The OTLP/JSON decoder (`sightline_otlp_json::json_to_protobuf`) on arbitrary bytes. Input:
//! one byte for the signal, then the JSON.
//!
//! Oracles:
//! - nothing panics (requests and `response_from_json`);
//! - what it accepts is clean OTLP: the protobuf passes `inspect` with no invalid item (ids
//!   are checked while reading JSON) and prost decodes it;
//! - the JSON writer accepts it, and reading that JSON back gives the same protobuf bytes
//!   (and writing it again the same JSON): JSON -> protobuf -> JSON -> protobuf is a fixed
//!   point after the first step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_core::wire;
use sightline_fuzz::{json_signal, prost_decodes, split_signal};
use sightline_otlp_json::{json_to_protobuf, protobuf_to_json, response_from_json};

fuzz_target!(|data: &[u8]| {
    let Some((signal, json)) = split_signal(data) else { return };
    let js = json_signal(signal);
    let _ = response_from_json(js, json);
    let Ok(proto) = json_to_protobuf(js, json) else { return };
    let summary = wire::inspect(signal, &proto).expect("the JSON decoder's protobuf passes inspect");
    assert_eq!(summary.invalid_items, 0, "the JSON decoder let an invalid item through");
    assert!(prost_decodes(signal, &proto), "prost decodes the JSON decoder's protobuf");
    let json1 = protobuf_to_json(js, &proto).expect("the JSON writer accepts what the JSON reader produced");
    let proto2 = json_to_protobuf(js, &json1).expect("the JSON reader accepts what the JSON writer wrote");
    assert_eq!(proto2, proto, "protobuf -> JSON -> protobuf changed the request");
    let json2 = protobuf_to_json(js, &proto2).expect("the JSON writer, second time");
    assert_eq!(json2, json1, "the JSON writer is not a fixed point");
});

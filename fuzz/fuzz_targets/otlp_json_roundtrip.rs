//! The OTLP/JSON writer and reader round trip from protobuf. Input: one byte for the signal,
//! then a protobuf request.
//!
//! Oracles:
//! - nothing panics (`protobuf_to_json`);
//! - what the writer accepts, the reader reads back to the same request: `json_to_protobuf`
//!   of the JSON equals prost's canonical re-encoding of the input (unknown fields dropped),
//!   byte for byte. A NaN with a payload comes back as the canonical NaN, so for JSON with a
//!   `"NaN"` the check is that the read-back request and the canonical input write the same
//!   JSON. (Canonical = through prost, which also drops a `-0.0` that the writer keeps.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_fuzz::{json_signal, prost_canonical, split_signal};
use sightline_otlp_json::{json_to_protobuf, protobuf_to_json};

fuzz_target!(|data: &[u8]| {
    let Some((signal, proto)) = split_signal(data) else { return };
    let js = json_signal(signal);
    let Ok(json) = protobuf_to_json(js, proto) else { return };
    let canonical = prost_canonical(signal, proto, false).expect("prost decodes what the JSON writer accepted");
    let back = json_to_protobuf(js, &json).unwrap_or_else(|e| {
        panic!("the JSON reader refuses the JSON writer's output: {e}\n{}", String::from_utf8_lossy(&json))
    });
    let text = String::from_utf8_lossy(&json);
    if text.contains("\"NaN\"") {
        let again = protobuf_to_json(js, &back).expect("the JSON writer accepts the read-back request");
        let expected = protobuf_to_json(js, &canonical).expect("the JSON writer accepts the canonical input");
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&expected),
            "protobuf -> JSON -> protobuf changed the request"
        );
    } else {
        assert_eq!(back, canonical, "protobuf -> JSON -> protobuf changed the request: {text}");
    }
});

//! Redaction of whole log requests (`sightline_policy::redact`), structured bodies included:
//! for any request prost decodes, observe mode changes nothing; enforce mode (mask, hash, drop;
//! the first input byte picks) never panics and its output still encodes and decodes as an
//! OTLP request; after masking, a second pass finds no detector match (what is left is masked
//! text or a blocked key's stars).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;
use sightline_policy::Kind;
use sightline_policy::redact::{Action, Apply, Redactor, Rule};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(original) = ExportLogsServiceRequest::decode(rest) else { return };
    let action = match mode % 3 {
        0 => Action::Mask,
        1 => Action::Hash(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"fuzz")),
        _ => Action::Drop,
    };
    let masking = matches!(action, Action::Mask);
    let r = Redactor::new(&Kind::ALL, &["(?i)^(password|secret)$".into()], &["^safe$".into()], action)
        .expect("valid patterns");
    let mut observed = original.clone();
    let mut seen = 0u64;
    assert!(!sightline_policy::each(
        &mut observed.resource_logs,
        |x| x.resource.as_ref(),
        |_| Apply::Observe,
        |rl, a| r.resource_logs(rl, a),
        |_, f| seen += f.total()
    ));
    assert_eq!(observed, original);
    let mut enforced = original.clone();
    let mut again = 0u64;
    sightline_policy::each(
        &mut enforced.resource_logs,
        |x| x.resource.as_ref(),
        |_| Apply::Enforce,
        |rl, a| r.resource_logs(rl, a),
        |_, f| again += f.total(),
    );
    assert_eq!(seen, again, "observe and enforce count the same findings");
    let bytes = enforced.encode_to_vec();
    let back = ExportLogsServiceRequest::decode(&bytes[..]).expect("the output is OTLP");
    assert_eq!(back, enforced);
    if masking {
        let mut second = enforced.clone();
        let mut detected = 0u64;
        sightline_policy::each(
            &mut second.resource_logs,
            |x| x.resource.as_ref(),
            |_| Apply::Observe,
            |rl, a| r.resource_logs(rl, a),
            |_, f| {
                detected += f.total() - f.get(Rule::BlockedKey);
            },
        );
        assert_eq!(detected, 0, "masked text holds nothing a detector finds");
    }
});

//! The `file` exporter on a real temporary directory.

mod common;

use common::{batch, payload};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use sightline_core::Signal;
use sightline_exporters::{FileConfig, FileFormat, RotationConfig, build_file};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn json_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().map(str::to_string).collect()
}

fn decode_logs(line: &str) -> ExportLogsServiceRequest {
    let proto =
        sightline_otlp_json::json_to_protobuf(sightline_otlp_json::Signal::Logs, line.as_bytes()).expect("json");
    ExportLogsServiceRequest::decode(&proto[..]).expect("protobuf")
}

/// Each batch is one line of OTLP/JSON that converts back to the batch's merged request;
/// missing directories are created; the file is truncated at start unless `append`.
#[tokio::test]
async fn writes_one_json_line_per_batch() {
    let dir = common::temp_dir("file-json");
    let path = dir.join("nested/deeper/traces.json");
    let a = common::traces("checkout", 2, 1);
    let b = common::traces("payments", 1, 2);
    let mut union = a.clone();
    union.resource_spans.extend(b.resource_spans.clone());

    let cfg = FileConfig::new(&path);
    let (sender, _) = build_file("file/t", Signal::Traces, &cfg).expect("build");
    sender.send(&batch([payload(Signal::Traces, &a, 2), payload(Signal::Traces, &b, 1)])).await.expect("write");
    sender.send(&batch([payload(Signal::Traces, &b, 1)])).await.expect("write");
    let lines = json_lines(&path);
    assert_eq!(lines.len(), 2);
    let decode = |line: &str| {
        let proto =
            sightline_otlp_json::json_to_protobuf(sightline_otlp_json::Signal::Traces, line.as_bytes()).expect("json");
        ExportTraceServiceRequest::decode(&proto[..]).expect("protobuf")
    };
    assert_eq!(decode(&lines[0]), union);
    assert_eq!(decode(&lines[1]), b);
    drop(sender);

    // Restart with append: the old lines stay.
    let mut cfg = FileConfig::new(&path);
    cfg.append = true;
    let (sender, _) = build_file("file/t", Signal::Traces, &cfg).expect("build");
    sender.send(&batch([payload(Signal::Traces, &a, 2)])).await.expect("write");
    assert_eq!(json_lines(&path).len(), 3);
    drop(sender);

    // Restart without: truncated.
    let (sender, _) = build_file("file/t", Signal::Traces, &FileConfig::new(&path)).expect("build");
    sender.send(&batch([payload(Signal::Traces, &a, 2)])).await.expect("write");
    assert_eq!(json_lines(&path).len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("logs-")))
        .collect();
    v.sort();
    v
}

/// Rotation: a file never grows past `max_megabytes` (each line here is ~300 KiB, so every
/// fourth line starts a new file), rotated files are named `logs-<UTC time>.json`, only
/// `max_backups` of them are kept, and every line in every file is a complete request.
#[tokio::test]
async fn rotates_at_the_size_limit() {
    let dir = common::temp_dir("file-rotate");
    let path = dir.join("logs.json");
    let mut cfg = FileConfig::new(&path);
    cfg.rotation = Some(RotationConfig { max_megabytes: 1, max_backups: 2, max_days: 0 });
    let (sender, _) = build_file("file/r", Signal::Logs, &cfg).expect("build");
    let big = common::logs("svc", 3, 100 * 1024);
    let one = payload(Signal::Logs, &big, 3);

    let mut written = 0;
    let limit = 1024 * 1024;
    // Until the first rotation.
    while backups(&dir).is_empty() {
        sender.send(&batch([one.clone()])).await.expect("write");
        written += 1;
        assert!(written < 10, "no rotation after {written} lines");
    }
    let first = backups(&dir);
    let name = first[0].file_name().expect("name").to_string_lossy().into_owned();
    // logs-2006-01-02T15-04-05.000.json
    assert_eq!(name.len(), "logs-2006-01-02T15-04-05.000.json".len(), "{name}");
    assert!(name.ends_with(".json") && name.as_bytes()[15] == b'T', "{name}");
    let rotated_lines = json_lines(&first[0]);
    assert_eq!(rotated_lines.len() + json_lines(&path).len(), written);
    assert!(std::fs::metadata(&first[0]).expect("size").len() <= limit);
    for line in &rotated_lines {
        assert_eq!(decode_logs(line), big);
    }

    // Many more rotations: only two backups stay, none over the limit.
    for _ in 0..4 * written {
        sender.send(&batch([one.clone()])).await.expect("write");
    }
    let kept = backups(&dir);
    assert_eq!(kept.len(), 2, "{kept:?}");
    for p in kept.iter().chain([&path]) {
        assert!(std::fs::metadata(p).expect("size").len() <= limit, "{p:?}");
        for line in json_lines(p) {
            assert_eq!(decode_logs(&line), big);
        }
    }
    assert!(!kept.contains(&first[0]), "the oldest backup was removed");
    let _ = std::fs::remove_dir_all(dir);
}

/// `format: proto`: each batch is its length (4 bytes, big-endian) and its protobuf bytes.
/// With `flush_interval` writes are buffered and flushed at the latest when the sender goes.
#[tokio::test]
async fn writes_length_prefixed_protobuf() {
    let dir = common::temp_dir("file-proto");
    let path = dir.join("out.pb");
    let mut cfg = FileConfig::new(&path);
    cfg.format = FileFormat::Proto;
    cfg.flush_interval = Some(Duration::from_secs(3600));
    let (sender, _) = build_file("file/p", Signal::Logs, &cfg).expect("build");
    let a = common::logs("a", 2, 5);
    let b = common::logs("b", 1, 5);
    let mut union = a.clone();
    union.resource_logs.extend(b.resource_logs.clone());
    sender.send(&batch([payload(Signal::Logs, &a, 2), payload(Signal::Logs, &b, 1)])).await.expect("write");
    sender.send(&batch([payload(Signal::Logs, &b, 1)])).await.expect("write");
    drop(sender);
    let data = std::fs::read(&path).expect("read");
    let mut records = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("prefix")) as usize;
        records.push(ExportLogsServiceRequest::decode(&rest[4..4 + len]).expect("protobuf"));
        rest = &rest[4 + len..];
    }
    assert_eq!(records, [union, b]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A path that cannot be created fails the build with the key `path`.
#[tokio::test]
async fn unwritable_path_fails_the_build() {
    let dir = common::temp_dir("file-bad");
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    let err = build_file("file/x", Signal::Logs, &FileConfig::new(blocker.join("out.json"))).err().expect("fails");
    assert_eq!(err.key(), "path");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_from_yaml() {
    let cfg: FileConfig =
        serde_yaml_ng::from_str("path: /tmp/x.json\nrotation: {max_megabytes: 10}\nflush_interval: 1s\n")
            .expect("valid");
    assert_eq!(cfg.rotation, Some(RotationConfig { max_megabytes: 10, max_days: 0, max_backups: 100 }));
    assert_eq!(cfg.format, FileFormat::Json);
    assert!(cfg.validate().is_empty());
    let err = serde_yaml_ng::from_str::<FileConfig>("path: /tmp/x\nformat: csv\n").expect_err("unknown format");
    assert!(err.to_string().contains("csv"), "{err}");
}

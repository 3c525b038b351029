use super::*;
use crate::store::{civil, team_dir};
use arrow_array::cast::AsArray;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use prost::Message;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sightline-parquet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            if e.file_type().expect("type").is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn noise() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0..4u64).map(|k| format!("{:016x}", (n * 4 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
}

fn request(teams: &[Option<&str>], spans_each: usize) -> Bytes {
    let resource_spans = teams
        .iter()
        .map(|t| {
            let mut attributes = vec![KeyValue {
                key: "service.name".into(),
                value: Some(Any { value: Some(V::StringValue("svc".into())) }),
                ..Default::default()
            }];
            if let Some(t) = t {
                attributes.push(KeyValue {
                    key: "owner.team".into(),
                    value: Some(Any { value: Some(V::StringValue(t.to_string())) }),
                    ..Default::default()
                });
            }
            let spans = (0..spans_each)
                .map(|i| Span {
                    // Distinct, poorly compressible text, so that sizes grow as in real data.
                    attributes: vec![KeyValue {
                        key: "noise".into(),
                        value: Some(Any { value: Some(V::StringValue(noise())) }),
                        ..Default::default()
                    }],
                    trace_id: vec![1; 16],
                    span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                    name: format!("s{i}"),
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 2,
                    ..Default::default()
                })
                .collect();
            ResourceSpans {
                resource: Some(Resource { attributes, ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }
        })
        .collect();
    Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec())
}

fn write(store: &mut Store, enc: &mut Encoder, req: Bytes) {
    for Encoded { table, runs, rows } in encode_batch(enc, Signal::Traces, &[req], "owner.team").expect("encode") {
        for (team, offset, len) in runs {
            store.write(table, team.as_deref(), &rows.slice(offset, len)).expect("write");
        }
    }
}

fn read_names(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet").build().expect("reader");
    let mut out = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let names = b.column_by_name("name").expect("name").as_string::<i32>();
        out.extend((0..b.num_rows()).map(|i| names.value(i).to_string()));
    }
    out
}

#[test]
fn teams_go_to_their_partitions_and_files_appear_only_when_complete() {
    let root = temp_dir("partitions");
    let cfg = ParquetConfig::new(&root);
    let mut store = Store::open(&cfg).expect("store");
    let mut enc = Encoder::new(&[], &[]);
    write(&mut store, &mut enc, request(&[Some("payments"), None, Some("a/b"), Some("payments")], 3));
    assert_eq!(store.open_files(), 3, "one file per team (payments twice in the request)");
    let before = files(&root);
    assert!(
        before.iter().all(|p| p.extension().is_some_and(|e| e == "tmp")),
        "nothing is in the store yet: {before:?}"
    );
    store.close_all().expect("close");
    let done = store.take_completed();
    assert_eq!(done.iter().map(|c| c.rows).sum::<u64>(), 12);
    let after = files(&root);
    assert_eq!(after.len(), 3, "{after:?}");
    let (date, hour) =
        civil(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs());
    let mut teams = Vec::new();
    for p in &after {
        let rel = p.strip_prefix(&root).expect("under root");
        let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        assert_eq!(parts[0], "signal=spans");
        assert_eq!(parts[1], format!("date={date}"));
        assert_eq!(parts[2], format!("hour={hour:02}"));
        assert!(parts[4].starts_with("part-") && parts[4].ends_with(".parquet"), "{rel:?}");
        teams.push((parts[3].clone(), read_names(p).len()));
    }
    teams.sort();
    assert_eq!(
        teams,
        [
            ("owner_team=__HIVE_DEFAULT_PARTITION__".to_string(), 3),
            ("owner_team=a%2Fb".to_string(), 3),
            ("owner_team=payments".to_string(), 6)
        ]
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn files_rotate_by_size_and_count_and_leftovers_of_a_crash_are_removed() {
    let root = temp_dir("rotate");
    // What a kill -9 leaves: a hidden temporary file.
    let crashed = root.join("signal=spans/date=2026-01-01/hour=00/owner_team=x");
    std::fs::create_dir_all(&crashed).expect("dir");
    std::fs::write(crashed.join(".part-1-1-1.parquet.tmp"), b"PAR1 partial").expect("tmp");
    let mut cfg = ParquetConfig::new(&root);
    cfg.rotation.max_megabytes = 1;
    cfg.row_group_megabytes = 1;
    cfg.max_open_files = 2;
    let mut store = Store::open(&cfg).expect("store");
    assert!(files(&root).is_empty(), "the temporary file of the crash is gone");
    let mut enc = Encoder::new(&[], &[]);
    // Three teams with two open files at most: the oldest is completed to open the third.
    write(&mut store, &mut enc, request(&[Some("a"), Some("b"), Some("c")], 10));
    assert_eq!(store.open_files(), 2);
    assert_eq!(store.take_completed().len(), 1);
    // Enough rows to pass 1 MiB in one file: it is completed by size.
    for _ in 0..40 {
        write(&mut store, &mut enc, request(&[Some("c")], 2000));
    }
    let done = store.take_completed();
    assert!(!done.is_empty(), "a file past max_megabytes is completed");
    assert!(done.iter().all(|c| c.bytes >= 1 << 20 && c.rows > 0), "{done:?}");
    drop(store);
    let all = files(&root);
    assert!(
        all.iter().all(|p| p.extension().is_some_and(|e| e == "parquet")),
        "dropping the store completes every file"
    );
    let rows: usize = all.iter().map(|p| read_names(p).len()).sum();
    assert_eq!(rows, 30 + 40 * 2000);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn team_directory_names_are_safe() {
    assert_eq!(team_dir(Some("payments")), "payments");
    assert_eq!(team_dir(Some("a b/c")), "a%20b%2Fc");
    assert_eq!(team_dir(Some("..")), "%2E.");
    assert_eq!(team_dir(None), "__HIVE_DEFAULT_PARTITION__");
    assert_eq!(civil(0), ("1970-01-01".to_string(), 0));
    assert_eq!(civil(1_780_000_000), ("2026-05-28".to_string(), 20));
    assert_eq!(civil(951_782_400 + 3 * 3600), ("2000-02-29".to_string(), 3));
}

#[test]
fn config_checks_name_the_key() {
    let mut cfg = ParquetConfig::new("/tmp/x");
    cfg.attribute_columns.spans = vec!["name".into(), "a.b".into(), "a_b".into()];
    cfg.compression_level = 30;
    let keys: Vec<String> = cfg.validate().into_iter().map(|(k, m)| format!("{k}: {m}")).collect();
    assert_eq!(
        keys,
        [
            "compression_level: zstd levels are 1 to 22",
            "attribute_columns.spans: \"name\" would be column \"name\", which the table already has",
            "attribute_columns.spans: \"a_b\" and \"a.b\" would both be column \"a_b\"",
        ]
    );
    let yaml = "path: /tmp/x\nrotation: { max_age: 30s }\nfoo: 1\n";
    let err = serde_yaml_ng::from_str::<ParquetConfig>(yaml).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("unknown field `foo`"), "{err}");
}

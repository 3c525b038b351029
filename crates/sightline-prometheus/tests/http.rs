//! The HTTP side against a tiny local remote-write server (axum): the protocol headers and
//! snappy body, the retry classification (400 is not retried, 503 and 429 are, with
//! `Retry-After`), and a retried batch resuming where it stopped.

mod common;

use common::*;
use sightline_core::{Registry, RetryConfig, Signal, driver};
use sightline_prometheus::{PrometheusRemoteWriteConfig, build_prometheusremotewrite};
use std::time::Duration;

fn config(url: &str) -> PrometheusRemoteWriteConfig {
    let mut cfg = PrometheusRemoteWriteConfig::new(url);
    cfg.sending_queue.num_consumers = 1;
    cfg.target_info.enabled = false;
    cfg.headers.insert("X-Scope-OrgID".into(), "tenant-a".into());
    cfg
}

#[tokio::test]
async fn headers_body_and_classification() {
    let (url, script) =
        scripted_server::<WriteRequest>(vec![Answer::status(400), Answer::retry_after(503, "7"), Answer::status(429)])
            .await;
    let registry = Registry::new();
    let (sender, dcfg) =
        build_prometheusremotewrite("prometheusremotewrite", Signal::Metrics, &config(&url), &registry).expect("build");
    assert_eq!(dcfg.queue.num_consumers, 1, "the driver runs one consumer; the sender shards");
    let b = counter_batch(3);
    let e = sender.send(&b).await.expect_err("400");
    assert!(!e.retryable, "400 is permanent");
    assert!(e.message.contains("script says 400"), "the backend's message: {}", e.message);
    let b = counter_batch(3);
    let e = sender.send(&b).await.expect_err("503");
    assert!(e.retryable);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    let e = sender.send(&b).await.expect_err("429");
    assert!(e.retryable);
    sender.send(&b).await.expect("204");
    let s = script.lock().expect("lock");
    assert_eq!(s.received.len(), 4);
    let (h, w) = &s.received[3];
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert!(h["user-agent"].to_str().expect("ascii").starts_with("sightline/"));
    assert_eq!(h["x-scope-orgid"], "tenant-a");
    assert_eq!(w.timeseries.len(), 3);
}

/// Through the driver: a 400 is given up at once, a 503 is retried until it succeeds, and a
/// retry resends only the requests that were not delivered.
#[tokio::test]
async fn driver_retries_only_retryable_and_resumes() {
    let (url, script) = scripted_server::<WriteRequest>(vec![Answer::status(204), Answer::status(503)]).await;
    let registry = Registry::new();
    let mut cfg = config(&url);
    cfg.max_samples_per_send = 2; // 5 series -> 3 requests on one shard
    cfg.retry_on_failure = RetryConfig {
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(20),
        ..RetryConfig::default()
    };
    let (sender, dcfg) = build_prometheusremotewrite("prw", Signal::Metrics, &cfg, &registry).expect("build");
    let d = driver::spawn("prw", Signal::Metrics, dcfg, sender, &registry);
    let b = counter_batch(5);
    d.handle.enqueue(b.payloads[0].clone()).await;
    let sent = || registry.value("otelcol_exporter_sent_metric_points", &[("exporter", "prw")]).unwrap_or(0);
    for _ in 0..500 {
        if sent() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sent(), 5);
    {
        let s = script.lock().expect("lock");
        // 1st ok, 2nd 503, then the 2nd again and the 3rd: the 1st is not resent.
        assert_eq!(s.received.len(), 4);
        assert_eq!(s.received[1].1, s.received[2].1, "the failed request is the one resent");
        let total: usize = s.received.iter().map(|(_, w)| w.timeseries.len()).sum();
        assert_eq!(total, 5 + 2);
    }

    // A 400 is not retried.
    script.lock().expect("lock").answers =
        vec![Answer::status(204); 4].into_iter().chain([Answer::status(400)]).collect();
    let b = counter_batch(1);
    d.handle.enqueue(b.payloads[0].clone()).await;
    let failed = || registry.value("otelcol_exporter_send_failed_metric_points", &[("exporter", "prw")]).unwrap_or(0);
    for _ in 0..500 {
        if failed() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failed(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(script.lock().expect("lock").received.len(), 5, "not retried");
    registry.assert_compliant();
}

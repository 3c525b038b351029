//! Realistic OTLP export requests, built with the `opentelemetry-proto` prost types.
//!
//! A request holds `items` spans / log records / metric data points spread evenly over its
//! resources, two instrumentation scopes per resource. Every resource carries the attributes
//! an OpenTelemetry SDK on Kubernetes sends (about 20, ~600 bytes encoded), including a
//! fixed-width `service.instance.id` that the cold-cache benchmark rewrites in place (see
//! [`instance_id_offsets`]) to make every resource new.
//!
//! Item sizes, encoded (the exact figures are printed by the benchmark):
//! - [`Size::Small`]: spans and log records of ~250 bytes (a handful of attributes); metric
//!   points are sums and gauges (~100 bytes);
//! - [`Size::Large`]: spans and log records of ~1.7 KB (two dozen attributes, long values such
//!   as SQL statements, user agents and stack traces, events, links); metric points are
//!   histograms with exemplars.

use crate::Rng;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyV;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use sightline_core::Signal;

/// Resources per request in the benchmarks.
pub const RESOURCES: usize = 5;
/// Items (spans, log records, data points) per request in the benchmarks.
pub const ITEMS: usize = 500;
/// Instrumentation scopes per resource.
pub const SCOPES: usize = 2;

/// Item size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    pub fn as_str(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// Who a resource is: what the ownership catalog matches on.
#[derive(Clone, Debug)]
pub struct Identity {
    pub service: String,
    pub namespace: String,
}

/// The prefix of every resource's `service.instance.id`, followed by [`INSTANCE_DIGITS`] hex
/// digits.
pub const INSTANCE_PREFIX: &[u8] = b"sl-instance-";
pub const INSTANCE_DIGITS: usize = 16;

fn kv(key: &str, value: AnyV) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}
fn s(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, AnyV::StringValue(value.into()))
}
fn i(key: &str, value: i64) -> KeyValue {
    kv(key, AnyV::IntValue(value))
}
fn d(key: &str, value: f64) -> KeyValue {
    kv(key, AnyV::DoubleValue(value))
}
fn b(key: &str, value: bool) -> KeyValue {
    kv(key, AnyV::BoolValue(value))
}
fn strings(key: &str, values: &[&str]) -> KeyValue {
    let values =
        values.iter().map(|v| AnyValue { value: Some(AnyV::StringValue((*v).into())) }).collect::<Vec<AnyValue>>();
    kv(key, AnyV::ArrayValue(ArrayValue { values }))
}

const REGIONS: &[&str] = &["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1"];
const LANGUAGES: &[(&str, &str)] =
    &[("java", "1.42.1"), ("go", "1.33.0"), ("python", "1.29.0"), ("nodejs", "1.30.1"), ("rust", "0.28.0")];

/// The `Resource` of one identity.
pub fn resource(id: &Identity, index: usize, rng: &mut Rng) -> Resource {
    let (lang, sdk) = *rng.pick(LANGUAGES);
    let region = *rng.pick(REGIONS);
    let pod = format!("{}-{}-{}", id.service, rng.hex(10), rng.hex(5));
    let instance = format!("{}{:0width$x}", String::from_utf8_lossy(INSTANCE_PREFIX), index, width = INSTANCE_DIGITS);
    Resource {
        attributes: vec![
            s("service.name", &id.service),
            s("service.namespace", id.namespace.split('-').next().unwrap_or("default")),
            s("service.version", format!("1.{}.{}", rng.below(40), rng.below(20))),
            s("service.instance.id", instance),
            s("deployment.environment.name", "production"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", lang),
            s("telemetry.sdk.version", sdk),
            s(
                "host.name",
                format!("ip-10-{}-{}-{}.{region}.compute.internal", rng.below(256), rng.below(256), rng.below(256)),
            ),
            s("host.arch", "amd64"),
            s("os.type", "linux"),
            s("cloud.provider", "aws"),
            s("cloud.platform", "aws_eks"),
            s("cloud.region", region),
            s("cloud.availability_zone", format!("{region}{}", ["a", "b", "c"][rng.below(3) as usize])),
            s("k8s.cluster.name", format!("prod-{region}")),
            s("k8s.namespace.name", &id.namespace),
            s("k8s.deployment.name", &id.service),
            s("k8s.pod.name", pod),
            s("k8s.node.name", format!("ip-10-0-{}-{}.ec2.internal", rng.below(256), rng.below(256))),
            i("process.pid", 1 + rng.below(65535) as i64),
            s("process.runtime.name", lang),
        ],
        ..Default::default()
    }
}

fn scope(signal: Signal, k: usize) -> InstrumentationScope {
    let names: [&str; SCOPES] = match signal {
        Signal::Traces => ["io.opentelemetry.http-server", "io.opentelemetry.jdbc"],
        Signal::Logs => ["com.acme.orders.OrderService", "io.opentelemetry.log-appender"],
        Signal::Metrics => ["io.opentelemetry.http-server", "io.opentelemetry.runtime-metrics"],
    };
    InstrumentationScope { name: names[k % SCOPES].into(), version: "2.11.0".into(), ..Default::default() }
}

/// `items` split over `parts` as evenly as possible.
fn split(items: usize, parts: usize, k: usize) -> usize {
    items / parts + usize::from(k < items % parts)
}

const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const ROUTES: &[&str] = &[
    "/api/v1/orders/{id}",
    "/api/v1/orders",
    "/api/v2/carts/{cart_id}/items",
    "/api/v1/users/{id}/preferences",
    "/healthz",
    "/api/v1/payments/{id}/capture",
    "/graphql",
    "/api/v3/search",
];
const STATUS: &[i64] = &[200, 200, 200, 200, 201, 204, 304, 400, 404, 500, 503];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
];
const STATEMENTS: &[&str] = &[
    "SELECT o.id, o.customer_id, o.status, o.total_amount, o.currency, o.created_at, o.updated_at, li.sku, li.quantity, li.unit_price FROM orders o JOIN line_items li ON li.order_id = o.id WHERE o.customer_id = ? AND o.created_at > ? ORDER BY o.created_at DESC LIMIT 50",
    "UPDATE inventory SET reserved = reserved + ?, updated_at = now() WHERE sku = ? AND warehouse_id = ? AND available - reserved >= ? RETURNING id, available, reserved, version",
    "INSERT INTO payment_attempts (id, order_id, provider, amount, currency, status, idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, now()) ON CONFLICT (idempotency_key) DO NOTHING",
];
const STACK: &str = "java.net.SocketTimeoutException: Read timed out\n\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)\n\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:314)\n\tat java.base/java.net.Socket$SocketInputStream.read(Socket.java:1099)\n\tat okhttp3.internal.http1.Http1ExchangeCodec.readResponseHeaders(Http1ExchangeCodec.kt:180)\n\tat com.acme.orders.client.PaymentClient.capture(PaymentClient.java:87)\n\tat com.acme.orders.OrderService.checkout(OrderService.java:214)\n\tat com.acme.orders.OrderController.handle(OrderController.java:61)\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)\n\tat jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)\n\tat org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)\n\tat java.base/java.lang.Thread.run(Thread.java:1583)";

fn span(size: Size, rng: &mut Rng, start: u64) -> Span {
    let method = *rng.pick(METHODS);
    let route = *rng.pick(ROUTES);
    let status = *rng.pick(STATUS);
    let dur = 200_000 + rng.below(80_000_000);
    let mut attributes = vec![
        s("http.request.method", method),
        s("http.route", route),
        i("http.response.status_code", status),
        s("server.address", "orders.internal"),
        s("url.scheme", "https"),
    ];
    let mut events = Vec::new();
    let mut links = Vec::new();
    if size == Size::Large {
        let id = rng.below(10_000_000);
        attributes.extend([
            s(
                "url.full",
                format!(
                    "https://orders.internal{}?customer={id}&expand=line_items,payments&locale=en-GB&page={}",
                    route.replace("{id}", &id.to_string()),
                    rng.below(20)
                ),
            ),
            s("user_agent.original", *rng.pick(AGENTS)),
            s("client.address", format!("192.168.{}.{}", rng.below(256), rng.below(256))),
            i("client.port", 30_000 + rng.below(30_000) as i64),
            s("network.protocol.name", "http"),
            s("network.protocol.version", "1.1"),
            i("http.request.body.size", rng.below(20_000) as i64),
            i("http.response.body.size", rng.below(200_000) as i64),
            s("db.system", "postgresql"),
            s("db.query.text", *rng.pick(STATEMENTS)),
            s("db.operation.name", ["SELECT", "UPDATE", "INSERT"][rng.below(3) as usize]),
            s("thread.name", format!("http-nio-8080-exec-{}", rng.below(200))),
            i("thread.id", rng.below(10_000) as i64),
            s("code.function.name", "com.acme.orders.OrderController.handle"),
            i("code.line.number", rng.below(900) as i64),
            s("enduser.id", format!("user-{}", rng.hex(12))),
            b("cache.hit", rng.below(2) == 0),
            d("app.cart.value", rng.below(100_000) as f64 / 100.0),
            strings("app.feature_flags", &["new-checkout", "fast-search", "eu-pricing"]),
        ]);
        events.push(Event {
            time_unix_nano: start + dur / 3,
            name: "cache.lookup".into(),
            attributes: vec![s("cache.key", format!("order:{id}")), b("cache.hit", false)],
            ..Default::default()
        });
        events.push(Event {
            time_unix_nano: start + dur / 2,
            name: "exception".into(),
            attributes: vec![
                s("exception.type", "java.net.SocketTimeoutException"),
                s("exception.message", "Read timed out"),
                s("exception.stacktrace", &STACK[..150 + rng.below(100) as usize]),
            ],
            ..Default::default()
        });
        links.push(Link {
            trace_id: rng.bytes(16),
            span_id: rng.bytes(8),
            attributes: vec![s("messaging.operation.type", "process")],
            ..Default::default()
        });
    }
    Span {
        trace_id: rng.bytes(16),
        span_id: rng.bytes(8),
        parent_span_id: if rng.below(5) == 0 { vec![] } else { rng.bytes(8) },
        flags: 0x101,
        name: format!("{method} {route}"),
        kind: if rng.below(3) == 0 { 3 } else { 2 },
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur,
        attributes,
        events,
        links,
        status: Some(Status { code: if status >= 500 { 2 } else { 0 }, message: String::new() }),
        ..Default::default()
    }
}

const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// An `ExportTraceServiceRequest` with `items` spans over `ids.len()` resources.
pub fn traces(ids: &[Identity], items: usize, size: Size, seed: u64) -> ExportTraceServiceRequest {
    let mut rng = Rng::new(seed);
    let resource_spans = ids
        .iter()
        .enumerate()
        .map(|(r, id)| {
            let n = split(items, ids.len(), r);
            ResourceSpans {
                resource: Some(resource(id, r, &mut rng)),
                scope_spans: (0..SCOPES)
                    .map(|k| ScopeSpans {
                        scope: Some(scope(Signal::Traces, k)),
                        spans: (0..split(n, SCOPES, k))
                            .map(|j| span(size, &mut rng, T0 + (j as u64) * 1_000_003))
                            .collect(),
                        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    })
                    .collect(),
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

const LOGGERS: &[&str] =
    &["com.acme.orders.OrderService", "com.acme.orders.PaymentClient", "org.hibernate.SQL", "io.grpc.netty"];

fn log_record(size: Size, rng: &mut Rng, t: u64) -> LogRecord {
    let sev = *rng.pick(&[(9, "INFO"), (9, "INFO"), (5, "DEBUG"), (13, "WARN"), (17, "ERROR")]);
    let order = rng.below(10_000_000);
    let body = match size {
        Size::Small => format!(
            "order {order} checkout completed in {} ms (items={}, total={}.{:02} EUR)",
            rng.below(900),
            1 + rng.below(9),
            rng.below(500),
            rng.below(100)
        ),
        Size::Large => format!(
            "payment capture failed for order {order} after {} attempts; customer={} provider=adyen amount={}.{:02} EUR; falling back to retry queue\n{}",
            1 + rng.below(3),
            rng.hex(12),
            rng.below(500),
            rng.below(100),
            &STACK[..600 + rng.below(250) as usize]
        ),
    };
    let mut attributes = vec![
        s("log.logger", *rng.pick(LOGGERS)),
        s("thread.name", format!("http-nio-8080-exec-{}", rng.below(200))),
        i("order.id", order as i64),
    ];
    if size == Size::Large {
        attributes.extend([
            s("code.function.name", "com.acme.orders.OrderService.checkout"),
            s("code.file.path", "src/main/java/com/acme/orders/OrderService.java"),
            i("code.line.number", rng.below(900) as i64),
            s("exception.type", "java.net.SocketTimeoutException"),
            s("exception.message", "Read timed out"),
            s("enduser.id", format!("user-{}", rng.hex(12))),
            s("session.id", rng.hex(32)),
            s("http.route", *rng.pick(ROUTES)),
            s("http.request.method", *rng.pick(METHODS)),
            s("payment.provider", "adyen"),
            i("payment.attempt", 1 + rng.below(3) as i64),
            s("log.file.path", "/var/log/orders/application.log"),
            s("log.iostream", "stdout"),
            s("k8s.container.name", "orders"),
            s("messaging.destination.name", "payments.retry"),
        ]);
    }
    LogRecord {
        time_unix_nano: t,
        observed_time_unix_nano: t + 1_500_000 + rng.below(1_000_000),
        severity_number: sev.0,
        severity_text: sev.1.into(),
        body: Some(AnyValue { value: Some(AnyV::StringValue(body)) }),
        attributes,
        flags: 1,
        trace_id: rng.bytes(16),
        span_id: rng.bytes(8),
        ..Default::default()
    }
}

/// An `ExportLogsServiceRequest` with `items` log records over `ids.len()` resources.
pub fn logs(ids: &[Identity], items: usize, size: Size, seed: u64) -> ExportLogsServiceRequest {
    let mut rng = Rng::new(seed);
    let resource_logs = ids
        .iter()
        .enumerate()
        .map(|(r, id)| {
            let n = split(items, ids.len(), r);
            ResourceLogs {
                resource: Some(resource(id, r, &mut rng)),
                scope_logs: (0..SCOPES)
                    .map(|k| ScopeLogs {
                        scope: Some(scope(Signal::Logs, k)),
                        log_records: (0..split(n, SCOPES, k))
                            .map(|j| log_record(size, &mut rng, T0 + (j as u64) * 7_000_001))
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            }
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

/// Data points per metric.
const POINTS_PER_METRIC: usize = 5;
const BOUNDS: &[f64] =
    &[0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0];

fn point_attributes(size: Size, rng: &mut Rng) -> Vec<KeyValue> {
    let mut a = vec![
        s("http.request.method", *rng.pick(METHODS)),
        s("http.route", *rng.pick(ROUTES)),
        i("http.response.status_code", *rng.pick(STATUS)),
    ];
    if size == Size::Large {
        a.extend([
            s("server.address", "orders.internal"),
            s("network.protocol.version", "1.1"),
            s("url.scheme", "https"),
        ]);
    }
    a
}

fn metric(size: Size, rng: &mut Rng, m: usize, points: usize) -> Metric {
    let start = T0 - 3_600_000_000_000;
    let data = match (size, m % 2) {
        (Size::Small, 0) => metric::Data::Sum(Sum {
            data_points: (0..points)
                .map(|_| NumberDataPoint {
                    attributes: point_attributes(size, rng),
                    start_time_unix_nano: start,
                    time_unix_nano: T0,
                    value: Some(number_data_point::Value::AsInt(rng.below(1_000_000) as i64)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
            is_monotonic: true,
        }),
        (Size::Small, _) => metric::Data::Gauge(Gauge {
            data_points: (0..points)
                .map(|_| NumberDataPoint {
                    attributes: point_attributes(size, rng),
                    time_unix_nano: T0,
                    value: Some(number_data_point::Value::AsDouble(rng.below(1_000_000) as f64 / 7.0)),
                    ..Default::default()
                })
                .collect(),
        }),
        (Size::Large, _) => metric::Data::Histogram(Histogram {
            data_points: (0..points)
                .map(|_| {
                    let counts: Vec<u64> = (0..=BOUNDS.len()).map(|_| rng.below(5_000)).collect();
                    HistogramDataPoint {
                        attributes: point_attributes(size, rng),
                        start_time_unix_nano: start,
                        time_unix_nano: T0,
                        count: counts.iter().sum(),
                        sum: Some(rng.below(100_000_000) as f64 / 10.0),
                        bucket_counts: counts,
                        explicit_bounds: BOUNDS.to_vec(),
                        exemplars: (0..2)
                            .map(|_| Exemplar {
                                time_unix_nano: T0 - rng.below(60_000_000_000),
                                span_id: rng.bytes(8),
                                trace_id: rng.bytes(16),
                                value: Some(exemplar::Value::AsDouble(rng.below(10_000) as f64 / 3.0)),
                                ..Default::default()
                            })
                            .collect(),
                        min: Some(0.5),
                        max: Some(9_876.5),
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: 2,
        }),
    };
    let (name, unit, description) = match (size, m % 2) {
        (Size::Small, 0) => ("http.server.request.count", "{request}", "Number of HTTP server requests."),
        (Size::Small, _) => ("http.server.active_requests", "{request}", "Number of active HTTP server requests."),
        (Size::Large, _) => ("http.server.request.duration", "ms", "Duration of HTTP server requests."),
    };
    Metric {
        name: format!("{name}.{m}"),
        description: description.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// An `ExportMetricsServiceRequest` with `items` data points (five per metric) over
/// `ids.len()` resources.
pub fn metrics(ids: &[Identity], items: usize, size: Size, seed: u64) -> ExportMetricsServiceRequest {
    let mut rng = Rng::new(seed);
    let resource_metrics = ids
        .iter()
        .enumerate()
        .map(|(r, id)| {
            let n = split(items, ids.len(), r);
            ResourceMetrics {
                resource: Some(resource(id, r, &mut rng)),
                scope_metrics: (0..SCOPES)
                    .map(|k| {
                        let mut left = split(n, SCOPES, k);
                        let mut metrics = Vec::new();
                        while left > 0 {
                            let points = left.min(POINTS_PER_METRIC);
                            metrics.push(metric(size, &mut rng, metrics.len(), points));
                            left -= points;
                        }
                        ScopeMetrics { scope: Some(scope(Signal::Metrics, k)), metrics, schema_url: String::new() }
                    })
                    .collect(),
                schema_url: String::new(),
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// The protobuf encoding of a request of `signal` with `items` items over `ids.len()`
/// resources.
pub fn encoded(signal: Signal, ids: &[Identity], items: usize, size: Size, seed: u64) -> Vec<u8> {
    match signal {
        Signal::Traces => traces(ids, items, size, seed).encode_to_vec(),
        Signal::Logs => logs(ids, items, size, seed).encode_to_vec(),
        Signal::Metrics => metrics(ids, items, size, seed).encode_to_vec(),
    }
}

/// The offsets of the [`INSTANCE_DIGITS`] hex digits of every `service.instance.id` in an
/// encoded request (one per resource). Overwriting them with other hex digits keeps the
/// request valid and its length unchanged, and makes each resource one never seen before.
pub fn instance_id_offsets(buf: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = buf[from..].windows(INSTANCE_PREFIX.len()).position(|w| w == INSTANCE_PREFIX) {
        let at = from + p + INSTANCE_PREFIX.len();
        out.push(at);
        from = at + INSTANCE_DIGITS;
    }
    out
}

/// Writes `value` as [`INSTANCE_DIGITS`] hex digits at `at`.
pub fn write_instance_id(buf: &mut [u8], at: usize, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for k in 0..INSTANCE_DIGITS {
        buf[at + k] = DIGITS[((value >> (4 * (INSTANCE_DIGITS - 1 - k))) & 0xf) as usize];
    }
}

//! The corpus: realistic, varied OTLP export requests, pre-encoded as protobuf, plus the
//! ownership catalog that matches their services.
//!
//! Everything here is deterministic for a given seed and is done before any clock starts.
//! The organisation (teams, services, their resources) does not depend on the seed, so one
//! catalog file matches every corpus of the same `services`/`teams` sizes.

use crate::rng::Rng;
use crate::stamp::{StampOffsets, stamp_offsets};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;
use sightline_core::Signal;
use sightline_core::wire::len_field_size;
use std::collections::HashSet;
use std::fmt::Write as _;

/// How rich each item is. For traces: `small` ≈ 250 B per encoded span (a handful of
/// attributes, like the OpenTelemetry demo's "Hipster shop"), `large` ≈ 1.7 KB (many
/// attributes and a couple of events, like a production service). Logs and metrics scale
/// their attributes and bodies the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanSize {
    Small,
    Large,
}

impl SpanSize {
    /// The target encoded size of one span.
    pub fn target_span_bytes(self) -> usize {
        match self {
            SpanSize::Small => 250,
            SpanSize::Large => 1700,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanSize::Small => "small",
            SpanSize::Large => "large",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct CorpusConfig {
    pub signal: Signal,
    pub span_size: SpanSize,
    /// Spans, log records or metric data points per request (default 500).
    pub items_per_request: usize,
    /// Distinct requests (default 200); senders reuse them round-robin.
    pub requests: usize,
    /// Distinct `service.name`s (default 500).
    pub services: usize,
    /// Teams owning them (default 40).
    pub teams: usize,
    pub seed: u64,
    /// Base of the generated timestamps in UNIX nanoseconds (default: one hour ago, so that an
    /// unstamped item can never pass for a fresh stamp).
    pub base_time_unix_nano: Option<u64>,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig {
            signal: Signal::Traces,
            span_size: SpanSize::Small,
            items_per_request: 500,
            requests: 200,
            services: 500,
            teams: 40,
            seed: 1,
            base_time_unix_nano: None,
        }
    }
}

/// One pre-encoded export request.
#[derive(Clone, Debug)]
pub struct CorpusRequest {
    /// The encoded `Export{Trace,Metrics,Logs}ServiceRequest`.
    pub bytes: Bytes,
    /// Spans, log records or metric data points (what `wire::inspect` counts).
    pub items: u64,
    /// Where the latency stamp is.
    pub stamp: StampOffsets,
    /// For traces: the duration of the stamped span (end − start), kept when re-stamping.
    pub stamp_span_nanos: u64,
    /// Encoded size of the item messages alone (spans, log records; metrics for metrics),
    /// each with its field tag and length.
    pub item_bytes: u64,
    /// `Resource*` entries in the request.
    pub resources: u64,
}

impl CorpusRequest {
    /// Stamps `buf` (a copy of [`CorpusRequest::bytes`] starting at `base`, e.g. 5 after a
    /// gRPC frame header) with the send time `nanos`; for traces the first span's end time
    /// moves with it.
    #[inline]
    pub fn patch(&self, buf: &mut [u8], base: usize, nanos: u64) {
        crate::write_stamp(buf, base + self.stamp.stamp, nanos);
        if let Some(end) = self.stamp.end {
            crate::write_stamp(buf, base + end, nanos + self.stamp_span_nanos);
        }
    }
}

/// A generated corpus.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub signal: Signal,
    pub span_size: SpanSize,
    pub requests: Vec<CorpusRequest>,
    /// Distinct resources (service instances) the requests use.
    pub distinct_resources: usize,
}

impl Corpus {
    pub fn total_items(&self) -> u64 {
        self.requests.iter().map(|r| r.items).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.requests.iter().map(|r| r.bytes.len() as u64).sum()
    }

    /// Request bytes per item (resources and scopes included).
    pub fn avg_item_bytes(&self) -> f64 {
        self.total_bytes() as f64 / self.total_items().max(1) as f64
    }

    /// Bytes of the item messages alone per item.
    pub fn avg_item_message_bytes(&self) -> f64 {
        self.requests.iter().map(|r| r.item_bytes).sum::<u64>() as f64 / self.total_items().max(1) as f64
    }

    pub fn avg_request_bytes(&self) -> f64 {
        self.total_bytes() as f64 / self.requests.len().max(1) as f64
    }

    /// One line: what was generated and the measured sizes.
    pub fn summary(&self) -> String {
        let items = match self.signal {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        };
        let per_req = self.requests.first().map_or(0, |r| r.items);
        format!(
            "{} corpus ({}): {} requests x {} {items}, {} distinct resources; avg {:.0} B per item \
             ({:.0} B item messages alone), avg request {:.1} KiB, total {:.1} MiB",
            self.signal,
            self.span_size.as_str(),
            self.requests.len(),
            per_req,
            self.distinct_resources,
            self.avg_item_bytes(),
            self.avg_item_message_bytes(),
            self.avg_request_bytes() / 1024.0,
            self.total_bytes() as f64 / (1024.0 * 1024.0),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The organisation: teams, services, resources.

/// Team name, service-name prefix, system (`service.namespace`).
const TEAMS: [(&str, &str, &str); 40] = [
    ("payments", "pay", "payments-core"),
    ("payments-risk", "risk", "risk"),
    ("search", "search", "search-platform"),
    ("identity", "idp", "identity"),
    ("storefront", "web", "storefront"),
    ("catalog", "catalog", "catalog"),
    ("inventory", "inv", "supply-chain"),
    ("shipping", "ship", "logistics"),
    ("notifications", "notif", "messaging"),
    ("growth", "growth", "growth"),
    ("ads", "ads", "ads"),
    ("recommendations", "reco", "personalization"),
    ("data-platform", "data", "data-platform"),
    ("ml-platform", "ml", "ml-platform"),
    ("observability", "obs", "platform"),
    ("infra-core", "infra", "platform"),
    ("edge", "edge", "edge"),
    ("mobile-api", "mobile", "mobile"),
    ("messaging", "msg", "messaging"),
    ("billing", "bill", "billing"),
    ("customer-support", "support", "support"),
    ("partner-api", "partner", "partners"),
    ("pricing", "price", "commerce"),
    ("promotions", "promo", "commerce"),
    ("reviews", "review", "ugc"),
    ("media", "media", "media"),
    ("maps", "maps", "geo"),
    ("logistics", "logi", "logistics"),
    ("warehouse", "wh", "supply-chain"),
    ("accounts", "acct", "identity"),
    ("auth", "auth", "identity"),
    ("analytics", "analytics", "data-platform"),
    ("experimentation", "exp", "growth"),
    ("localization", "l10n", "storefront"),
    ("compliance", "comp", "governance"),
    ("ledger", "ledger", "ledger"),
    ("treasury", "treasury", "finance"),
    ("marketplace", "mkt", "marketplace"),
    ("sre", "sre", "platform"),
    ("cart", "cart", "storefront"),
];

/// Well-known service names (the OpenTelemetry demo's and the example catalog's) and their
/// teams.
const FAMOUS: [(&str, &str); 16] = [
    ("checkout", "payments"),
    ("payment-gateway", "payments"),
    ("refunds", "payments"),
    ("fraud-scoring", "payments-risk"),
    ("frontend", "storefront"),
    ("frontend-proxy", "edge"),
    ("cartservice", "cart"),
    ("productcatalogservice", "catalog"),
    ("currencyservice", "pricing"),
    ("emailservice", "notifications"),
    ("recommendationservice", "recommendations"),
    ("adservice", "ads"),
    ("shippingservice", "shipping"),
    ("quoteservice", "shipping"),
    ("accountingservice", "ledger"),
    ("featureflagservice", "experimentation"),
];

const COMPONENTS: [&str; 24] = [
    "api",
    "worker",
    "gateway",
    "scheduler",
    "consumer",
    "indexer",
    "db-proxy",
    "cache",
    "web",
    "grpc",
    "batch",
    "cron",
    "sync",
    "admin",
    "events",
    "reporter",
    "ingest",
    "router",
    "store",
    "notifier",
    "resolver",
    "exporter",
    "auth",
    "backend",
];

/// `telemetry.sdk.language`, `telemetry.sdk.version`, `process.runtime.name`,
/// `process.runtime.version`.
const LANGS: [(&str, &str, &str, &str); 6] = [
    ("java", "1.44.1", "OpenJDK Runtime Environment", "21.0.5+11-LTS"),
    ("go", "1.33.0", "go", "go1.23.4"),
    ("python", "1.29.0", "cpython", "3.12.8"),
    ("nodejs", "1.30.0", "nodejs", "v22.12.0"),
    ("dotnet", "1.10.0", ".NET", "8.0.11"),
    ("rust", "0.27.1", "rustc", "1.83.0"),
];

/// Instances (distinct resources) per service.
const INSTANCES: usize = 3;

const CLUSTERS: [(&str, &str, &str); 3] = [
    ("prod-eu-west-1", "eu-west-1", "eu-west-1b"),
    ("prod-us-east-1", "us-east-1", "us-east-1a"),
    ("prod-ap-south-1", "ap-south-1", "ap-south-1c"),
];

/// A team of the generated organisation.
#[derive(Clone, Debug)]
pub struct Team {
    pub name: String,
    /// Prefix of its generated service names (`pay` -> `pay-api-17`).
    pub prefix: String,
    pub system: String,
    pub k8s_namespace: String,
    pub contact: String,
    pub oncall: String,
    pub cost_center: String,
}

/// How the catalog assigns a service to its team.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// An exact `services:` entry.
    Listed,
    /// The glob rule `service.name: "<prefix>-*"`.
    NameGlob,
    /// The regex rule on `service.name`.
    NameRegex,
    /// The rule on `k8s.namespace.name: "risk-*"`.
    Namespace,
    /// The two-key rule (`service.name` glob and `deployment.environment.name`).
    NameAndEnv,
}

/// A service of the generated organisation.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    /// Index into [`Org::teams`].
    pub team: usize,
    pub system: String,
    pub k8s_namespace: String,
    pub language: &'static str,
    pub repository: String,
    pub criticality: &'static str,
    pub assignment: Assignment,
}

/// Teams, services and the resources their instances send.
#[derive(Clone, Debug)]
pub struct Org {
    pub teams: Vec<Team>,
    pub services: Vec<Service>,
    /// `INSTANCES` resources per service, service-major.
    resources: Vec<Resource>,
}

impl Org {
    /// The resources of one service's instances.
    pub fn resources_of(&self, service: usize) -> &[Resource] {
        &self.resources[service * INSTANCES..(service + 1) * INSTANCES]
    }

    /// The team that owns a service.
    pub fn team_of(&self, service: usize) -> &Team {
        &self.teams[self.services[service].team]
    }
}

/// Builds the organisation: `teams` teams (40 named ones, then `team-N`) and `services`
/// services spread over them. Deterministic; independent of the corpus seed.
pub fn org(services: usize, teams: usize) -> Org {
    let teams = teams.max(1);
    let mut rng = Rng::new(0x0e5a_11ce);
    let team_list: Vec<Team> = (0..teams)
        .map(|t| {
            let (name, prefix, system) = if t < TEAMS.len() {
                (TEAMS[t].0.to_string(), TEAMS[t].1.to_string(), TEAMS[t].2.to_string())
            } else {
                (format!("team-{t}"), format!("t{t}"), format!("system-{}", t % 7))
            };
            Team {
                k8s_namespace: if name == "payments-risk" { "risk-scoring".into() } else { name.clone() },
                contact: if t % 3 == 2 { format!("{name}@acme.example") } else { format!("#team-{name}") },
                oncall: format!("pagerduty:P{}", rng.hex(6).to_uppercase()),
                cost_center: format!("CC-{}", 100 + t * 7 % 60),
                name,
                prefix,
                system,
            }
        })
        .collect();
    let team_index = |name: &str, fallback: usize| team_list.iter().position(|t| t.name == name).unwrap_or(fallback);
    const CRIT: [&str; 4] = ["critical", "high", "medium", "low"];
    let mut names = HashSet::new();
    let mut list: Vec<Service> = Vec::with_capacity(services);
    let push = |list: &mut Vec<Service>, rng: &mut Rng, name: String, team: usize, assignment: Assignment| {
        let t = &team_list[team];
        let k8s_namespace = if assignment == Assignment::Namespace {
            t.k8s_namespace.clone()
        } else if t.name == "payments-risk" {
            "payments-risk".into()
        } else {
            t.k8s_namespace.clone()
        };
        list.push(Service {
            repository: format!("github.com/acme/{name}"),
            name,
            team,
            system: t.system.clone(),
            k8s_namespace,
            language: LANGS[rng.below(LANGS.len() as u64) as usize].0,
            criticality: CRIT[rng.below(4) as usize],
            assignment,
        });
    };
    for (i, (name, team)) in FAMOUS.iter().enumerate() {
        if list.len() >= services {
            break;
        }
        names.insert(name.to_string());
        let team = team_index(team, i % teams);
        push(&mut list, &mut rng, name.to_string(), team, Assignment::Listed);
    }
    let mut per_team = vec![0usize; teams];
    let mut k = 0usize;
    while list.len() < services {
        let t = k % teams;
        k += 1;
        let j = per_team[t];
        per_team[t] += 1;
        let comp = COMPONENTS[(j + t * 5) % COMPONENTS.len()];
        let prefix = &team_list[t].prefix;
        let mut name =
            if rng.chance(0.5) { format!("{prefix}-{comp}") } else { format!("{prefix}-{comp}-{}", rng.range(2, 40)) };
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{prefix}-{comp}-{}", rng.range(2, 40) + n * 40);
            n += 1;
        }
        names.insert(name.clone());
        // Every other generated service of a few teams is covered by a rule, not listed.
        let assignment = match (team_list[t].name.as_str(), j % 2) {
            (_, 0) => Assignment::Listed,
            ("payments" | "search", _) => Assignment::NameGlob,
            ("ledger", _) => Assignment::NameRegex,
            ("payments-risk", _) => Assignment::Namespace,
            ("ml-platform", _) => Assignment::NameAndEnv,
            _ => Assignment::Listed,
        };
        push(&mut list, &mut rng, name, t, assignment);
    }

    let mut resources = Vec::with_capacity(list.len() * INSTANCES);
    for (si, s) in list.iter().enumerate() {
        let lang = LANGS.iter().find(|l| l.0 == s.language).copied().unwrap_or(LANGS[0]);
        let version = format!("{}.{}.{}", 1 + si % 3, si * 7 % 23, si % 5);
        for inst in 0..INSTANCES {
            let cluster = CLUSTERS[(si + inst) % CLUSTERS.len()];
            let node = (si * 13 + inst * 7) % 60;
            let host = format!("ip-10-{}-{}-{}.ec2.internal", 16 + node / 20, node % 20 * 11 % 255, 10 + node);
            let pod = format!("{}-{}-{}", s.name, rng.hex(10), rng.alnum(5));
            let attributes = vec![
                kv("service.name", s.name.as_str()),
                kv("service.namespace", s.system.as_str()),
                kv("service.version", version.as_str()),
                kv("service.instance.id", uuid(&mut rng)),
                kv("deployment.environment.name", "production"),
                kv("k8s.cluster.name", cluster.0),
                kv("k8s.namespace.name", s.k8s_namespace.as_str()),
                kv("k8s.deployment.name", s.name.as_str()),
                kv("k8s.pod.name", pod),
                kv("k8s.node.name", host.as_str()),
                kv("host.name", host.as_str()),
                kv("host.arch", "amd64"),
                kv("os.type", "linux"),
                kv("cloud.provider", "aws"),
                kv("cloud.region", cluster.1),
                kv("cloud.availability_zone", cluster.2),
                kv("telemetry.sdk.name", "opentelemetry"),
                kv("telemetry.sdk.language", lang.0),
                kv("telemetry.sdk.version", lang.1),
                kv("process.runtime.name", lang.2),
                kv("process.runtime.version", lang.3),
                kv_i("process.pid", 1 + rng.below(60_000) as i64),
            ];
            resources.push(Resource { attributes, ..Default::default() });
        }
    }
    Org { teams: team_list, services: list, resources }
}

/// The ownership catalog (native YAML, the format of `config/catalog/*.yaml`) that matches
/// the corpus's organisation: every team, most services as exact entries, and a few rules
/// (glob, regex, namespace, two-key) that cover the rest, so that enrichment does real
/// lookups of every kind. Every generated service resolves to its team.
pub fn catalog_yaml(cfg: &CorpusConfig) -> String {
    render_catalog(&org(cfg.services, cfg.teams))
}

fn render_catalog(org: &Org) -> String {
    let mut y = String::with_capacity(64 * 1024);
    let _ = writeln!(
        y,
        "# Ownership catalog generated by sightline-bench-tools for the benchmark corpus:\n\
         # {} teams, {} services ({} as exact entries, the rest through the rules below).\n\
         # Format: crates/sightline-ownership/README.md. Use it on its own (it reuses team and\n\
         # service names of config/catalog/).\n",
        org.teams.len(),
        org.services.len(),
        org.services.iter().filter(|s| s.assignment == Assignment::Listed).count(),
    );
    y.push_str("teams:\n");
    for t in &org.teams {
        let _ = writeln!(
            y,
            "  - name: {}\n    contact: {}\n    oncall: {}\n    cost_center: {}",
            q(&t.name),
            q(&t.contact),
            q(&t.oncall),
            q(&t.cost_center)
        );
    }
    y.push_str("\nservices:\n");
    for s in org.services.iter().filter(|s| s.assignment == Assignment::Listed) {
        let _ = writeln!(
            y,
            "  - name: {}\n    team: {}\n    system: {}\n    repository: {}\n    criticality: {}",
            q(&s.name),
            q(&org.teams[s.team].name),
            q(&s.system),
            q(&s.repository),
            q(s.criticality)
        );
    }
    y.push_str("\n# In order; the first match wins, and exact service entries beat every rule.\nrules:\n");
    let team = |name: &str| org.teams.iter().find(|t| t.name == name);
    for (name, prefix_rule) in [("payments", true), ("search", true)] {
        if let Some(t) = team(name).filter(|_| prefix_rule) {
            let _ = writeln!(
                y,
                "  - match: {{ service.name: {} }}\n    team: {}\n    system: {}",
                q(&format!("{}-*", t.prefix)),
                q(&t.name),
                q(&t.system)
            );
        }
    }
    if let Some(t) = team("ledger") {
        let _ = writeln!(
            y,
            "  - match: {{ service.name: {} }}\n    team: {}\n    system: {}\n    criticality: critical",
            q(&format!("regex:{}-[a-z][a-z0-9-]*", t.prefix)),
            q(&t.name),
            q(&t.system)
        );
    }
    if let Some(t) = team("ml-platform") {
        let _ = writeln!(
            y,
            "  - match: {{ service.name: {}, deployment.environment.name: production }}\n    team: {}\n    system: {}",
            q(&format!("{}-*", t.prefix)),
            q(&t.name),
            q(&t.system)
        );
    }
    if let Some(t) = team("payments-risk") {
        let _ = writeln!(
            y,
            "  - match: {{ k8s.namespace.name: \"risk-*\" }}\n    team: {}\n    system: {}",
            q(&t.name),
            q(&t.system)
        );
    }
    y
}

/// A double-quoted YAML scalar.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Attribute helpers.

fn any_s(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}

fn kv(k: &str, v: impl Into<String>) -> KeyValue {
    KeyValue { key: k.into(), value: any_s(v), ..Default::default() }
}

fn kv_i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
        ..Default::default()
    }
}

fn kv_b(k: &str, v: bool) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(v)) }),
        ..Default::default()
    }
}

fn kv_d(k: &str, v: f64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(v)) }),
        ..Default::default()
    }
}

fn kv_arr(k: &str, vs: &[&str]) -> KeyValue {
    let values = vs.iter().map(|v| AnyValue { value: Some(any_value::Value::StringValue((*v).into())) }).collect();
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values })) }),
        ..Default::default()
    }
}

fn uuid(rng: &mut Rng) -> String {
    format!("{}-{}-4{}-a{}-{}", rng.hex(8), rng.hex(4), rng.hex(3), rng.hex(3), rng.hex(12))
}

fn ip(rng: &mut Rng) -> String {
    format!("10.{}.{}.{}", rng.below(64), rng.below(256), 1 + rng.below(254))
}

// ---------------------------------------------------------------------------------------------
// Vocabulary.

const METHODS: [&str; 6] = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];

const ROUTES: [(&str, &str); 16] = [
    ("/api/v1/orders/{id}", "/api/v1/orders/"),
    ("/api/v1/orders", "/api/v1/orders"),
    ("/api/v1/cart", "/api/v1/cart"),
    ("/api/v1/cart/items/{sku}", "/api/v1/cart/items/"),
    ("/api/v2/products/{sku}", "/api/v2/products/"),
    ("/api/v2/products", "/api/v2/products"),
    ("/api/v1/users/{id}/profile", "/api/v1/users/"),
    ("/api/v1/checkout", "/api/v1/checkout"),
    ("/api/v1/payments/{id}/capture", "/api/v1/payments/"),
    ("/api/v1/search", "/api/v1/search"),
    ("/api/v1/recommendations", "/api/v1/recommendations"),
    ("/api/v1/shipping/quote", "/api/v1/shipping/quote"),
    ("/api/v1/inventory/{sku}", "/api/v1/inventory/"),
    ("/healthz", "/healthz"),
    ("/api/v1/sessions", "/api/v1/sessions"),
    ("/api/v3/catalog/categories/{id}", "/api/v3/catalog/categories/"),
];

const DB_OPS: [(&str, &str, &str); 10] = [
    (
        "SELECT",
        "orders",
        "SELECT id, status, total_cents, currency FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
    ),
    ("SELECT", "products", "SELECT sku, name, price_cents, stock FROM products WHERE sku = ANY($1)"),
    (
        "INSERT",
        "orders",
        "INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at) VALUES ($1, $2, $3, $4, $5, now())",
    ),
    ("UPDATE", "inventory", "UPDATE inventory SET reserved = reserved + $1 WHERE sku = $2 AND stock - reserved >= $1"),
    ("SELECT", "users", "SELECT id, email, locale, tier FROM users WHERE id = $1"),
    ("DELETE", "cart_items", "DELETE FROM cart_items WHERE cart_id = $1 AND sku = $2"),
    (
        "SELECT",
        "shipments",
        "SELECT s.id, s.carrier, s.eta FROM shipments s JOIN orders o ON o.id = s.order_id WHERE o.id = $1",
    ),
    ("GET", "sessions", "GET session:{id}"),
    ("HGETALL", "carts", "HGETALL cart:{id}"),
    ("SELECT", "payments", "SELECT id, state, amount_cents FROM payments WHERE order_id = $1 FOR UPDATE"),
];

const DB_SYSTEMS: [(&str, &str); 4] =
    [("postgresql", "shop"), ("mysql", "catalog"), ("postgresql", "payments"), ("redis", "0")];

const RPCS: [(&str, &str); 12] = [
    ("hipstershop.CartService", "GetCart"),
    ("hipstershop.CartService", "AddItem"),
    ("hipstershop.ProductCatalogService", "GetProduct"),
    ("hipstershop.ProductCatalogService", "ListProducts"),
    ("hipstershop.CurrencyService", "Convert"),
    ("hipstershop.PaymentService", "Charge"),
    ("hipstershop.ShippingService", "GetQuote"),
    ("hipstershop.ShippingService", "ShipOrder"),
    ("hipstershop.RecommendationService", "ListRecommendations"),
    ("hipstershop.AdService", "GetAds"),
    ("hipstershop.CheckoutService", "PlaceOrder"),
    ("hipstershop.EmailService", "SendOrderConfirmation"),
];

const TOPICS: [&str; 8] = [
    "orders.created",
    "orders.paid",
    "payments.events",
    "inventory.reserved",
    "shipments.dispatched",
    "notifications.email",
    "search.index-updates",
    "clickstream.raw",
];

const INTERNAL_OPS: [(&str, &str); 10] = [
    ("render-template", "com.acme.web.TemplateRenderer"),
    ("compute-price", "com.acme.pricing.PriceCalculator"),
    ("validate-cart", "com.acme.cart.CartValidator"),
    ("CheckoutService.placeOrder", "com.acme.checkout.CheckoutService"),
    ("serialize-response", "com.acme.http.JsonWriter"),
    ("load-feature-flags", "com.acme.flags.FlagClient"),
    ("apply-promotions", "com.acme.promo.PromotionEngine"),
    ("score-transaction", "com.acme.risk.Scorer"),
    ("resolve-tenant", "com.acme.tenancy.Resolver"),
    ("build-recommendations", "com.acme.reco.Builder"),
];

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
];

const ERRORS: [(&str, &str); 6] = [
    ("java.net.SocketTimeoutException", "Read timed out after 2000 ms"),
    ("io.grpc.StatusRuntimeException", "UNAVAILABLE: upstream connect error or disconnect/reset before headers"),
    ("org.postgresql.util.PSQLException", "ERROR: could not serialize access due to concurrent update"),
    ("com.acme.inventory.OutOfStockException", "insufficient stock for sku"),
    ("java.lang.IllegalStateException", "cart is locked by another checkout"),
    ("redis.clients.jedis.exceptions.JedisConnectionException", "Unexpected end of stream"),
];

const STACK: &str = "\tat com.acme.checkout.CheckoutService.placeOrder(CheckoutService.java:212)\n\
\tat com.acme.checkout.CheckoutController.checkout(CheckoutController.java:88)\n\
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)\n\
\tat jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)\n\
\tat org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:140)\n";

/// The kind of instrumentation a scope stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    HttpServer,
    HttpClient,
    Db,
    Rpc,
    Messaging,
    Internal,
}

const KINDS: [Kind; 8] = [
    Kind::HttpServer,
    Kind::HttpServer,
    Kind::HttpClient,
    Kind::Db,
    Kind::Db,
    Kind::Rpc,
    Kind::Messaging,
    Kind::Internal,
];

fn scope_for(lang: &str, kind: Kind) -> InstrumentationScope {
    let (name, version) = match (lang, kind) {
        ("java", Kind::HttpServer) => ("io.opentelemetry.spring-webmvc-6.0", "2.10.0-alpha"),
        ("java", Kind::HttpClient) => ("io.opentelemetry.okhttp-3.0", "2.10.0-alpha"),
        ("java", Kind::Db) => ("io.opentelemetry.jdbc", "2.10.0-alpha"),
        ("java", Kind::Rpc) => ("io.opentelemetry.grpc-1.6", "2.10.0-alpha"),
        ("java", Kind::Messaging) => ("io.opentelemetry.kafka-clients-2.6", "2.10.0-alpha"),
        ("go", Kind::HttpServer | Kind::HttpClient) => {
            ("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", "0.58.0")
        }
        ("go", Kind::Db) => ("github.com/XSAM/otelsql", "0.36.0"),
        ("go", Kind::Rpc) => ("go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc", "0.58.0"),
        ("go", Kind::Messaging) => ("github.com/IBM/sarama/otelsarama", "0.58.0"),
        ("python", Kind::HttpServer) => ("opentelemetry.instrumentation.flask", "0.50b0"),
        ("python", Kind::HttpClient) => ("opentelemetry.instrumentation.requests", "0.50b0"),
        ("python", Kind::Db) => ("opentelemetry.instrumentation.psycopg2", "0.50b0"),
        ("python", Kind::Rpc) => ("opentelemetry.instrumentation.grpc", "0.50b0"),
        ("python", Kind::Messaging) => ("opentelemetry.instrumentation.kafka", "0.50b0"),
        ("nodejs", Kind::HttpServer | Kind::HttpClient) => ("@opentelemetry/instrumentation-http", "0.57.0"),
        ("nodejs", Kind::Db) => ("@opentelemetry/instrumentation-pg", "0.50.0"),
        ("nodejs", Kind::Rpc) => ("@opentelemetry/instrumentation-grpc", "0.57.0"),
        ("nodejs", Kind::Messaging) => ("@opentelemetry/instrumentation-kafkajs", "0.6.0"),
        ("dotnet", Kind::HttpServer) => ("OpenTelemetry.Instrumentation.AspNetCore", "1.10.1"),
        ("dotnet", Kind::HttpClient) => ("System.Net.Http", "8.0.0"),
        ("dotnet", Kind::Db) => ("OpenTelemetry.Instrumentation.SqlClient", "1.10.0-beta.1"),
        ("dotnet", Kind::Rpc) => ("OpenTelemetry.Instrumentation.GrpcNetClient", "1.10.0-beta.1"),
        (_, Kind::Internal) => ("com.acme.tracing", "3.4.1"),
        ("rust", Kind::HttpServer | Kind::HttpClient) => ("axum-tracing-opentelemetry", "0.24.1"),
        ("rust", Kind::Db) => ("sqlx", "0.8.2"),
        ("rust", Kind::Rpc) => ("tonic-tracing-opentelemetry", "0.24.1"),
        _ => ("opentelemetry-instrumentation", "1.0.0"),
    };
    InstrumentationScope { name: name.into(), version: version.into(), ..Default::default() }
}

// ---------------------------------------------------------------------------------------------
// Corpus generation.

/// Generates the corpus. CPU-parallel over requests; deterministic for a seed.
pub fn corpus(cfg: &CorpusConfig) -> Corpus {
    let org = org(cfg.services, cfg.teams);
    let n = cfg.requests.max(1);
    let base = cfg.base_time_unix_nano.unwrap_or_else(|| crate::unix_nanos().saturating_sub(3_600_000_000_000));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(n);
    // Which services each request carries: consecutive runs of one fixed shuffle of all
    // services, so that every service appears once the corpus has enough resource slots
    // (the default corpus uses each service about three times).
    let services = org.services.len();
    let mut perm: Vec<usize> = (0..services).collect();
    let mut shuffle = Rng::new(cfg.seed ^ 0x5eed_5e41);
    for i in (1..services).rev() {
        perm.swap(i, shuffle.below(i as u64 + 1) as usize);
    }
    let mut offset = 0usize;
    let layout: Vec<Vec<usize>> = (0..n)
        .map(|_| {
            let k = (shuffle.range(4, 10) as usize).min(cfg.items_per_request.max(1)).min(services);
            let picked = (offset..offset + k).map(|p| perm[p % services]).collect();
            offset += k;
            picked
        })
        .collect();
    let mut slots: Vec<Option<(CorpusRequest, Vec<usize>)>> = vec![None; n];
    std::thread::scope(|s| {
        for (t, chunk) in slots.chunks_mut(n.div_ceil(threads)).enumerate() {
            let org = &org;
            let layout = &layout;
            let first = t * n.div_ceil(threads);
            s.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let i = first + k;
                    let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64 + 1));
                    // Requests are 5 ms apart, items within 2 s after their request's time.
                    let t0 = base + i as u64 * 5_000_000;
                    *slot = Some(one_request(cfg, org, &layout[i], &mut rng, t0));
                }
            });
        }
    });
    let mut used = HashSet::new();
    let requests = slots
        .into_iter()
        .map(|s| {
            let (r, resources) = s.expect("generated");
            used.extend(resources);
            r
        })
        .collect();
    Corpus { signal: cfg.signal, span_size: cfg.span_size, requests, distinct_resources: used.len() }
}

/// Splits `n` into `k` random parts of at least 1 each.
fn split(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let k = k.clamp(1, n.max(1));
    let weights: Vec<f64> = (0..k).map(|_| 0.4 + rng.f64()).collect();
    let sum: f64 = weights.iter().sum();
    let rest = n.saturating_sub(k);
    let mut parts: Vec<usize> = weights.iter().map(|w| 1 + (rest as f64 * w / sum) as usize).collect();
    let mut total: usize = parts.iter().sum();
    let mut i = 0;
    while total < n {
        parts[i % k] += 1;
        total += 1;
        i += 1;
    }
    parts
}

/// The plan of one request: which resources, how many scopes and items under each.
struct Group {
    resource_index: usize,
    service: usize,
    scopes: Vec<usize>,
}

fn plan(cfg: &CorpusConfig, services: &[usize], rng: &mut Rng) -> Vec<Group> {
    let n = cfg.items_per_request.max(1);
    split(rng, n, services.len())
        .into_iter()
        .zip(services.iter().copied())
        .map(|(items, service)| {
            let n_scopes = (rng.range(1, 3) as usize).min(items);
            Group {
                resource_index: service * INSTANCES + rng.below(INSTANCES as u64) as usize,
                service,
                scopes: split(rng, items, n_scopes),
            }
        })
        .collect()
}

fn one_request(
    cfg: &CorpusConfig,
    org: &Org,
    services: &[usize],
    rng: &mut Rng,
    t0: u64,
) -> (CorpusRequest, Vec<usize>) {
    let groups = plan(cfg, services, rng);
    let resources: Vec<usize> = groups.iter().map(|g| g.resource_index).collect();
    let large = cfg.span_size == SpanSize::Large;
    let mut item_bytes = 0u64;
    let mut items = 0u64;
    let bytes = match cfg.signal {
        Signal::Traces => {
            let mut req = ExportTraceServiceRequest::default();
            for g in &groups {
                let svc = &org.services[g.service];
                let mut rs = ResourceSpans {
                    resource: Some(org.resources[g.resource_index].clone()),
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    ..Default::default()
                };
                for &count in &g.scopes {
                    let kind = *rng.pick(&KINDS);
                    let spans = spans(rng, kind, large, count, t0, svc);
                    for s in &spans {
                        item_bytes += len_field_size(2, s.encoded_len()) as u64;
                    }
                    items += spans.len() as u64;
                    rs.scope_spans.push(ScopeSpans {
                        scope: Some(scope_for(svc.language, kind)),
                        spans,
                        ..Default::default()
                    });
                }
                req.resource_spans.push(rs);
            }
            req.encode_to_vec()
        }
        Signal::Logs => {
            let mut req = ExportLogsServiceRequest::default();
            for g in &groups {
                let svc = &org.services[g.service];
                let mut rl =
                    ResourceLogs { resource: Some(org.resources[g.resource_index].clone()), ..Default::default() };
                for &count in &g.scopes {
                    let kind = *rng.pick(&KINDS);
                    let records: Vec<LogRecord> = (0..count).map(|_| log_record(rng, large, t0, svc)).collect();
                    for r in &records {
                        item_bytes += len_field_size(2, r.encoded_len()) as u64;
                    }
                    items += records.len() as u64;
                    let scope = if svc.language == "java" {
                        InstrumentationScope { name: "com.acme.checkout.CheckoutService".into(), ..Default::default() }
                    } else {
                        scope_for(svc.language, kind)
                    };
                    rl.scope_logs.push(ScopeLogs { scope: Some(scope), log_records: records, ..Default::default() });
                }
                req.resource_logs.push(rl);
            }
            req.encode_to_vec()
        }
        Signal::Metrics => {
            let mut req = ExportMetricsServiceRequest::default();
            for g in &groups {
                let svc = &org.services[g.service];
                let mut rm =
                    ResourceMetrics { resource: Some(org.resources[g.resource_index].clone()), ..Default::default() };
                for &count in &g.scopes {
                    let kind = *rng.pick(&KINDS);
                    let metrics = metrics(rng, large, count, t0, kind);
                    for m in &metrics {
                        item_bytes += len_field_size(2, m.encoded_len()) as u64;
                    }
                    items += count as u64;
                    rm.scope_metrics.push(ScopeMetrics {
                        scope: Some(scope_for(svc.language, kind)),
                        metrics,
                        ..Default::default()
                    });
                }
                req.resource_metrics.push(rm);
            }
            req.encode_to_vec()
        }
    };
    let stamp = stamp_offsets(cfg.signal, &bytes).expect("the first item of a generated request has a timestamp");
    let read = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let stamp_span_nanos = stamp.end.map_or(0, |end| read(end).saturating_sub(read(stamp.stamp)));
    let req = CorpusRequest {
        bytes: Bytes::from(bytes),
        items,
        stamp,
        stamp_span_nanos,
        item_bytes,
        resources: groups.len() as u64,
    };
    (req, resources)
}

// ---------------------------------------------------------------------------------------------
// Spans.

fn spans(rng: &mut Rng, kind: Kind, large: bool, count: usize, t0: u64, svc: &Service) -> Vec<Span> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let trace_len = (rng.range(1, 5) as usize).min(count - out.len());
        let trace_id = rng.bytes::<16>().to_vec();
        let root_id = rng.bytes::<8>().to_vec();
        let remote_parent = rng.chance(0.7);
        let start = t0 + rng.below(2_000_000_000);
        let dur = (rng.log_normal(15e6, 1.2) as u64).clamp(50_000, 30_000_000_000);
        for i in 0..trace_len {
            let (span_id, parent, s, d) = if i == 0 {
                let parent = if remote_parent { rng.bytes::<8>().to_vec() } else { Vec::new() };
                (root_id.clone(), parent, start, dur)
            } else {
                let off = rng.below(dur / 2 + 1);
                let d = rng.below(dur - off).max(20_000);
                (rng.bytes::<8>().to_vec(), root_id.clone(), start + off, d)
            };
            let flags = 0x100 | if i == 0 && remote_parent { 0x200 } else { 0 };
            out.push(one_span(rng, kind, large, trace_id.clone(), span_id, parent, s, d, flags, svc));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn one_span(
    rng: &mut Rng,
    kind: Kind,
    large: bool,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    start: u64,
    dur: u64,
    flags: u32,
    svc: &Service,
) -> Span {
    let error = rng.chance(0.03);
    let mut attrs = Vec::with_capacity(if large { 40 } else { 6 });
    let id = rng.range(1000, 999_999);
    let (name, span_kind) = match kind {
        Kind::HttpServer | Kind::HttpClient => {
            let method = *rng.pick(&METHODS);
            let (route, path) = *rng.pick(&ROUTES);
            let path = if route.contains('{') { format!("{path}{id}") } else { path.to_string() };
            let status =
                if error { *rng.pick(&[500i64, 502, 503, 504]) } else { *rng.pick(&[200i64, 200, 200, 201, 204, 404]) };
            attrs.push(kv("http.request.method", method));
            attrs.push(kv_i("http.response.status_code", status));
            if kind == Kind::HttpServer {
                attrs.push(kv("http.route", route));
                attrs.push(kv("url.path", path.as_str()));
                if large {
                    attrs.push(kv("url.scheme", "https"));
                    attrs.push(kv("url.query", format!("page={}&sort=price&filter=in_stock", rng.range(1, 20))));
                    attrs.push(kv("server.address", format!("{}.acme.example", svc.name)));
                    attrs.push(kv_i("server.port", 8080));
                    attrs.push(kv("client.address", ip(rng)));
                    attrs.push(kv("user_agent.original", *rng.pick(&USER_AGENTS)));
                    attrs.push(kv("network.protocol.version", "1.1"));
                    attrs.push(kv_i("http.request.body.size", rng.below(4096) as i64));
                    attrs.push(kv_i("http.response.body.size", rng.below(65536) as i64));
                    attrs.push(kv_arr("http.request.header.accept", &["application/json", "text/plain;q=0.9"]));
                }
                (format!("{method} {route}"), span::SpanKind::Server)
            } else {
                let peer = format!("{}-{}", rng.pick(&COMPONENTS), rng.pick(&["svc", "api", "backend"]));
                attrs.push(kv("server.address", peer.as_str()));
                if large {
                    attrs.push(kv("url.full", format!("http://{peer}:8080{path}?trace={}", rng.hex(8))));
                    attrs.push(kv_i("server.port", 8080));
                    attrs.push(kv("network.peer.address", ip(rng)));
                    attrs.push(kv_i("network.peer.port", 8080));
                    attrs.push(kv("network.protocol.version", "1.1"));
                    attrs.push(kv_i("http.request.resend_count", rng.below(2) as i64));
                } else {
                    attrs.push(kv("url.full", format!("http://{peer}{path}")));
                }
                (method.to_string(), span::SpanKind::Client)
            }
        }
        Kind::Db => {
            let (op, table, stmt) = *rng.pick(&DB_OPS);
            let (system, db) = *rng.pick(&DB_SYSTEMS);
            attrs.push(kv("db.system", system));
            attrs.push(kv("db.namespace", db));
            attrs.push(kv("db.operation.name", op));
            if large {
                attrs.push(kv("db.collection.name", table));
                attrs.push(kv("db.query.text", stmt.replace("{id}", &id.to_string())));
                attrs.push(kv("server.address", format!("{system}-{}.db.internal", rng.below(4))));
                attrs.push(kv_i("server.port", if system == "redis" { 6379 } else { 5432 }));
                attrs.push(kv("db.user", "app"));
                attrs.push(kv_i("db.response.returned_rows", rng.below(50) as i64));
                attrs.push(kv("db.connection_string", format!("{system}://{system}-0.db.internal/{db}")));
            } else {
                attrs.push(kv("db.collection.name", table));
            }
            (format!("{op} {db}.{table}"), span::SpanKind::Client)
        }
        Kind::Rpc => {
            let (service, method) = *rng.pick(&RPCS);
            attrs.push(kv("rpc.system", "grpc"));
            attrs.push(kv("rpc.service", service));
            attrs.push(kv("rpc.method", method));
            attrs.push(kv_i("rpc.grpc.status_code", if error { 14 } else { 0 }));
            if large {
                attrs.push(kv("server.address", format!("{}.svc.cluster.local", svc.name)));
                attrs.push(kv_i("server.port", 50051));
                attrs.push(kv("network.peer.address", ip(rng)));
                attrs.push(kv_i("network.peer.port", 40000 + rng.below(20000) as i64));
                attrs.push(kv_i("rpc.request.size", rng.below(8192) as i64));
                attrs.push(kv_i("rpc.response.size", rng.below(32768) as i64));
            }
            let k = if rng.chance(0.5) { span::SpanKind::Server } else { span::SpanKind::Client };
            (format!("{service}/{method}"), k)
        }
        Kind::Messaging => {
            let topic = *rng.pick(&TOPICS);
            let publish = rng.chance(0.5);
            attrs.push(kv("messaging.system", "kafka"));
            attrs.push(kv("messaging.destination.name", topic));
            attrs.push(kv("messaging.operation.type", if publish { "publish" } else { "process" }));
            attrs.push(kv_i("messaging.destination.partition.id", rng.below(24) as i64));
            if large {
                attrs.push(kv("messaging.kafka.message.key", format!("order-{id}")));
                attrs.push(kv_i("messaging.kafka.offset", rng.below(90_000_000) as i64));
                attrs.push(kv("messaging.consumer.group.name", format!("{}-consumers", svc.name)));
                attrs.push(kv("messaging.client.id", format!("{}-{}", svc.name, rng.below(8))));
                attrs.push(kv("messaging.message.id", uuid(rng)));
                attrs.push(kv_i("messaging.message.body.size", rng.below(16384) as i64));
                attrs.push(kv("server.address", format!("kafka-{}.kafka.svc", rng.below(6))));
            }
            let (verb, k) =
                if publish { ("publish", span::SpanKind::Producer) } else { ("process", span::SpanKind::Consumer) };
            (format!("{verb} {topic}"), k)
        }
        Kind::Internal => {
            let (op, ns) = *rng.pick(&INTERNAL_OPS);
            attrs.push(kv("code.function", op));
            attrs.push(kv("code.namespace", ns));
            attrs.push(kv_i("app.items.count", rng.below(40) as i64));
            if large {
                attrs.push(kv("code.filepath", format!("src/main/java/{}.java", ns.replace('.', "/"))));
                attrs.push(kv_i("code.lineno", rng.range(20, 900) as i64));
                attrs.push(kv_b("app.cache.hit", rng.chance(0.8)));
            }
            (op.to_string(), span::SpanKind::Internal)
        }
    };
    if large {
        // What production services add on top of the semantic conventions.
        attrs.push(kv("thread.name", format!("http-nio-8080-exec-{}", rng.range(1, 200))));
        attrs.push(kv_i("thread.id", rng.range(20, 400) as i64));
        attrs.push(kv("enduser.id", format!("user-{}", rng.range(1, 2_000_000))));
        attrs.push(kv("app.tenant.id", format!("tenant-{}", rng.range(1, 300))));
        attrs.push(kv("app.session.id", uuid(rng)));
        attrs.push(kv("app.request.id", rng.hex(32)));
        attrs.push(kv("app.customer.tier", *rng.pick(&["free", "plus", "business", "enterprise"])));
        attrs.push(kv("app.region", *rng.pick(&["eu-west-1", "us-east-1", "ap-south-1"])));
        attrs.push(kv("app.build.commit", rng.hex(40)));
        attrs.push(kv("app.feature_flags", "new-checkout,fast-search,reco-v3,cart-ttl-7d"));
        attrs.push(kv_i("app.cart.items", rng.below(25) as i64));
        attrs.push(kv_d("app.cart.total", (rng.below(50_000) as f64) / 100.0));
        attrs.push(kv_b("app.synthetic", rng.chance(0.02)));
        attrs.push(kv("peer.service", format!("{}-{}", rng.pick(&TEAMS).1, rng.pick(&COMPONENTS))));
        attrs.push(kv("net.host.name", format!("{}.{}", svc.name, svc.k8s_namespace)));
        attrs.push(kv("app.order.id", format!("ord_{}", rng.hex(20))));
        attrs.push(kv("app.experiment.variant", *rng.pick(&["control", "treatment-a", "treatment-b"])));
        attrs.push(kv("app.locale", *rng.pick(&["en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR"])));
        attrs.push(kv("app.deployment.ring", *rng.pick(&["canary", "stable", "stable", "stable"])));
        attrs.push(kv(
            "app.client.version",
            format!("{}-7.{}.{}", rng.pick(&["ios", "android", "web"]), rng.below(60), rng.below(10)),
        ));
        attrs.push(kv(
            "http.request.header.referer",
            format!(
                "https://www.acme.example/c/{}?page={}",
                rng.pick(&["shoes", "outdoor", "kitchen", "books"]),
                rng.range(1, 9)
            ),
        ));
        attrs.push(kv_i("app.abtest.bucket", rng.below(1000) as i64));
        attrs.push(kv("app.payment.provider", *rng.pick(&["adyen", "stripe", "paypal", "klarna"])));
    }
    let mut events = Vec::new();
    if large {
        events.push(span::Event {
            time_unix_nano: start + dur / 4,
            name: "cache.lookup".into(),
            attributes: vec![
                kv("cache.key", format!("product:sku-{}:{}", rng.range(1000, 99999), rng.hex(8))),
                kv_b("cache.hit", rng.chance(0.8)),
                kv_i("cache.ttl_ms", 60_000),
                kv("cache.backend", "redis-cluster-2"),
            ],
            ..Default::default()
        });
        events.push(span::Event {
            time_unix_nano: start + dur / 2,
            name: "message".into(),
            attributes: vec![
                kv("message.type", if rng.chance(0.5) { "SENT" } else { "RECEIVED" }),
                kv_i("message.id", rng.range(1, 20) as i64),
                kv_i("message.uncompressed_size", rng.below(20_000) as i64),
                kv("app.log.message", format!("fetched {} rows from upstream in {} ms", rng.below(100), rng.below(40))),
            ],
            ..Default::default()
        });
    }
    let status = if error {
        let (etype, msg) = *rng.pick(&ERRORS);
        let mut attributes = vec![kv("exception.type", etype), kv("exception.message", msg)];
        if large {
            attributes.push(kv("exception.stacktrace", format!("{etype}: {msg}\n{STACK}")));
        }
        events.push(span::Event {
            time_unix_nano: start + dur - dur / 10,
            name: "exception".into(),
            attributes,
            ..Default::default()
        });
        Some(Status { code: status::StatusCode::Error as i32, message: msg.into() })
    } else if span_kind == span::SpanKind::Server && rng.chance(0.2) {
        Some(Status { code: status::StatusCode::Ok as i32, message: String::new() })
    } else {
        None
    };
    Span {
        trace_id,
        span_id,
        parent_span_id,
        flags,
        name,
        kind: span_kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur,
        attributes: attrs,
        events,
        status,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Logs.

fn log_record(rng: &mut Rng, large: bool, t0: u64, svc: &Service) -> LogRecord {
    let t = t0 + rng.below(2_000_000_000);
    let id = rng.range(10_000, 9_999_999);
    let (sev, text) = match rng.below(100) {
        0..10 => (5, "DEBUG"),
        10..80 => (9, "INFO"),
        80..92 => (13, "WARN"),
        _ => (17, "ERROR"),
    };
    let body = match (sev, rng.below(5)) {
        (17, _) => {
            let (etype, msg) = *rng.pick(&ERRORS);
            format!("failed to process order {id}: {etype}: {msg}")
        }
        (13, 0) => format!(
            "retrying request to {}-api (attempt {}/3): connection reset by peer",
            rng.pick(&TEAMS).1,
            rng.range(1, 3)
        ),
        (13, _) => format!("slow query detected ({} ms): {}", rng.range(200, 3000), rng.pick(&DB_OPS).2),
        (_, 0) => {
            let (route, path) = *rng.pick(&ROUTES);
            let path = if route.contains('{') { format!("{path}{id}") } else { path.to_string() };
            format!("{} {path} {} in {}ms", rng.pick(&METHODS), rng.pick(&[200, 200, 201, 404]), rng.range(1, 900))
        }
        (_, 1) => format!(
            "order {id} placed by customer {}: {} items, total {}.{:02} EUR",
            rng.range(1, 2_000_000),
            rng.range(1, 12),
            rng.range(5, 900),
            rng.below(100)
        ),
        (_, 2) => format!("cache miss for key product:sku-{}, loading from database", rng.range(1000, 99999)),
        (_, 3) => format!("user {} logged in from {}", rng.range(1, 2_000_000), ip(rng)),
        _ => format!("kafka consumer lag on {}[{}] is {} messages", rng.pick(&TOPICS), rng.below(24), rng.below(5000)),
    };
    let mut attributes = vec![
        kv("code.namespace", rng.pick(&INTERNAL_OPS).1),
        kv("thread.name", format!("worker-{}", rng.range(1, 64))),
    ];
    if large {
        attributes.push(kv("code.function", rng.pick(&INTERNAL_OPS).0));
        attributes.push(kv_i("code.lineno", rng.range(20, 900) as i64));
        attributes.push(kv("enduser.id", format!("user-{}", rng.range(1, 2_000_000))));
        attributes.push(kv("app.tenant.id", format!("tenant-{}", rng.range(1, 300))));
        attributes.push(kv("app.request.id", rng.hex(32)));
        attributes.push(kv("app.session.id", uuid(rng)));
        attributes.push(kv("http.route", rng.pick(&ROUTES).0));
        attributes.push(kv("app.region", *rng.pick(&["eu-west-1", "us-east-1", "ap-south-1"])));
        attributes.push(kv("app.build.commit", rng.hex(40)));
        attributes.push(kv("log.file.name", format!("{}.log", svc.name)));
        attributes.push(kv("log.iostream", "stdout"));
        if sev == 17 {
            let (etype, msg) = *rng.pick(&ERRORS);
            attributes.push(kv("exception.type", etype));
            attributes.push(kv("exception.message", msg));
            attributes.push(kv("exception.stacktrace", format!("{etype}: {msg}\n{STACK}")));
        }
    }
    let traced = rng.chance(0.6);
    LogRecord {
        time_unix_nano: t,
        observed_time_unix_nano: t + rng.range(100_000, 5_000_000),
        severity_number: sev,
        severity_text: text.into(),
        body: any_s(body),
        attributes,
        flags: u32::from(traced),
        trace_id: if traced { rng.bytes::<16>().to_vec() } else { Vec::new() },
        span_id: if traced { rng.bytes::<8>().to_vec() } else { Vec::new() },
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics.

const BOUNDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Metrics with exactly `points` data points in total.
fn metrics(rng: &mut Rng, large: bool, points: usize, t0: u64, kind: Kind) -> Vec<Metric> {
    let mut out = Vec::new();
    let mut left = points;
    let start = t0.saturating_sub(3_600_000_000_000);
    let t = t0 + rng.below(2_000_000_000);
    let mut which = rng.below(9);
    while left > 0 {
        let n = (rng.range(1, 6) as usize).min(left);
        left -= n;
        which = (which + 1) % 9;
        let attrs = |rng: &mut Rng, i: usize| -> Vec<KeyValue> {
            let mut a = match which {
                0..=2 => {
                    let (route, _) = ROUTES[(i * 3 + rng.below(3) as usize) % ROUTES.len()];
                    vec![
                        kv("http.request.method", METHODS[i % METHODS.len()]),
                        kv("http.route", route),
                        kv_i("http.response.status_code", [200, 201, 404, 500][i % 4]),
                    ]
                }
                3 => vec![kv("cpu.mode", ["user", "system", "iowait", "idle"][i % 4])],
                4 => vec![kv("jvm.memory.pool.name", ["G1 Eden Space", "G1 Old Gen", "Metaspace", "CodeCache"][i % 4])],
                5 => vec![kv("messaging.destination.name", TOPICS[i % TOPICS.len()]), kv_i("partition", i as i64)],
                6 => vec![
                    kv("db.client.connection.pool.name", "hikari-main"),
                    kv("db.client.connection.state", ["idle", "used"][i % 2]),
                ],
                7 => vec![
                    kv("payment.method", ["card", "paypal", "sepa", "apple-pay"][i % 4]),
                    kv("app.region", ["eu", "us", "apac"][i % 3]),
                ],
                _ => vec![kv("rpc.method", RPCS[i % RPCS.len()].1), kv("rpc.service", RPCS[i % RPCS.len()].0)],
            };
            if large {
                a.push(kv("app.tenant.id", format!("tenant-{}", rng.range(1, 40))));
                a.push(kv("app.customer.tier", *rng.pick(&["free", "plus", "business", "enterprise"])));
                a.push(kv("app.build.commit", rng.hex(12)));
                a.push(kv("network.protocol.version", "1.1"));
                a.push(kv("server.address", format!("{}-api.svc", rng.pick(&TEAMS).1)));
            }
            a
        };
        let number = |rng: &mut Rng, i: usize, value: number_data_point::Value, cumulative: bool| NumberDataPoint {
            attributes: attrs(rng, i),
            start_time_unix_nano: if cumulative { start } else { 0 },
            time_unix_nano: t,
            value: Some(value),
            ..Default::default()
        };
        let (name, unit, data) = match which {
            0 | 8 => {
                let dps = (0..n)
                    .map(|i| {
                        let count = rng.range(1, 5000);
                        let mut buckets = vec![0u64; BOUNDS.len() + 1];
                        let mut left = count;
                        for (b, slot) in buckets.iter_mut().enumerate() {
                            let take = if b == BOUNDS.len() { left } else { rng.below(left / 3 + 2).min(left) };
                            *slot = take;
                            left -= take;
                        }
                        HistogramDataPoint {
                            attributes: attrs(rng, i),
                            start_time_unix_nano: start,
                            time_unix_nano: t,
                            count,
                            sum: Some(count as f64 * rng.log_normal(0.05, 1.0)),
                            bucket_counts: buckets,
                            explicit_bounds: BOUNDS.to_vec(),
                            min: Some(0.0005 + rng.f64() * 0.001),
                            max: Some(1.0 + rng.f64() * 4.0),
                            ..Default::default()
                        }
                    })
                    .collect();
                let name = if which == 0 { "http.server.request.duration" } else { "rpc.server.duration" };
                let data = metric::Data::Histogram(Histogram {
                    data_points: dps,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                });
                (name, "s", data)
            }
            1 => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsInt(rng.below(200) as i64);
                        number(rng, i, v, true)
                    })
                    .collect();
                let data = metric::Data::Sum(Sum {
                    data_points: dps,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: false,
                });
                ("http.server.active_requests", "{request}", data)
            }
            2 => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsInt(rng.below(10_000_000) as i64);
                        number(rng, i, v, true)
                    })
                    .collect();
                let data = metric::Data::Sum(Sum {
                    data_points: dps,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                });
                ("http.server.request.count", "{request}", data)
            }
            3 => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsDouble(rng.f64() * 3600.0);
                        number(rng, i, v, true)
                    })
                    .collect();
                let data = metric::Data::Sum(Sum {
                    data_points: dps,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                });
                ("process.cpu.time", "s", data)
            }
            4 => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsInt(rng.below(1 << 30) as i64);
                        number(rng, i, v, false)
                    })
                    .collect();
                ("jvm.memory.used", "By", metric::Data::Gauge(Gauge { data_points: dps }))
            }
            5 => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsInt(rng.below(5000) as i64);
                        number(rng, i, v, false)
                    })
                    .collect();
                ("messaging.kafka.consumer.lag", "{message}", metric::Data::Gauge(Gauge { data_points: dps }))
            }
            6 => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsInt(rng.below(50) as i64);
                        number(rng, i, v, false)
                    })
                    .collect();
                ("db.client.connection.count", "{connection}", metric::Data::Gauge(Gauge { data_points: dps }))
            }
            _ => {
                let dps = (0..n)
                    .map(|i| {
                        let v = number_data_point::Value::AsInt(rng.below(1_000_000) as i64);
                        number(rng, i, v, true)
                    })
                    .collect();
                let data = metric::Data::Sum(Sum {
                    data_points: dps,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                });
                ("app.orders.placed", "{order}", data)
            }
        };
        let description = if large {
            format!("{name} as reported by the {kind_name} instrumentation", kind_name = kind_name(kind))
        } else {
            String::new()
        };
        out.push(Metric { name: name.into(), description, unit: unit.into(), data: Some(data), ..Default::default() });
    }
    out
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::HttpServer => "http-server",
        Kind::HttpClient => "http-client",
        Kind::Db => "database",
        Kind::Rpc => "rpc",
        Kind::Messaging => "messaging",
        Kind::Internal => "runtime",
    }
}

//! The data points of a metric, whatever its kind, by their attribute lists.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// Calls `f` with each data point's attributes.
pub fn each_attrs(m: &mut Metric, f: &mut dyn FnMut(&mut Vec<KeyValue>)) {
    retain(m, &mut |a| {
        f(a);
        true
    });
}

/// Keeps the data points for which `f` (which may also edit their attributes) is true; the
/// number removed.
pub fn retain(m: &mut Metric, f: &mut dyn FnMut(&mut Vec<KeyValue>) -> bool) -> u64 {
    macro_rules! keep {
        ($points:expr) => {{
            let before = $points.len();
            $points.retain_mut(|p| f(&mut p.attributes));
            (before - $points.len()) as u64
        }};
    }
    match &mut m.data {
        Some(Data::Gauge(g)) => keep!(g.data_points),
        Some(Data::Sum(s)) => keep!(s.data_points),
        Some(Data::Histogram(h)) => keep!(h.data_points),
        Some(Data::ExponentialHistogram(h)) => keep!(h.data_points),
        Some(Data::Summary(s)) => keep!(s.data_points),
        None => 0,
    }
}

/// The number of data points.
pub fn count(m: &Metric) -> u64 {
    (match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

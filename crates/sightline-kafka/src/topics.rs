//! Regular-expression topics, read as the collector reads them.
//!
//! When any of a signal's `topics` starts with `^`, the collector's client (franz-go, regex
//! mode) treats every entry as a regular expression and resolves the subscription itself from
//! the cluster's topic list at each metadata refresh: a topic is consumed when it matches any
//! `topics` expression (unanchored, so `otlp` also matches `x-otlp-y`), is not one of Kafka's
//! internal topics, and matches no `exclude_topics` expression (also unanchored). librdkafka's
//! own regex subscription has no exclusions and reads entries without `^` as literal names,
//! so Sightline resolves regex subscriptions the same way the collector does: it lists the
//! cluster's topics every `metadata.refresh_interval`, filters them here, and subscribes the
//! consumer to the resulting names when they change.

use regex::Regex;

/// Kafka's internal topics: never matched (franz-go skips topics the broker marks internal;
/// librdkafka's metadata does not carry the flag, so they are named here).
const INTERNAL: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// One signal's regex subscription.
#[derive(Debug)]
pub struct TopicFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl TopicFilter {
    /// `Ok(None)` when no topic starts with `^` (a plain list of names, subscribed as is).
    /// The error names the first expression that does not compile.
    pub fn new(topics: &[String], exclude: &[String]) -> Result<Option<TopicFilter>, String> {
        if !topics.iter().any(|t| t.starts_with('^')) {
            return Ok(None);
        }
        let compile = |what: &str, list: &[String]| -> Result<Vec<Regex>, String> {
            list.iter()
                .enumerate()
                .map(|(i, t)| Regex::new(t).map_err(|e| format!("{what}.{i}: {t:?} is not a regular expression: {e}")))
                .collect()
        };
        Ok(Some(TopicFilter { include: compile("topics", topics)?, exclude: compile("exclude_topics", exclude)? }))
    }

    /// Whether `topic` is consumed.
    pub fn matches(&self, topic: &str) -> bool {
        !INTERNAL.contains(&topic)
            && self.include.iter().any(|r| r.is_match(topic))
            && !self.exclude.iter().any(|r| r.is_match(topic))
    }

    /// The consumed topics among `names`, sorted and without repeats.
    pub fn select<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = names.into_iter().filter(|t| self.matches(t)).map(str::to_string).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(topics: &[&str], exclude: &[&str]) -> TopicFilter {
        let s = |l: &[&str]| l.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        TopicFilter::new(&s(topics), &s(exclude)).unwrap().unwrap()
    }

    #[test]
    fn plain_names_are_not_a_filter() {
        assert!(TopicFilter::new(&["otlp_spans".into()], &[]).unwrap().is_none());
    }

    #[test]
    fn every_entry_is_an_unanchored_expression_once_one_starts_with_a_caret() {
        let f = filter(&["^logs-", "audit"], &[]);
        assert!(f.matches("logs-payments"));
        assert!(!f.matches("app-logs-payments"), "^ anchors the first");
        assert!(f.matches("audit"));
        assert!(f.matches("team-audit-2"), "the second is unanchored, as in franz-go");
        assert!(!f.matches("metrics"));
    }

    #[test]
    fn exclusions_are_unanchored_and_win() {
        let f = filter(&["^logs-.*"], &["^logs-(test|dev)$", "tmp"]);
        assert!(f.matches("logs-prod"));
        assert!(!f.matches("logs-test"));
        assert!(!f.matches("logs-dev"));
        assert!(f.matches("logs-testing"), "anchored with $");
        assert!(!f.matches("logs-tmp-1"), "unanchored");
    }

    #[test]
    fn internal_topics_never_match() {
        let f = filter(&["^.*"], &[]);
        assert!(!f.matches("__consumer_offsets"));
        assert!(!f.matches("__transaction_state"));
        assert!(f.matches("_schemas"));
        assert_eq!(f.select(["b", "__consumer_offsets", "a", "b"]), vec!["a", "b"]);
    }

    #[test]
    fn a_bad_expression_is_named() {
        let e = TopicFilter::new(&["^ok".into()], &["fine".into(), "(".into()]).unwrap_err();
        assert!(e.starts_with("exclude_topics.1: \"(\" is not a regular expression"), "{e}");
        let e = TopicFilter::new(&["^(".into()], &[]).unwrap_err();
        assert!(e.starts_with("topics.0:"), "{e}");
    }
}

//! Validated detectors of sensitive values in strings (ADR 17).
//!
//! A detector is a cheap pre-filter (a byte that must be there, a literal prefix), a pattern
//! that finds candidates, and a validator that confirms them, so that look-alikes are left
//! alone:
//! - `credit_card`: 13 to 19 digits, optionally grouped by one kind of separator (space or
//!   `-`), with a known issuer prefix and a length that issuer uses, passing the Luhn check;
//! - `email`: a local part and a domain of dot-separated labels ending in a letters-only TLD;
//! - `jwt`: three base64url parts whose first two decode to JSON objects, the header with an
//!   `alg`; the signature is empty only with `"alg":"none"`;
//! - `aws_access_key`: the documented access key ID prefixes `AKIA` (long-term) and `ASIA`
//!   (temporary), followed by 16 characters of the base32 alphabet;
//! - `bearer_token`: the token after `Bearer ` (not the word), at least 16 characters of the
//!   RFC 6750 token alphabet mixing at least two character classes;
//! - `private_key`: a PEM `-----BEGIN ... PRIVATE KEY-----` block with a base64 body, to its
//!   `-----END` line or the end of the value (a truncated key is still a key).
//!
//! Matches are byte ranges on character boundaries, sorted and not overlapping.

use base64::Engine as _;
use regex::Regex;

/// One detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    CreditCard,
    Email,
    Jwt,
    AwsAccessKey,
    BearerToken,
    PrivateKey,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::CreditCard, Kind::Email, Kind::Jwt, Kind::AwsAccessKey, Kind::BearerToken, Kind::PrivateKey];

    /// The name used in the configuration and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CreditCard => "credit_card",
            Kind::Email => "email",
            Kind::Jwt => "jwt",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::BearerToken => "bearer_token",
            Kind::PrivateKey => "private_key",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One sensitive value found: `s[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// A set of detectors, compiled once.
pub struct Detectors {
    kinds: Vec<Kind>,
    email: Regex,
    jwt: Regex,
    aws: Regex,
    bearer: Regex,
    private_key: Regex,
}

impl Detectors {
    pub fn new(kinds: &[Kind]) -> Detectors {
        let re = |p: &str| Regex::new(p).expect("a detector's pattern compiles");
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        Detectors {
            kinds,
            email: re(r"[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"),
            jwt: re(r"eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"),
            aws: re(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b"),
            bearer: re(r"(?i)\bbearer[ \t]+([A-Za-z0-9\-._~+/]+=*)"),
            private_key: re(
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\z)",
            ),
        }
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Appends the validated matches in `s` to `out` (cleared first): sorted by start, an
    /// overlapped match dropped (the earlier, then the longer, wins).
    pub fn find(&self, s: &str, out: &mut Vec<Match>) {
        out.clear();
        let b = s.as_bytes();
        let h = Hints::of(b);
        if h.is_empty() {
            return;
        }
        for &kind in &self.kinds {
            match kind {
                Kind::CreditCard if h.digits >= 13 => cards(b, out),
                Kind::Email if h.has(EMAIL) => {
                    for m in self.email.find_iter(s) {
                        if email_ok(m.as_str()) {
                            out.push(Match { kind, start: m.start(), end: m.end() });
                        }
                    }
                }
                Kind::Jwt if h.has(JWT) => {
                    for m in self.jwt.find_iter(s) {
                        let boundary = m.start() == 0 || !is_b64url(b[m.start() - 1]);
                        if boundary && jwt_ok(m.as_str()) {
                            out.push(Match { kind, start: m.start(), end: m.end() });
                        }
                    }
                }
                Kind::AwsAccessKey if h.has(AWS) => {
                    out.extend(self.aws.find_iter(s).map(|m| Match { kind, start: m.start(), end: m.end() }));
                }
                Kind::BearerToken if h.has(BEARER) => {
                    for c in self.bearer.captures_iter(s) {
                        if let Some(t) = c.get(1)
                            && token_ok(t.as_str())
                        {
                            out.push(Match { kind, start: t.start(), end: t.end() });
                        }
                    }
                }
                Kind::PrivateKey if h.has(PRIVATE_KEY) => {
                    for m in self.private_key.find_iter(s) {
                        if private_key_ok(m.as_str()) {
                            out.push(Match { kind, start: m.start(), end: m.end() });
                        }
                    }
                }
                _ => {}
            }
        }
        if out.len() > 1 {
            out.sort_by_key(|m| (m.start, std::cmp::Reverse(m.end)));
            let mut end = 0;
            out.retain(|m| {
                let keep = m.start >= end;
                if keep {
                    end = m.end;
                }
                keep
            });
        }
    }
}

/// `s` with every character of each match replaced by `*` (the text around them kept).
pub fn mask(s: &str, matches: &[Match]) -> String {
    replace(s, matches, |m| "*".repeat(m.chars().count()))
}

/// `s` with each match replaced by `with(matched text)`.
pub fn replace(s: &str, matches: &[Match], mut with: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for m in matches {
        out.push_str(&s[at..m.start]);
        out.push_str(&with(&s[m.start..m.end]));
        at = m.end;
    }
    out.push_str(&s[at..]);
    out
}

fn memchr(c: u8, b: &[u8]) -> bool {
    memchr::memchr(c, b).is_some()
}

const EMAIL: u8 = 1;
const JWT: u8 = 2;
const AWS: u8 = 4;
const BEARER: u8 = 8;
const PRIVATE_KEY: u8 = 16;

/// Strings shorter than this are pre-filtered in one scalar pass; longer ones by one
/// vectorised search per detector (the crossover, measured with the policy benchmark).
const SHORT: usize = 96;

/// What a string may hold, from a cheap look: its digits (a card needs 13) and which of the
/// detectors' anchors (`@`, `eyJ`, `AKIA`/`ASIA`, `bearer`, `-----BEGIN `) it contains. A
/// detector runs only when its anchor is there, so most strings are dismissed here.
struct Hints {
    digits: u32,
    flags: u8,
}

impl Hints {
    fn of(b: &[u8]) -> Hints {
        if b.len() >= SHORT {
            let digits = b.iter().map(|c| u32::from(c.is_ascii_digit())).sum::<u32>();
            let mut flags = 0;
            for (bit, hit) in [
                (EMAIL, memchr(b'@', b)),
                (JWT, contains(b, b"eyJ")),
                (AWS, contains(b, b"AKIA") || contains(b, b"ASIA")),
                (BEARER, contains_ignore_case(b, b"bearer")),
                (PRIVATE_KEY, contains(b, b"-----BEGIN ")),
            ] {
                if hit {
                    flags |= bit;
                }
            }
            return Hints { digits, flags };
        }
        let (mut digits, mut flags) = (0u32, 0u8);
        for (i, &c) in b.iter().enumerate() {
            match c {
                b'0'..=b'9' => digits += 1,
                b'@' => flags |= EMAIL,
                b'e' if b[i..].starts_with(b"eyJ") => flags |= JWT,
                b'A' if b[i..].starts_with(b"AKIA") || b[i..].starts_with(b"ASIA") => flags |= AWS,
                b'b' | b'B' if b.get(i..i + 6).is_some_and(|w| w.eq_ignore_ascii_case(b"bearer")) => flags |= BEARER,
                b'-' if b[i..].starts_with(b"-----BEGIN ") => flags |= PRIVATE_KEY,
                _ => {}
            }
        }
        Hints { digits, flags }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn is_empty(&self) -> bool {
        self.flags == 0 && self.digits < 13
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Whether `hay` holds `needle` (lowercase ASCII) in any case: a vectorised search for its
/// first letter in both cases, then a comparison.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let (first, upper) = (needle[0], needle[0].to_ascii_uppercase());
    memchr::memchr2_iter(first, upper, hay)
        .any(|i| hay.get(i..i + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)))
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// Card numbers: runs of 13 to 19 digits (grouped by one kind of separator) that are not part
/// of a longer alphanumeric token, with a known issuer and the Luhn check.
/// The caller checked that `b` holds at least 13 digits.
fn cards(b: &[u8], out: &mut Vec<Match>) {
    let mut digits = [0u8; 19];
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let (start, mut j, mut n, mut sep, mut too_long) = (i, i, 0usize, None, false);
        loop {
            match b.get(j) {
                Some(c) if c.is_ascii_digit() => {
                    if n < digits.len() {
                        digits[n] = c - b'0';
                    } else {
                        too_long = true;
                    }
                    n += 1;
                    j += 1;
                }
                Some(&c @ (b' ' | b'-'))
                    if b.get(j + 1).is_some_and(u8::is_ascii_digit) && sep.is_none_or(|s| s == c) =>
                {
                    sep = Some(c);
                    j += 1;
                }
                _ => break,
            }
        }
        let boundary = !b.get(j).is_some_and(u8::is_ascii_alphanumeric);
        if boundary && !too_long && (13..=19).contains(&n) && issuer_ok(&digits[..n]) && luhn(&digits[..n]) {
            out.push(Match { kind: Kind::CreditCard, start, end: j });
        }
        i = j.max(i + 1);
    }
}

/// The Luhn (mod 10) check.
fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A known issuer identification number range, with a length that issuer uses.
fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (p2, p3, p4, p6) = (prefix(2), prefix(3), prefix(4), prefix(6));
    match d[0] {
        // Visa.
        4 => matches!(n, 13 | 16 | 19),
        // Mastercard (51-55, 2221-2720), Mir (2200-2204), Maestro (5018, 5020, 5038, 5893).
        5 | 2 => {
            ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16
                || (2200..=2204).contains(&p4) && (16..=19).contains(&n)
                || matches!(p4, 5018 | 5020 | 5038 | 5893) && (13..=19).contains(&n)
        }
        // Amex (34, 37), Diners (300-305, 36, 38, 39), JCB (3528-3589).
        3 => {
            matches!(p2, 34 | 37) && n == 15
                || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&n)
                || (3528..=3589).contains(&p4) && (16..=19).contains(&n)
        }
        // Discover (6011, 644-649, 65, 622126-622925), UnionPay (62), Maestro (6304, 6759,
        // 6761-6763).
        6 => {
            (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
                && (16..=19).contains(&n)
                || p2 == 62 && (16..=19).contains(&n)
                || matches!(p4, 6304 | 6759 | 6761..=6763) && (13..=19).contains(&n)
        }
        _ => false,
    }
}

fn email_ok(m: &str) -> bool {
    let Some((local, domain)) = m.rsplit_once('@') else { return false };
    !local.starts_with('.') && !local.ends_with('.') && !local.contains("..") && domain.len() <= 253
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

fn jwt_ok(m: &str) -> bool {
    let mut parts = m.split('.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let object = |part: &str| {
        b64url(part)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| if let serde_json::Value::Object(o) = v { Some(o) } else { None })
    };
    let Some(header) = object(h) else { return false };
    let Some(alg) = header.get("alg").and_then(|a| a.as_str()) else { return false };
    if object(p).is_none() {
        return false;
    }
    if sig.is_empty() { alg.eq_ignore_ascii_case("none") } else { b64url(sig).is_some() }
}

fn token_ok(t: &str) -> bool {
    let t = t.trim_end_matches('=');
    let classes = [
        t.bytes().any(|c| c.is_ascii_lowercase()),
        t.bytes().any(|c| c.is_ascii_uppercase()),
        t.bytes().any(|c| c.is_ascii_digit()),
        t.bytes().any(|c| !c.is_ascii_alphanumeric()),
    ];
    t.len() >= 16 && classes.iter().filter(|x| **x).count() >= 2
}

/// The block has a body of at least 16 base64 characters between its BEGIN and END lines (or
/// the end of the value).
fn private_key_ok(m: &str) -> bool {
    // Past "-----BEGIN ... PRIVATE KEY-----" (the second run of dashes).
    let Some(body) = m.splitn(3, "-----").nth(2) else { return false };
    let body = body.split("-----END").next().unwrap_or("");
    body.bytes().filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')).count() >= 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(kinds: &[Kind], s: &str) -> Vec<(Kind, String)> {
        let d = Detectors::new(kinds);
        let mut out = Vec::new();
        d.find(s, &mut out);
        out.iter().map(|m| (m.kind, s[m.start..m.end].to_string())).collect()
    }

    fn jwt(header: &str, payload: &str, sig: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.{sig}", e(header), e(payload))
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        let all = &[Kind::CreditCard];
        // Valid test numbers of several issuers, plain and grouped.
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "36227206271667",
            "6200000000000005",
        ] {
            assert_eq!(found(all, &format!("card {card}, thanks")), [(Kind::CreditCard, card.to_string())], "{card}");
        }
        for look_alike in [
            "4111111111111112",        // Luhn fails
            "1234567812345670",        // passes Luhn, no issuer starts with 1
            "41111111111111110000",    // 20 digits
            "4111 1111-1111 1111",     // mixed separators
            "order-4111111111111111x", // part of a token
            "id 94111111111111111",    // longer number
            "trace 5b8efff798038103d269b633813fc60c",
            "4111111111111", // 13 digits but Luhn fails
        ] {
            assert_eq!(found(all, look_alike), [], "{look_alike}");
        }
    }

    #[test]
    fn masking_keeps_the_surrounding_text() {
        let d = Detectors::new(&Kind::ALL);
        let s = "card 4111111111111111 for alice@example.com (café)";
        let mut m = Vec::new();
        d.find(s, &mut m);
        assert_eq!(mask(s, &m), "card **************** for ***************** (café)");
    }

    #[test]
    fn emails() {
        let e = &[Kind::Email];
        assert_eq!(
            found(e, "to: Alice.B+tag@mail.example.co.uk;"),
            [(Kind::Email, "Alice.B+tag@mail.example.co.uk".into())]
        );
        for not in ["a@b", "user@localhost", "@example.com", "a..b@example.com", "x@-bad-.com", "me@example.c0m"] {
            assert_eq!(found(e, not), [], "{not}");
        }
    }

    #[test]
    fn jwts_are_parsed() {
        let j = &[Kind::Jwt];
        let good = jwt(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"sub":"1234567890","exp":1}"#, "c2lnbmF0dXJl");
        assert_eq!(found(j, &format!("token={good}&x=1")), [(Kind::Jwt, good.clone())]);
        let none = jwt(r#"{"alg":"none"}"#, r#"{"sub":"x"}"#, "");
        assert_eq!(found(j, &format!("{none} ")), [(Kind::Jwt, none.clone())]);
        // A header without alg, a payload that is not JSON, an unsigned token that claims a
        // signature algorithm, and text that merely starts like one.
        for bad in [
            jwt(r#"{"typ":"JWT"}"#, r#"{"sub":"x"}"#, "c2ln"),
            jwt(r#"{"alg":"HS256"}"#, "not json", "c2ln"),
            jwt(r#"{"alg":"HS256"}"#, r#"{"sub":"x"}"#, ""),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi.notbase64!".to_string(),
        ] {
            assert_eq!(found(j, &bad), [], "{bad}");
        }
    }

    #[test]
    fn aws_keys_bearer_tokens_private_keys() {
        let k = &[Kind::AwsAccessKey];
        assert_eq!(found(k, "key=AKIAIOSFODNN7EXAMPLE"), [(Kind::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE".into())]);
        assert_eq!(found(k, "ASIAY34FZKBOKMUTVV7A,"), [(Kind::AwsAccessKey, "ASIAY34FZKBOKMUTVV7A".into())]);
        for not in ["AKIAIOSFODNN7EXAMPLE1", "AKIAIOSFODNN0EXAMPLE", "AIDAIOSFODNN7EXAMPLE", "xAKIAIOSFODNN7EXAMPLE"] {
            assert_eq!(found(k, not), [], "{not}");
        }
        let b = &[Kind::BearerToken];
        assert_eq!(found(b, "Authorization: Bearer mF_9.B5f-4.1JqM tail"), [], "RFC 6750's example: 15 characters");
        assert_eq!(
            found(b, "authorization: bearer 8f14e45fceea167a5a36dedd4bea2543"),
            [(Kind::BearerToken, "8f14e45fceea167a5a36dedd4bea2543".into())]
        );
        assert_eq!(found(b, "the bearer authentication scheme"), []);
        let p = &[Kind::PrivateKey];
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7Mhgwm\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(p, &format!("key:\n{pem}\nend")), [(Kind::PrivateKey, pem.into())]);
        let truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
        assert_eq!(found(p, truncated), [(Kind::PrivateKey, truncated.into())]);
        assert_eq!(found(p, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----"), [], "no body");
        assert_eq!(
            found(p, "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----"),
            []
        );
    }

    #[test]
    fn overlapping_matches_keep_the_first_and_longest() {
        // A JWT inside a bearer header: both match the same bytes; one mask.
        let token = jwt(r#"{"alg":"HS256"}"#, r#"{"sub":"1"}"#, "c2lnbmF0dXJl");
        let s = format!("Bearer {token}");
        let got = found(&[Kind::Jwt, Kind::BearerToken], &s);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, token);
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("ssn"), None);
    }

    #[test]
    fn short_and_long_strings_are_prefiltered_alike() {
        let d = Detectors::new(&Kind::ALL);
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl";
        for s in [
            "card 4111 1111 1111 1111 ok",
            "mail alice@example.com",
            jwt,
            "key AKIAIOSFODNN7EXAMPLE",
            "Authorization: Bearer abcdefghijklmnop1234",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----",
            "nothing to see here 12345",
        ] {
            let long = format!("{s}{}", " padding".repeat(20));
            assert!(s.len() < SHORT || s.starts_with("-----"), "{s}");
            assert!(long.len() >= SHORT);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            d.find(s, &mut a);
            d.find(&long, &mut b);
            assert_eq!(a, b, "{s}");
            assert_eq!(a.is_empty(), s.starts_with("nothing"), "{s}: {a:?}");
        }
    }
}

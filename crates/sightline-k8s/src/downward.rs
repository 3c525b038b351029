//! Sidecar mode: the sidecar's own pod, from the downward API. No API calls and no RBAC: every
//! resource the sidecar receives comes from the pod it runs in.
//!
//! ```yaml
//! env:
//!   - { name: K8S_POD_NAME,  valueFrom: { fieldRef: { fieldPath: metadata.name } } }
//!   - { name: K8S_NAMESPACE, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
//!   - { name: K8S_POD_UID,   valueFrom: { fieldRef: { fieldPath: metadata.uid } } }
//!   - { name: K8S_NODE_NAME, valueFrom: { fieldRef: { fieldPath: spec.nodeName } } }
//!   - { name: K8S_POD_IP,    valueFrom: { fieldRef: { fieldPath: status.podIP } } }
//! volumes:
//!   - name: podinfo
//!     downwardAPI:
//!       items:
//!         - { path: labels,      fieldRef: { fieldPath: metadata.labels } }
//!         - { path: annotations, fieldRef: { fieldPath: metadata.annotations } }
//! ```

use crate::store::{Kept, KeptKeys};
use crate::{DownwardApi, Error, PodMeta};
use std::path::Path;
use std::sync::Arc;

/// The sidecar's pod. `env` reads environment variables; files that do not exist mean no
/// labels (or annotations).
pub fn load(cfg: &DownwardApi, kept: &Kept, env: &dyn Fn(&str) -> Option<String>) -> Result<PodMeta, Error> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let required = |name: &str, field: &str| {
        var(name).ok_or_else(|| {
            Error::Downward(format!(
                "kubernetes.mode downward_api: the environment variable {name} is not set (set it from {field} with the downward API)"
            ))
        })
    };
    let name = required(&cfg.pod_name_env, "metadata.name")?;
    let namespace = required(&cfg.namespace_env, "metadata.namespace")?;
    let labels = read_file(cfg.labels_file.as_deref())?;
    let annotations = read_file(cfg.annotations_file.as_deref())?;
    let get = |list: &[(String, String)], k: &str| -> Option<String> {
        list.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    };
    // A Deployment's pod is named <replicaset>-<suffix>, and its ReplicaSet
    // <deployment>-<pod-template-hash>.
    let deployment = get(&labels, "pod-template-hash").and_then(|hash| {
        let rs = name.rsplit_once('-')?.0;
        crate::deployment_name(rs, Some(&hash)).map(Arc::from)
    });
    let keys = KeptKeys::from(kept);
    let ip = var(&cfg.pod_ip_env).and_then(|v| v.parse().ok());
    Ok(PodMeta {
        uid: Arc::from(var(&cfg.pod_uid_env).unwrap_or_default()),
        name: Arc::from(name),
        namespace: Arc::from(namespace),
        node: var(&cfg.node_name_env).map(Arc::from),
        deployment,
        ip,
        labels: Kept::pick(&keys.pod_labels, |k| labels.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())),
        annotations: Kept::pick(&keys.pod_annotations, |k| {
            annotations.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
        }),
        created: 0,
        owns_ip: ip.is_some(),
    })
}

fn read_file(path: Option<&Path>) -> Result<Vec<(String, String)>, Error> {
    let Some(path) = path else { return Ok(Vec::new()) };
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(|e| Error::Downward(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Downward(format!("{}: {e}", path.display()))),
    }
}

/// A downward-API labels or annotations file: one `key="value"` a line, the value quoted as
/// Go's `strconv.Quote` does.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("line {}: no `=`", n + 1))?;
        let value = unquote(value).ok_or_else(|| format!("line {}: the value is not a quoted string", n + 1))?;
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// Go's `strconv.Unquote` for a double-quoted string.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n {
                return None;
            }
            u32::from_str_radix(&digits, 16).ok()
        };
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            // \xNN is a byte; in a label or annotation it is part of invalid UTF-8, which
            // the API server does not store: keep it as the replacement character.
            'x' => {
                hex(&mut chars, 2)?;
                out.push(char::REPLACEMENT_CHARACTER);
            }
            'u' => out.push(char::from_u32(hex(&mut chars, 4)?)?),
            'U' => out.push(char::from_u32(hex(&mut chars, 8)?)?),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_downward_api_files_are_read_as_go_writes_them() {
        let text = "app=\"checkout\"\nteam=\"payments\"\nnote=\"a \\\"quoted\\\" value\\nwith \\u00e9\"\n";
        let kv = parse(text).unwrap();
        assert_eq!(kv[0], ("app".into(), "checkout".into()));
        assert_eq!(kv[1], ("team".into(), "payments".into()));
        assert_eq!(kv[2].1, "a \"quoted\" value\nwith é");
        assert!(parse("novalue\n").is_err());
        assert!(parse("k=unquoted\n").is_err());
        assert!(parse("k=\"bad \\q\"\n").is_err());
    }

    #[test]
    fn a_sidecar_pod_comes_from_its_environment_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels");
        std::fs::write(&labels, "team=\"payments\"\npod-template-hash=\"5f6d8c9b7\"\n").unwrap();
        let cfg = DownwardApi {
            labels_file: Some(labels),
            annotations_file: Some(dir.path().join("missing")),
            ..DownwardApi::default()
        };
        let env: HashMap<&str, &str> = [
            ("K8S_POD_NAME", "checkout-5f6d8c9b7-abcde"),
            ("K8S_NAMESPACE", "shop"),
            ("K8S_POD_UID", "u-9"),
            ("K8S_NODE_NAME", "node-3"),
        ]
        .into();
        let read = |k: &str| env.get(k).map(|v| v.to_string());
        let kept = crate::KubernetesConfig::default().kept_keys();
        let p = load(&cfg, &kept, &read).unwrap();
        assert_eq!(&*p.namespace, "shop");
        assert_eq!(p.deployment.as_deref(), Some("checkout"));
        assert_eq!(p.node.as_deref(), Some("node-3"));
        assert_eq!(p.label("team"), Some("payments"));
        assert_eq!(p.ip, None);
        let e = load(&cfg, &kept, &|_| None).unwrap_err().to_string();
        assert!(e.contains("K8S_POD_NAME") && e.contains("metadata.name"), "{e}");
    }
}

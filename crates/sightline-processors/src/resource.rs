//! `processors.resource`, as the collector contrib's `resourceprocessor`: the attribute
//! actions of [`attraction`](crate::attraction) applied to every resource's attributes.
//!
//! Each `Resource` message is decoded alone (its attributes and dropped count), edited and
//! re-encoded by [`wire::rewrite_resources`]; scopes and items are copied through as bytes. A
//! request's resources are usually few and repeat across requests, so the rewritten bytes are
//! kept per thread, keyed by the original resource's bytes (bounded).

use crate::attraction::{ActionConfig, Actions, Placement, Request};
use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::Deserialize;
use sightline_core::pipeline::{ProcessError, Processor};
use sightline_core::{Payload, wire};
use std::cell::RefCell;
use std::collections::HashMap;
use thread_local::ThreadLocal;

/// `processors.resource`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The actions, in order (required, at least one).
    #[serde(default)]
    pub attributes: Vec<ActionConfig>,
}

impl ResourceConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.attributes.is_empty() {
            return vec![("attributes".into(), "is required: at least one action".into())];
        }
        match Actions::new(&self.attributes) {
            Ok(_) => Vec::new(),
            Err(errs) => errs.into_iter().map(|(k, m)| (format!("attributes.{k}"), m)).collect(),
        }
    }
}

/// Rewritten resources by original bytes.
type Rewritten = HashMap<Box<[u8]>, Box<[u8]>>;

/// Rewritten resources kept per thread.
const CACHE_ENTRIES: usize = 4096;

pub struct ResourceProcessor {
    actions: Actions,
    placement: Placement,
    cache: ThreadLocal<RefCell<Rewritten>>,
}

impl ResourceProcessor {
    /// `cfg` has passed [`ResourceConfig::validate`].
    /// `placement`: after a `batch` processor or not, for `from_context`.
    pub fn new(cfg: &ResourceConfig, placement: Placement) -> Result<ResourceProcessor, String> {
        let actions = Actions::new(&cfg.attributes).map_err(|e| format!("{e:?}"))?;
        Ok(ResourceProcessor { actions, placement, cache: ThreadLocal::new() })
    }
}

struct Editor<'a> {
    actions: &'a Actions,
    req: Request<'a>,
    /// Rewritten resources by their bytes; not used when an action reads the request context.
    cache: &'a mut Rewritten,
    uses_context: bool,
    scratch: Vec<u8>,
    error: Option<String>,
}

impl wire::ResourceEditor for Editor<'_> {
    fn edit(&mut self, resource: &[u8], _entry: &[u8]) -> &[u8] {
        if !self.uses_context && self.cache.contains_key(resource) {
            return &self.cache[resource];
        }
        let mut r = match Resource::decode(resource) {
            Ok(r) => r,
            Err(e) => {
                self.error.get_or_insert_with(|| format!("resource: {e}"));
                self.scratch.clear();
                self.scratch.extend_from_slice(resource);
                return &self.scratch;
            }
        };
        self.actions.apply(&mut r.attributes, self.req);
        if self.uses_context {
            self.scratch = r.encode_to_vec();
            return &self.scratch;
        }
        let out = r.encode_to_vec().into_boxed_slice();
        if self.cache.len() >= CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(resource.into(), out);
        &self.cache[resource]
    }
}

impl Processor for ResourceProcessor {
    fn process(&self, payload: Payload) -> Result<Payload, ProcessError> {
        let cell = self.cache.get_or_default();
        let mut cache = cell.borrow_mut();
        let req = Request { client: payload.client(), placement: &self.placement };
        let mut editor = Editor {
            actions: &self.actions,
            req,
            cache: &mut cache,
            uses_context: self.actions.uses_context(),
            scratch: Vec::new(),
            error: None,
        };
        let mut out = Vec::new();
        wire::rewrite_resources(payload.bytes(), &mut out, &mut editor)
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
        if let Some(e) = editor.error {
            return Err(ProcessError::Invalid(e));
        }
        if out.capacity() - out.len() > out.len() / 32 {
            out.shrink_to_fit();
        }
        let items = payload.items();
        Ok(payload.with_bytes(Bytes::from(out), items))
    }
}

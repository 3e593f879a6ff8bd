//! The `Compile` RPC and its cache, bounded in entries and in bytes.

use std::sync::Mutex;

use bytes::Bytes;
use tonic::Status;

use super::cache::{level, plan_bytes, Level, ENTRY_OVERHEAD, MAX_RECEIVED_SPEC_BYTES};
use super::errors::status;
use super::wire::{CompileRequest, SpecWire};
use super::KeyFilterService;
use crate::proto::CompileResponse;
use keyfilter_core::codegen::PyVersion;
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::canonical_digest;
use keyfilter_core::{compile_plan, Target};

/// First level: the request as received (its spec's bytes, copied).
type ReceivedKey = (Bytes, PyVersion, String);
/// Second level: what the request means.
type PlanKey = (Plan, Target);

/// The caches of generated code. The first level is keyed by the request as
/// received (spec bytes, version, name): a repeated request skips validation
/// and planning. The second is keyed by (normalized plan, version, name):
/// specs that normalize alike share generated code. Each level holds at most
/// `entries` entries and half of `max_bytes`; everything kept is an owned
/// copy, so no entry keeps a request buffer alive.
#[derive(Debug)]
pub struct CompileCache {
    received: Option<Mutex<Level<ReceivedKey, Bytes>>>,
    plans: Option<Mutex<Level<PlanKey, Bytes>>>,
}

impl CompileCache {
    /// Caches of at most `entries` entries and `max_bytes` bytes in all; 0 disables caching.
    pub fn new(entries: usize, max_bytes: usize) -> Self {
        CompileCache {
            received: level(entries, max_bytes / 2),
            plans: level(entries, max_bytes / 2),
        }
    }

    /// The code last generated for exactly this request, if still cached.
    pub fn get_received(&self, spec: &SpecWire, version: PyVersion, name: &str) -> Option<Bytes> {
        let received = self.received.as_ref()?;
        if spec.as_bytes().len() > MAX_RECEIVED_SPEC_BYTES {
            return None;
        }
        let key = (Bytes::copy_from_slice(spec.as_bytes()), version, name.to_string());
        let hit = received.lock().expect("cache lock poisoned").get(&key)?;
        crate::service::metrics::compile_cache(true);
        Some(hit)
    }

    /// Remembers the code generated for a request (see [`get_received`](Self::get_received)).
    pub fn put_received(&self, spec: &SpecWire, version: PyVersion, name: &str, code: Bytes) {
        let Some(received) = &self.received else { return };
        let spec = spec.as_bytes();
        if spec.len() > MAX_RECEIVED_SPEC_BYTES {
            return;
        }
        let weight = spec.len() + name.len() + code.len() + ENTRY_OVERHEAD;
        let key = (Bytes::copy_from_slice(spec), version, name.to_string());
        received.lock().expect("cache lock poisoned").put(key, code, weight);
    }

    /// The marshal bytes for `key`, generated on a miss.
    pub fn get_or_generate(&self, key: PlanKey) -> Bytes {
        let Some(plans) = &self.plans else {
            return compile_plan(&key.0, &key.1).marshal().into();
        };
        if let Some(hit) = plans.lock().expect("cache lock poisoned").get(&key) {
            crate::service::metrics::compile_cache(true);
            return hit;
        }
        crate::service::metrics::compile_cache(false);
        let code: Bytes = compile_plan(&key.0, &key.1).marshal().into();
        let weight = plan_bytes(&key.0) + key.1.name.len() + code.len() + ENTRY_OVERHEAD;
        plans
            .lock()
            .expect("cache lock poisoned")
            .put(key, code.clone(), weight);
        code
    }

    /// Bytes held by both levels (for tests and metrics).
    pub fn bytes(&self) -> usize {
        let received = self
            .received
            .as_ref()
            .map_or(0, |l| l.lock().expect("cache lock poisoned").bytes);
        let plans = self
            .plans
            .as_ref()
            .map_or(0, |l| l.lock().expect("cache lock poisoned").bytes);
        received + plans
    }
}

/// The code for a request: from the cache's first level, or validated,
/// planned and taken from the second level (or generated), then remembered.
fn code_for(service: &KeyFilterService, spec: Option<&SpecWire>, target: Target, name: &str) -> Result<Bytes, Status> {
    let cache = &service.cache;
    let version = target.version;
    if let Some(code) = spec.and_then(|spec| cache.get_received(spec, version, name)) {
        return Ok(code);
    }
    let plan = service.plan(spec)?;
    let code = cache.get_or_generate((plan, target));
    if let Some(spec) = spec {
        cache.put_received(spec, version, name, code.clone());
    }
    Ok(code)
}

/// Serves one `Compile` request (runs on a CPU slot when the spec is large):
/// `python_version`, `name`, then the spec are checked, in that order.
pub(super) fn compile(service: &KeyFilterService, request: CompileRequest) -> Result<CompileResponse, Status> {
    let target = Target::parse(&request.python_version, &request.name).map_err(status)?;
    let version = target.version;
    let code = code_for(service, request.spec.as_ref(), target, &request.name)?;
    // The version is echoed as the caller wrote it ("3.12" or "3.12.7").
    let python_version = request.python_version;
    let magic = version.magic();
    let (signature, key_id) = match &service.config.signer {
        Some(signer) => {
            // The signature names the request by the digest of its validated
            // spec. The spec is validated again here rather than carried out
            // of the cache (whose first level skips validation): code_for has
            // accepted it, so this cannot fail; only signed answers pay for it,
            // and like the Ed25519 signature (which hashes the code, twice) it
            // costs time in proportion to the spec.
            let spec = service.spec(request.spec.as_ref())?;
            let digest = canonical_digest(&spec);
            let signature = signer.sign(&digest, &python_version, &request.name, &magic, &code);
            (Bytes::copy_from_slice(&signature), signer.key_id().to_string())
        }
        None => (Bytes::new(), String::new()),
    };
    Ok(CompileResponse {
        code,
        python_version,
        magic: Bytes::copy_from_slice(&magic),
        signature,
        key_id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::cache::spec;
    use super::*;

    #[test]
    fn the_first_level_hits_only_the_exact_request() {
        let cache = CompileCache::new(4, 1 << 20);
        let code = Bytes::from_static(b"code");
        cache.put_received(&spec(b"a"), PyVersion::V3_12, "f", code.clone());
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_12, "f"), Some(code));
        assert_eq!(cache.get_received(&spec(b"b"), PyVersion::V3_12, "f"), None);
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_13, "f"), None);
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_12, "g"), None);
    }

    #[test]
    fn a_disabled_cache_remembers_nothing() {
        for cache in [CompileCache::new(0, 1 << 20), CompileCache::new(4, 0)] {
            cache.put_received(&spec(b"a"), PyVersion::V3_12, "f", Bytes::from_static(b"code"));
            assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_12, "f"), None);
        }
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_entries_and_refuses_oversized_ones() {
        let budget = 64 * 1024;
        let cache = CompileCache::new(1000, budget);
        let code = Bytes::from(vec![0u8; 4096]);
        for i in 0..100u32 {
            cache.put_received(&spec(&i.to_be_bytes()), PyVersion::V3_12, "f", code.clone());
            assert!(cache.bytes() <= budget / 2, "{} bytes held", cache.bytes());
        }
        // The newest stayed, the oldest went.
        assert!(cache
            .get_received(&spec(&99u32.to_be_bytes()), PyVersion::V3_12, "f")
            .is_some());
        assert!(cache
            .get_received(&spec(&0u32.to_be_bytes()), PyVersion::V3_12, "f")
            .is_none());
        // An entry above the whole level's budget is not kept (and evicts nothing).
        let held = cache.bytes();
        cache.put_received(&spec(b"big"), PyVersion::V3_12, "f", Bytes::from(vec![0u8; budget]));
        assert_eq!(cache.bytes(), held);
        // A spec above the first level's size limit is not kept either.
        cache.put_received(
            &spec(&vec![7u8; MAX_RECEIVED_SPEC_BYTES + 1]),
            PyVersion::V3_12,
            "f",
            code,
        );
        assert_eq!(cache.bytes(), held);
    }

    #[test]
    fn cached_keys_own_their_bytes() {
        let cache = CompileCache::new(4, 1 << 20);
        let wire = spec(b"tenant");
        cache.put_received(&wire, PyVersion::V3_12, "f", Bytes::from_static(b"code"));
        let level = cache.received.as_ref().unwrap().lock().unwrap();
        let key = level.oldest_key().unwrap();
        assert_ne!(key.0.as_ptr(), wire.as_bytes().as_ptr(), "the key borrows the request");
    }
}

//! The `Compile` RPC and its bounded cache.

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;
use rustc_hash::{FxBuildHasher, FxHasher};
use tonic::Status;

use super::KeyFilterService;
use crate::codegen::{function_name, Function, PyVersion};
use crate::plan::Plan;
use crate::proto::{CompileRequest, CompileResponse, FilterSpec};
use crate::spec::{canonical_digest, validate};

type CacheKey = (Plan, PyVersion, String);

/// A request seen before, kept whole so that a hit is checked exactly (the
/// first level is indexed by a hash of it).
#[derive(Debug)]
struct Received {
    spec: FilterSpec,
    version: PyVersion,
    name: String,
    code: Bytes,
}

impl Received {
    fn hash(spec: &FilterSpec, version: PyVersion, name: &str) -> u64 {
        let mut hasher = FxHasher::default();
        (spec.arity, &spec.predicates, version, name).hash(&mut hasher);
        hasher.finish()
    }

    fn is(&self, spec: &FilterSpec, version: PyVersion, name: &str) -> bool {
        self.version == version && self.name == name && self.spec == *spec
    }
}

/// The bounded LRU caches of generated code. The first level is keyed by the
/// request as received (spec, version, name): a repeated request skips
/// validation and planning. The second is keyed by (normalized plan, version,
/// name): specs that normalize alike share generated code.
#[derive(Debug)]
pub struct CompileCache {
    received: Option<Mutex<LruCache<u64, Received, FxBuildHasher>>>,
    entries: Option<Mutex<LruCache<CacheKey, Bytes>>>,
}

impl CompileCache {
    /// Caches of at most `capacity` entries each; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        CompileCache {
            received: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::with_hasher(c, FxBuildHasher))),
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The code last generated for exactly this request, if still cached.
    pub fn get_received(&self, spec: &FilterSpec, version: PyVersion, name: &str) -> Option<Bytes> {
        let received = self.received.as_ref()?;
        let hash = Received::hash(spec, version, name);
        let mut received = received.lock().expect("cache lock poisoned");
        let hit = received.get(&hash).filter(|r| r.is(spec, version, name))?;
        crate::server::metrics::compile_cache(true);
        Some(hit.code.clone())
    }

    /// Remembers the code generated for a request (see [`get_received`](Self::get_received)).
    pub fn put_received(&self, spec: &FilterSpec, version: PyVersion, name: &str, code: Bytes) {
        if let Some(received) = &self.received {
            let entry = Received {
                spec: spec.clone(),
                version,
                name: name.to_string(),
                code,
            };
            let hash = Received::hash(spec, version, name);
            received.lock().expect("cache lock poisoned").put(hash, entry);
        }
    }

    /// The marshal bytes for `key`, generated on a miss.
    pub fn get_or_generate(&self, key: CacheKey) -> Bytes {
        let Some(entries) = &self.entries else {
            return Function::generate(&key.0, key.1, &key.2).marshal().into();
        };
        if let Some(hit) = entries.lock().expect("cache lock poisoned").get(&key) {
            crate::server::metrics::compile_cache(true);
            return hit.clone();
        }
        crate::server::metrics::compile_cache(false);
        let code: Bytes = Function::generate(&key.0, key.1, &key.2).marshal().into();
        entries.lock().expect("cache lock poisoned").put(key, code.clone());
        code
    }
}

/// The code for a request: from the cache's first level, or validated,
/// planned and taken from the second level (or generated), then remembered.
fn code_for(
    service: &KeyFilterService,
    spec: Option<&FilterSpec>,
    version: PyVersion,
    name: &str,
) -> Result<Bytes, Status> {
    let cache = &service.cache;
    if let Some(code) = spec.and_then(|spec| cache.get_received(spec, version, name)) {
        return Ok(code);
    }
    let function_name = function_name(name).map_err(|e| Status::invalid_argument(format!("name: {e}")))?;
    let plan = service.plan(spec)?;
    let code = cache.get_or_generate((plan, version, function_name.to_string()));
    if let Some(spec) = spec {
        cache.put_received(spec, version, name, code.clone());
    }
    Ok(code)
}

pub(super) fn compile(service: &KeyFilterService, request: CompileRequest) -> Result<CompileResponse, Status> {
    let version: PyVersion = request
        .python_version
        .parse()
        .map_err(|e| Status::invalid_argument(format!("python_version: {e}")))?;
    let code = code_for(service, request.spec.as_ref(), version, &request.name)?;
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
            let spec = request
                .spec
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("spec: missing"))?;
            let spec =
                validate(spec, &service.config.limits).map_err(|e| Status::invalid_argument(format!("spec.{e}")))?;
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
    use super::*;
    use crate::proto::{Op, Predicate};

    fn spec(value: &'static [u8]) -> FilterSpec {
        FilterSpec {
            arity: 2,
            predicates: vec![Predicate {
                field: 1,
                op: Op::Eq as i32,
                value: Bytes::from_static(value),
                values: vec![],
            }],
        }
    }

    #[test]
    fn the_first_level_hits_only_the_exact_request() {
        let cache = CompileCache::new(4);
        let code = Bytes::from_static(b"code");
        cache.put_received(&spec(b"a"), PyVersion::V3_12, "f", code.clone());
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_12, "f"), Some(code));
        assert_eq!(cache.get_received(&spec(b"b"), PyVersion::V3_12, "f"), None);
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_13, "f"), None);
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_12, "g"), None);
        let mut other_arity = spec(b"a");
        other_arity.arity = 3;
        assert_eq!(cache.get_received(&other_arity, PyVersion::V3_12, "f"), None);
    }

    #[test]
    fn a_disabled_cache_remembers_nothing() {
        let cache = CompileCache::new(0);
        cache.put_received(&spec(b"a"), PyVersion::V3_12, "f", Bytes::from_static(b"code"));
        assert_eq!(cache.get_received(&spec(b"a"), PyVersion::V3_12, "f"), None);
    }
}

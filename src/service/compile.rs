//! The `Compile` RPC and its bounded cache.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;
use tonic::Status;

use super::KeyFilterService;
use crate::codegen::{function_name, Function, PyVersion};
use crate::plan::Plan;
use crate::proto::{CompileRequest, CompileResponse};

type CacheKey = (Plan, PyVersion, String);

/// A bounded LRU cache of generated code, keyed by (normalized plan, version,
/// name): specs that normalize alike share an entry.
#[derive(Debug)]
pub struct CompileCache {
    entries: Option<Mutex<LruCache<CacheKey, Bytes>>>,
}

impl CompileCache {
    /// A cache of at most `capacity` entries; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        CompileCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
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

pub(super) fn compile(service: &KeyFilterService, request: CompileRequest) -> Result<CompileResponse, Status> {
    let version: PyVersion = request
        .python_version
        .parse()
        .map_err(|e| Status::invalid_argument(format!("python_version: {e}")))?;
    let name = function_name(&request.name).map_err(|e| Status::invalid_argument(format!("name: {e}")))?;
    let plan = service.plan(request.spec.as_ref())?;
    let code = service.cache.get_or_generate((plan, version, name.to_string()));
    // The version is echoed as the caller wrote it ("3.12" or "3.12.7").
    let python_version = request.python_version;
    let magic = version.magic();
    let (signature, key_id) = match &service.config.signer {
        Some(signer) => (
            Bytes::copy_from_slice(&signer.sign(&python_version, &magic, &code)),
            signer.key_id().to_string(),
        ),
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

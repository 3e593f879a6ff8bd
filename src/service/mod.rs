//! The gRPC service: `Match`, `Filter` and `Compile` over the core library.
//!
//! Each RPC validates its spec with the configured [`Limits`] (a bad spec is
//! `INVALID_ARGUMENT` naming the predicate and field), plans it, and hands it to
//! a backend. Nothing here decides semantics.

mod compile;
mod filter;
mod keys;
pub mod signing;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status, Streaming};

pub use compile::CompileCache;
pub use filter::FilterStream;

use crate::eval::Matcher;
use crate::plan::Plan;
use crate::proto::{CompileRequest, CompileResponse, FilterSpec, MatchResponse};
use crate::server::metrics;
use crate::spec::{validate, Limits};
use wire::server::key_filter_server::KeyFilter;
use wire::{FilterRequest, MatchRequest};

/// Tunables of the service itself (the server's transport settings live in `server`).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Limits on specs.
    pub limits: Limits,
    /// Responses a `Filter` stream may have computed but not yet sent; a client
    /// that stops reading stalls its stream after this many.
    pub filter_buffer: usize,
    /// Most `Filter` streams open at once; more get `RESOURCE_EXHAUSTED`.
    pub max_filter_streams: usize,
    /// A `Filter` stream that neither sends a request nor reads a response for
    /// this long is ended with `DEADLINE_EXCEEDED`, freeing its slot.
    pub filter_idle_timeout: std::time::Duration,
    /// Entries of the compile cache.
    pub compile_cache_entries: usize,
    /// Signs `Compile` responses when set.
    pub signer: Option<Arc<signing::Signer>>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            limits: Limits::default(),
            filter_buffer: 4,
            max_filter_streams: 1024,
            filter_idle_timeout: std::time::Duration::from_secs(300),
            compile_cache_entries: 1024,
            signer: None,
        }
    }
}

/// The `keyfilter.v1.KeyFilter` implementation.
#[derive(Clone, Debug)]
pub struct KeyFilterService {
    config: Arc<ServiceConfig>,
    cache: Arc<CompileCache>,
    open_streams: Arc<tokio::sync::Semaphore>,
}

impl KeyFilterService {
    /// A service with the given configuration.
    pub fn new(config: ServiceConfig) -> Self {
        KeyFilterService {
            cache: Arc::new(CompileCache::new(config.compile_cache_entries)),
            open_streams: Arc::new(tokio::sync::Semaphore::new(config.max_filter_streams)),
            config: Arc::new(config),
        }
    }

    /// Validates and plans a spec from a request, or says precisely what is wrong.
    fn plan(&self, spec: Option<&FilterSpec>) -> Result<Plan, Status> {
        let spec = spec.ok_or_else(|| {
            metrics::rejected("invalid_spec");
            Status::invalid_argument("spec: missing")
        })?;
        let spec = validate(spec, &self.config.limits).map_err(|e| {
            metrics::rejected("invalid_spec");
            Status::invalid_argument(format!("spec.{e}"))
        })?;
        Ok(Plan::new(&spec))
    }
}

impl KeyFilterService {
    fn do_match(&self, request: MatchRequest) -> Result<MatchResponse, Status> {
        let matcher = Matcher::new(&self.plan(request.spec.as_ref())?);
        let matches = keys::match_request(&matcher, &request)?;
        let matched = matches.iter().filter(|m| **m).count();
        metrics::keys("Match", matches.len(), matched);
        tracing::debug!(keys = matches.len(), matched, "match");
        Ok(MatchResponse { matches })
    }
}

#[tonic::async_trait]
impl KeyFilter for KeyFilterService {
    async fn r#match(&self, request: Request<MatchRequest>) -> Result<Response<MatchResponse>, Status> {
        let start = Instant::now();
        let result = self.do_match(request.into_inner());
        metrics::observe("Match", start, &result);
        result.map(Response::new)
    }

    type FilterStream = FilterStream;

    async fn filter(&self, request: Request<Streaming<FilterRequest>>) -> Result<Response<FilterStream>, Status> {
        let permit = self.open_streams.clone().try_acquire_owned().map_err(|_| {
            let status = Status::resource_exhausted(format!(
                "too many open Filter streams (limit {}); retry later",
                self.config.max_filter_streams
            ));
            metrics::observe::<()>("Filter", Instant::now(), &Err(status.clone()));
            metrics::rejected("filter_streams");
            status
        })?;
        filter::start(self.clone(), request.into_inner(), permit)
            .await
            .map(Response::new)
    }

    async fn compile(&self, request: Request<CompileRequest>) -> Result<Response<CompileResponse>, Status> {
        let start = Instant::now();
        let result = compile::compile(self, request.into_inner());
        metrics::observe("Compile", start, &result);
        result.map(Response::new)
    }
}

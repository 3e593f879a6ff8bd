//! The gRPC service: `Match`, `Filter` and `Compile` over the core library.
//!
//! Each RPC parses its spec against the configured [`Limits`] (a bad spec is
//! `INVALID_ARGUMENT` naming the predicate and field), plans it, and hands it to
//! a backend; `Match` and `Filter` reuse the matcher of a spec whose bytes they
//! saw before ([`MatcherCache`]), `Compile` the code ([`CompileCache`]). Heavy
//! work runs on bounded CPU slots ([`work`]), never on the async workers.
//! Nothing here decides semantics.

mod cache;
mod compile;
mod errors;
mod filter;
mod keys;
pub mod metrics;
pub mod signing;
pub mod wire;
mod work;

pub use filter::CLIENT_RESET;

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status, Streaming};

pub use cache::MatcherCache;
pub use compile::CompileCache;
pub use filter::{FilterStream, BATCHES_TRAILER};
pub use work::Cancel;

use crate::proto::{CompileResponse, MatchResponse};
use keyfilter_core::eval::Matcher;
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{Limits, Spec};
use keyfilter_core::Error;
use wire::server::key_filter_server::KeyFilter;
use wire::{CompileRequest, FilterRequest, MatchRequest, SpecWire, SpecWireError};

/// Tunables of the service itself (the server's transport settings live in `server`).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Limits on specs.
    pub limits: Limits,
    /// Most keys in one `Match` request or one `Filter` batch, declared or sent.
    pub max_keys_per_request: usize,
    /// Responses a `Filter` stream may have computed but not yet sent; a client
    /// that stops reading stalls its stream after this many.
    pub filter_buffer: usize,
    /// Most `Filter` streams open at once; more get `RESOURCE_EXHAUSTED`.
    pub max_filter_streams: usize,
    /// A `Filter` stream that neither sends a request nor reads a response for
    /// this long is ended with `DEADLINE_EXCEEDED`, freeing its slot.
    pub filter_idle_timeout: std::time::Duration,
    /// A `Filter` batch not answered within this long ends its stream with
    /// `DEADLINE_EXCEEDED`: the server's `request_timeout` (which a stream
    /// meets at once, its response headers going out first), per batch. The
    /// server sets it from `request_timeout`.
    pub batch_timeout: std::time::Duration,
    /// Entries of each level of the compile cache.
    pub compile_cache_entries: usize,
    /// Bytes of the compile cache, both levels together.
    pub compile_cache_bytes: usize,
    /// Matchers kept for the specs of `Match` calls and `Filter` streams.
    pub matcher_cache_entries: usize,
    /// Bytes of the matcher cache (specs as received, and their matchers).
    pub matcher_cache_bytes: usize,
    /// Pieces of heavy work (planning, evaluation, code generation) running at once.
    pub cpu_slots: usize,
    /// Signs `Compile` responses when set.
    pub signer: Option<Arc<signing::Signer>>,
}

/// The number of CPUs this process may use (1 when unknown).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            limits: Limits::default(),
            max_keys_per_request: 1_000_000,
            filter_buffer: 4,
            max_filter_streams: 128,
            filter_idle_timeout: std::time::Duration::from_secs(300),
            batch_timeout: std::time::Duration::from_secs(30),
            compile_cache_entries: 1024,
            compile_cache_bytes: 64 * 1024 * 1024,
            matcher_cache_entries: 1024,
            matcher_cache_bytes: 16 * 1024 * 1024,
            cpu_slots: available_cpus(),
            signer: None,
        }
    }
}

/// The `keyfilter.v1.KeyFilter` implementation.
#[derive(Clone, Debug)]
pub struct KeyFilterService {
    config: Arc<ServiceConfig>,
    cache: Arc<CompileCache>,
    matchers: Arc<MatcherCache>,
    open_streams: Arc<tokio::sync::Semaphore>,
    cpu: Arc<work::Cpu>,
}

/// Roughly what planning a spec costs, in the units of [`work::INLINE_COST`].
fn spec_cost(spec: Option<&SpecWire>) -> usize {
    spec.map_or(0, |s| s.as_bytes().len())
}

impl KeyFilterService {
    /// A service with the given configuration.
    pub fn new(config: ServiceConfig) -> Self {
        KeyFilterService {
            cache: Arc::new(CompileCache::new(
                config.compile_cache_entries,
                config.compile_cache_bytes,
            )),
            matchers: Arc::new(MatcherCache::new(
                config.matcher_cache_entries,
                config.matcher_cache_bytes,
            )),
            open_streams: Arc::new(tokio::sync::Semaphore::new(config.max_filter_streams)),
            cpu: Arc::new(work::Cpu::new(config.cpu_slots)),
            config: Arc::new(config),
        }
    }

    /// Parses and validates a spec from a request, or says precisely what is
    /// wrong. A spec that does not decode is `INTERNAL`, as for any message
    /// that does not parse.
    fn spec(&self, spec: Option<&SpecWire>) -> Result<Spec, Status> {
        let spec = spec.ok_or_else(|| errors::status(Error::MissingSpec))?;
        spec.parse(&self.config.limits).map_err(|e| match e {
            SpecWireError::Malformed(_) => Status::internal(e.to_string()),
            SpecWireError::Invalid(e) => errors::status(Error::Spec(e)),
        })
    }

    /// [`spec`](Self::spec), planned.
    fn plan(&self, spec: Option<&SpecWire>) -> Result<Plan, Status> {
        Ok(Plan::new(&self.spec(spec)?))
    }

    /// The matcher of a spec that missed [`MatcherCache`]: parsed, validated
    /// and planned, then kept for the next call with the same spec bytes.
    fn plan_matcher(&self, spec: Option<&SpecWire>) -> Result<Arc<Matcher>, Status> {
        let plan = self.plan(spec)?;
        let matcher = Arc::new(Matcher::new(&plan));
        if let Some(spec) = spec {
            self.matchers.put(spec, &plan, matcher.clone());
        }
        Ok(matcher)
    }

    /// The matcher kept for exactly this spec (as received), if any.
    fn cached_matcher(&self, spec: Option<&SpecWire>) -> Option<Arc<Matcher>> {
        spec.and_then(|spec| self.matchers.get(spec))
    }
}

/// Evaluates a `Match` request's keys with its planned matcher.
fn match_keys(
    matcher: &Matcher,
    request: &MatchRequest,
    max_keys: usize,
    cancel: &Cancel,
) -> Result<MatchResponse, Status> {
    let keys = keys::match_keys(request, matcher.arity(), max_keys)?;
    let matches = keys::mask(matcher, &keys, cancel)?;
    let matched = matches.iter().filter(|m| **m).count();
    metrics::keys("Match", matches.len(), matched);
    tracing::debug!(keys = matches.len(), matched, "match");
    Ok(MatchResponse { matches })
}

/// The number of keys a `MatchRequest` claims (sent or declared), once its
/// columnar keys, if any, were scanned.
fn declared_keys(request: &MatchRequest, arity: usize) -> usize {
    let packed = request.packed_keys.as_ref().map_or(0, |p| p.declared_keys(arity));
    let columnar = columnar_shape(request.columnar_keys.as_ref()).map_or(0, |s| s.keys());
    request.keys.len().max(packed).max(columnar)
}

/// Bytes of a `MatchRequest`'s keys, in whichever form they came.
fn key_bytes(request: &MatchRequest) -> usize {
    let packed = request.packed_keys.as_ref().map_or(0, |p| p.bytes());
    let columnar = request.columnar_keys.as_ref().map_or(0, |c| c.encoded_bytes());
    request.keys.bytes().saturating_add(packed).saturating_add(columnar)
}

/// The shape of columnar keys that scanned well (an error is reported where
/// the keys are read).
fn columnar_shape(columnar: Option<&wire::ColumnarWire>) -> Option<wire::ColumnarShape> {
    columnar.and_then(|c| c.shape().ok())
}

/// What evaluating a batch of `declared` keys of `bytes` bytes costs (at
/// most one more than `max_keys`: more are refused before any is
/// evaluated), plus validating its columns, if any.
fn keys_cost(
    declared: usize,
    bytes: usize,
    max_keys: usize,
    columnar: Option<wire::ColumnarShape>,
    matcher: &Matcher,
) -> usize {
    keys::eval_cost(declared.min(max_keys.saturating_add(1)), bytes, matcher)
        .saturating_add(columnar.map_or(0, |s| s.validation_cost()))
}

impl KeyFilterService {
    /// `Match`: the spec is planned (and columnar keys scanned), then the keys
    /// evaluated, each step on a CPU slot when its cost (known only once the
    /// plan is, and the columns are counted) calls for one.
    async fn serve_match(&self, request: MatchRequest) -> Result<MatchResponse, Status> {
        let service = self.clone();
        // A cached matcher costs nothing to plan: with no columns to scan,
        // this step then runs inline.
        let cached = self.cached_matcher(request.spec.as_ref());
        let planning = if cached.is_some() {
            0
        } else {
            spec_cost(request.spec.as_ref())
        };
        let columnar_bytes = request.columnar_keys.as_ref().map_or(0, |c| c.encoded_bytes());
        let (matcher, request) = self
            .cpu
            .run(planning.saturating_add(columnar_bytes), move |_| {
                if let Some(columnar) = &request.columnar_keys {
                    // A message that does not decode fails first, as it
                    // would with the generated types.
                    columnar.shape().map_err(wire::malformed_columnar)?;
                }
                let matcher = match cached {
                    Some(matcher) => matcher,
                    None => service.plan_matcher(request.spec.as_ref())?,
                };
                Ok((matcher, request))
            })
            .await?;
        let max_keys = self.config.max_keys_per_request;
        let cost = keys_cost(
            declared_keys(&request, matcher.arity()),
            key_bytes(&request),
            max_keys,
            columnar_shape(request.columnar_keys.as_ref()),
            &matcher,
        );
        self.cpu
            .run(cost, move |cancel| match_keys(&matcher, &request, max_keys, cancel))
            .await
    }
}

#[tonic::async_trait]
impl KeyFilter for KeyFilterService {
    async fn r#match(&self, request: Request<MatchRequest>) -> Result<Response<MatchResponse>, Status> {
        let start = Instant::now();
        let result = self.serve_match(request.into_inner()).await;
        metrics::observe("Match", start, &result);
        result.map(Response::new)
    }

    type FilterStream = FilterStream;

    async fn filter(&self, request: Request<Streaming<FilterRequest>>) -> Result<Response<FilterStream>, Status> {
        let permit = self.open_streams.clone().try_acquire_owned().map_err(|_| {
            let status = Status::resource_exhausted(format!(
                "too many open Filter streams (max_filter_streams: {}); retry later",
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
        let request = request.into_inner();
        let service = self.clone();
        let cost = spec_cost(request.spec.as_ref());
        let result = self.cpu.run(cost, move |_| compile::compile(&service, request)).await;
        metrics::observe("Compile", start, &result);
        result.map(Response::new)
    }
}

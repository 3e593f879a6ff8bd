//! The streaming `Filter` RPC.
//!
//! One task per stream reads a request, evaluates it and sends its response
//! through a bounded channel before reading the next. A client that stops
//! reading fills the channel (and HTTP/2 flow control holds tonic's encoder),
//! the task waits on `send`, stops reading, and the client's own sends block
//! on flow control: memory per stream stays bounded by
//! `filter_buffer` responses plus the transport windows. While tonic encodes
//! one response, the task is already decoding and evaluating the next batch.

use std::time::Instant;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::keys::{check_rows, index_packed};
use super::KeyFilterService;
use crate::eval::{Matcher, PackedIndex};
use crate::proto::{filter_request::Msg, FilterRequest, FilterResponse};
use crate::server::metrics;

/// The response stream of `Filter`.
pub type FilterStream = ReceiverStream<Result<FilterResponse, Status>>;

pub(super) async fn start(
    service: KeyFilterService,
    inbound: Streaming<FilterRequest>,
    permit: OwnedSemaphorePermit,
) -> Result<FilterStream, Status> {
    let (tx, rx) = mpsc::channel(service.config.filter_buffer.max(1));
    // The spec is read inside the task too: the response headers go out at
    // once, so a client that waits for them before sending is not deadlocked.
    tokio::spawn(
        async move {
            let _permit = permit;
            let start = Instant::now();
            metrics::filter_streams_delta(1.0);
            let result = run(&service, inbound, &tx).await;
            metrics::filter_streams_delta(-1.0);
            metrics::observe("Filter", start, &result);
            if let Err(status) = result {
                let _ = tx.send(Err(status)).await;
            }
        }
        .in_current_span(),
    );
    Ok(ReceiverStream::new(rx))
}

async fn next(inbound: &mut Streaming<FilterRequest>, tx: &Sender) -> Option<Result<FilterRequest, Status>> {
    tokio::select! {
        message = inbound.message() => message.transpose(),
        // The client went away: stop reading.
        _ = tx.closed() => None,
    }
}

type Sender = mpsc::Sender<Result<FilterResponse, Status>>;

async fn run(service: &KeyFilterService, mut inbound: Streaming<FilterRequest>, tx: &Sender) -> Result<(), Status> {
    let matcher = match next(&mut inbound, tx).await {
        None => {
            return Err(Status::invalid_argument(
                "Filter: the stream ended before its first message, the spec",
            ))
        }
        Some(first) => match first?.msg {
            Some(Msg::Spec(spec)) => Matcher::new(&service.plan(Some(&spec))?),
            _ => {
                return Err(Status::invalid_argument(
                    "Filter: the first message must carry `spec`, before any batch",
                ))
            }
        },
    };
    let mut index = PackedIndex::default();
    let mut batch = 0u64;
    let (mut evaluated, mut matched_total) = (0usize, 0usize);
    while let Some(request) = next(&mut inbound, tx).await {
        let (keys, matched) = evaluate(&matcher, &mut index, request?, batch)?;
        evaluated += keys;
        matched_total += matched.len();
        tracing::trace!(batch, keys, matched = matched.len(), "filter batch");
        if tx.send(Ok(FilterResponse { batch, matched })).await.is_err() {
            break;
        }
        batch += 1;
    }
    metrics::keys("Filter", evaluated, matched_total);
    tracing::debug!(
        batches = batch,
        keys = evaluated,
        matched = matched_total,
        "filter stream done"
    );
    Ok(())
}

/// Evaluates one batch: the number of keys in it, and the indices that match.
fn evaluate(
    matcher: &Matcher,
    index: &mut PackedIndex,
    request: FilterRequest,
    batch: u64,
) -> Result<(usize, Vec<u32>), Status> {
    match request.msg {
        Some(Msg::Batch(rows)) => {
            check_rows(matcher, &rows.keys, &format!("batch {batch}: keys"))?;
            let matched = rows.keys.iter().enumerate().filter(|(_, k)| matcher.matches(&k.fields));
            Ok((rows.keys.len(), matched.map(|(i, _)| i as u32).collect()))
        }
        Some(Msg::PackedBatch(packed)) => {
            let keys = index_packed(index, &packed, matcher.arity(), &format!("batch {batch}: packed_batch"))?;
            let mut matched = Vec::new();
            matcher.matched_packed(&keys, &mut matched);
            Ok((keys.len(), matched))
        }
        Some(Msg::Spec(_)) => Err(Status::invalid_argument(format!(
            "Filter: message {} carries a second spec; the spec comes once, first",
            batch + 1
        ))),
        None => Err(Status::invalid_argument(format!(
            "Filter: message {} is empty (no spec, no batch)",
            batch + 1
        ))),
    }
}

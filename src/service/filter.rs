//! The streaming `Filter` RPC.
//!
//! One task per stream reads a request, evaluates it and sends its response
//! through a bounded channel before reading the next. A client that stops
//! reading fills the channel (and HTTP/2 flow control holds tonic's encoder),
//! the task waits on `send`, stops reading, and the client's own sends block
//! on flow control: memory per stream stays bounded by
//! `filter_buffer` responses plus the transport windows. While tonic encodes
//! one response, the task is already decoding and evaluating the next batch.
//!
//! A stream that neither sends nor reads for `filter_idle_timeout` is ended
//! with `DEADLINE_EXCEEDED`, so an abandoned stream cannot hold its slot of
//! `max_filter_streams` forever; so is one whose batch is not answered
//! within `request_timeout` (a batch's evaluation stops with its stream, as
//! it does when the client goes away). The final status travels outside the bounded
//! channel, so it is delivered even when that channel is full.
//!
//! A stream ends OK only when its task says so, after its last response: the
//! task hands over its final status, success included, before it closes the
//! channel, and a task that ends without one (a panic) ends the stream with
//! `INTERNAL`, never OK. The OK status carries the number of batches answered
//! in the trailer [`BATCHES_TRAILER`], so a client can check end to end that
//! no answer was lost on the way (the Python client does).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_stream::Stream;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::keys::Keys;
use super::wire::{FilterMessage as Msg, FilterRequest};
use super::KeyFilterService;
use crate::proto::FilterResponse;
use crate::service::metrics;
use keyfilter_core::eval::Matcher;

/// The message of the status a request body fails with when the client reset
/// its stream (RST_STREAM CANCEL) before ending it (the server's admission
/// layer turns that reset into `ABORTED` with this message, so a stream the
/// client abandoned is never counted as finished).
pub const CLIENT_RESET: &str = "the client reset the stream before it finished sending";

/// The trailer of a `Filter` stream that ended OK: how many batches the
/// server answered (decimal), which is how many responses it sent.
pub const BATCHES_TRAILER: &str = "keyfilter-batches";

/// The response stream of `Filter`: every computed response, then the
/// stream's final status (tonic sends an item `Err(status)` as the trailers,
/// whatever its code, so an OK status with metadata ends the stream OK).
pub struct FilterStream {
    responses: mpsc::Receiver<FilterResponse>,
    end: Option<oneshot::Receiver<Status>>,
}

impl Stream for FilterStream {
    type Item = Result<FilterResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.responses.poll_recv(cx) {
            Poll::Ready(Some(response)) => Poll::Ready(Some(Ok(response))),
            // The channel closes only when the task has ended, and the task
            // hands over its final status before it drops its sender: so by
            // now the status is waiting, unless the task died without one.
            // (Polling the status while responses may still arrive would race
            // with the last of them.)
            Poll::Ready(None) => Poll::Ready(self.end.take().map(|mut end| {
                Err(end.try_recv().unwrap_or_else(|_| {
                    Status::internal("Filter: the stream's task ended without a status (see the server log)")
                }))
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The OK status of a stream that answered `batches` batches.
fn finished(batches: u64) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(BATCHES_TRAILER, batches.into());
    Status::with_metadata(tonic::Code::Ok, "", metadata)
}

type Sender = mpsc::Sender<FilterResponse>;

pub(super) async fn start(
    service: KeyFilterService,
    inbound: Streaming<FilterRequest>,
    permit: OwnedSemaphorePermit,
) -> Result<FilterStream, Status> {
    let (tx, responses) = mpsc::channel(service.config.filter_buffer.max(1));
    let (report_end, end) = oneshot::channel();
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
            let _ = report_end.send(result.map_or_else(|status| status, finished));
            // Closing the channel last tells FilterStream the status is in place.
            drop(tx);
        }
        .in_current_span(),
    );
    Ok(FilterStream {
        responses,
        end: Some(end),
    })
}

/// The status of a stream whose responses can no longer be delivered.
fn went_away() -> Status {
    Status::cancelled("Filter: the client went away before the stream finished")
}

fn idle(timeout: Duration, doing: &str) -> Status {
    Status::deadline_exceeded(format!(
        "Filter: {doing} for {}; closing the stream (filter_idle_timeout)",
        humantime::format_duration(timeout)
    ))
}

/// The next request; `None` when the client finished or went away.
async fn next(
    inbound: &mut Streaming<FilterRequest>,
    tx: &Sender,
    timeout: Duration,
) -> Option<Result<FilterRequest, Status>> {
    tokio::select! {
        message = tokio::time::timeout(timeout, inbound.message()) => match message {
            // The client reset the stream: cancelled, never a clean end
            // (see `server::admission::ResetIsNotTheEnd`).
            Ok(Err(status))
                if status.code() == tonic::Code::Aborted && status.message() == CLIENT_RESET =>
            {
                Some(Err(Status::cancelled("Filter: the client reset the stream before it finished sending")))
            }
            Ok(message) => message.transpose(),
            Err(_) => Some(Err(idle(timeout, "no request"))),
        },
        // The response stream was dropped (the client reset the stream or
        // closed the connection): nothing more can be delivered, so the call
        // did not finish, whichever of this and the request's reset is seen first.
        _ = tx.closed() => Some(Err(went_away())),
    }
}

/// Answers the stream's batches; the number answered when it ends OK.
async fn run(service: &KeyFilterService, mut inbound: Streaming<FilterRequest>, tx: &Sender) -> Result<u64, Status> {
    let timeout = service.config.filter_idle_timeout;
    let batch_timeout = service.config.batch_timeout;
    let matcher = match next(&mut inbound, tx, timeout).await {
        None => {
            return Err(Status::invalid_argument(
                "Filter: the stream ended before its first message, the spec",
            ))
        }
        Some(first) => match first?.msg {
            Some(Msg::Spec(spec)) => match service.cached_matcher(Some(&spec)) {
                Some(matcher) => matcher,
                None => {
                    let planner = service.clone();
                    let cost = spec.as_bytes().len();
                    service
                        .cpu
                        .run(cost, move |_| planner.plan_matcher(Some(&spec)))
                        .await?
                }
            },
            _ => {
                return Err(Status::invalid_argument(
                    "Filter: the first message must carry `spec`, before any batch",
                ))
            }
        },
    };
    let max_keys = service.config.max_keys_per_request;
    let mut batch = 0u64;
    let (mut evaluated, mut matched_total) = (0usize, 0usize);
    while let Some(request) = next(&mut inbound, tx, timeout).await {
        let request = request?;
        let matcher = matcher.clone();
        let cost = batch_cost(&request, max_keys, &matcher);
        let evaluation = service
            .cpu
            .run(cost, move |cancel| evaluate(&matcher, request, batch, max_keys, cancel));
        // Work below the inline cost is done within its first poll, where
        // nothing could stop it: it needs no timer (a timer per batch was
        // 1.6-3.3 % more CPU per key on batches of 100 to 10,000 keys).
        // Heavier work stops when the client goes away, and at the batch's
        // deadline (dropping `evaluation` cancels it, even inside one key).
        let (keys, matched) = if cost < super::work::INLINE_COST {
            evaluation.await?
        } else {
            tokio::select! {
                evaluated = tokio::time::timeout(batch_timeout, evaluation) => match evaluated {
                    Ok(evaluated) => evaluated?,
                    Err(_) => return Err(Status::deadline_exceeded(format!(
                        "Filter: batch {batch} was not answered within {}; closing the stream (request_timeout)",
                        humantime::format_duration(batch_timeout)
                    ))),
                },
                _ = tx.closed() => return Err(went_away()),
            }
        };
        evaluated += keys;
        matched_total += matched.len();
        tracing::trace!(batch, keys, matched = matched.len(), "filter batch");
        match tx.send_timeout(FilterResponse { batch, matched }, timeout).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => return Err(idle(timeout, "the client read nothing")),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(went_away()),
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
    Ok(batch)
}

/// What evaluating one batch costs, roughly (see [`super::work::INLINE_COST`]).
/// Columnar keys are scanned here, inline, when their message is below the
/// inline cost (a scan reads at most every byte once; the usual batch has a
/// handful of fields), else on the batch's CPU slot.
fn batch_cost(request: &FilterRequest, max_keys: usize, matcher: &Matcher) -> usize {
    match &request.msg {
        Some(Msg::Batch(rows)) => super::keys_cost(rows.len(), rows.bytes(), max_keys, None, matcher),
        Some(Msg::PackedBatch(packed)) => super::keys_cost(
            packed.declared_keys(matcher.arity()),
            packed.bytes(),
            max_keys,
            None,
            matcher,
        ),
        Some(Msg::ColumnarBatch(columnar)) if columnar.encoded_bytes() < super::work::INLINE_COST => {
            match columnar.shape() {
                Ok(shape) => super::keys_cost(shape.keys(), columnar.encoded_bytes(), max_keys, Some(shape), matcher),
                // Reported by `evaluate`.
                Err(_) => 0,
            }
        }
        Some(Msg::ColumnarBatch(_)) => super::work::INLINE_COST,
        _ => 0,
    }
}

/// Evaluates one batch: the number of keys in it, and the indices that match.
fn evaluate(
    matcher: &Matcher,
    request: FilterRequest,
    batch: u64,
    max_keys: usize,
    cancel: &super::Cancel,
) -> Result<(usize, Vec<u32>), Status> {
    let keys = match &request.msg {
        Some(Msg::Batch(rows)) => {
            Keys::Packed(rows.view(matcher.arity(), max_keys, format_args!("batch {batch}: keys"))?)
        }
        Some(Msg::PackedBatch(packed)) => {
            Keys::Packed(packed.view(matcher.arity(), max_keys, format_args!("batch {batch}: packed_batch"))?)
        }
        // Validated here, on the batch's CPU slot, like its evaluation.
        Some(Msg::ColumnarBatch(columnar)) => {
            Keys::Columns(columnar.view(matcher.arity(), max_keys, format_args!("batch {batch}: columnar_batch"))?)
        }
        Some(Msg::Spec(_)) => {
            return Err(Status::invalid_argument(format!(
                "Filter: message {} carries a second spec; the spec comes once, first",
                batch + 1
            )))
        }
        None => {
            return Err(Status::invalid_argument(format!(
                "Filter: message {} is empty (no spec, no batch)",
                batch + 1
            )))
        }
    };
    let matched = super::keys::matched(matcher, &keys, cancel)?;
    Ok((keys.len(), matched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;

    /// The end of a `Filter` response stream, by construction: whatever the
    /// interleaving of the stream's task and tonic's polling, every response
    /// the task sent comes out, in order, before the stream ends; it ends
    /// with the task's failure exactly when there is one, OK with the count
    /// of batches answered otherwise, and never OK when the task died
    /// without saying how it ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_sent_response_comes_out_before_the_end() {
        for round in 0..20_000u64 {
            let capacity = 1 + (round % 4) as usize;
            let sent = round * 7 % 6;
            // 0: succeeds, 1: fails, 2: dies without a status (a panic).
            let ending = round % 3;
            let (tx, responses) = mpsc::channel(capacity);
            let (report_end, end) = oneshot::channel();
            let task = tokio::spawn(async move {
                for batch in 0..sent {
                    tx.send(FilterResponse { batch, matched: vec![] })
                        .await
                        .expect("the stream reads");
                    if batch % 2 == round % 2 {
                        tokio::task::yield_now().await;
                    }
                }
                // As in `start`: the status first, then the channel closes.
                match ending {
                    0 => drop(report_end.send(finished(sent))),
                    1 => drop(report_end.send(Status::invalid_argument("bad batch"))),
                    _ => drop(report_end),
                }
                drop(tx);
            });
            let stream = FilterStream {
                responses,
                end: Some(end),
            };
            let items: Vec<_> = stream.collect().await;
            task.await.expect("the task finishes");
            let batches: Vec<u64> = items.iter().filter_map(|i| i.as_ref().ok().map(|r| r.batch)).collect();
            assert_eq!(batches, (0..sent).collect::<Vec<_>>(), "round {round}: {items:?}");
            assert_eq!(items.len() as u64, sent + 1, "round {round}: one status at the end");
            let status = items
                .last()
                .unwrap()
                .as_ref()
                .expect_err("the stream ends with its status");
            let code = [tonic::Code::Ok, tonic::Code::InvalidArgument, tonic::Code::Internal][ending as usize];
            assert_eq!(status.code(), code, "round {round}: {status:?}");
            if ending == 0 {
                let answered = status.metadata().get(BATCHES_TRAILER).expect("the trailer");
                assert_eq!(answered.to_str().unwrap(), sent.to_string(), "round {round}");
            }
        }
    }
}

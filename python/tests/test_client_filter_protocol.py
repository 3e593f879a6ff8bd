"""Client.filter holds the server to the Filter protocol (one answer per batch,
numbered 0, 1, 2, ...): a server that ends a stream OK with a batch
unanswered, or answers out of order, makes the client raise instead of
silently dropping keys. The server here is a grpcio one that misbehaves on
purpose; the well-behaved path is covered against the real server in
test_client.py."""

from __future__ import annotations

from concurrent import futures
from typing import Callable, Iterator, Optional

import pytest

import grpc  # the [grpc] extra: the test environment installs it, and its absence fails

import keyfilter  # noqa: E402
from keyfilter import RemoteError, Spec  # noqa: E402
from keyfilter._proto import keyfilter_pb2 as pb2  # noqa: E402

SPEC = Spec(1).prefix(0, b"a")
KEYS = [(b"a%d" % i,) if i % 2 else (b"b%d" % i,) for i in range(10)]

# What the server does with the answers an honest server would give: gets
# them lazily, as (batch number, matched indices), each as its batch arrives,
# and yields those it sends. (Lazily: the client sends its next batches only
# as answers come back, so a server that waits for the end would wait forever.)
Policy = Callable[[Iterator[tuple]], Iterator[tuple]]


def honest(answers):
    yield from answers


def drop_last(answers):
    held = None
    for answer in answers:
        if held is not None:
            yield held
        held = answer


def swap_second_and_third(answers):
    for answer in answers:
        if answer[0] == 1:
            held = answer
            continue
        yield answer
        if answer[0] == 2:
            yield held


def one_more(answers):
    number = 0
    for number, matched in answers:
        yield number, matched
    yield number + 1, [0]


def serve(policy: Policy, trailer: Optional[str] = None) -> tuple:
    """A grpcio server whose Filter answers every batch as keyfilter would,
    then passes the answers through `policy`, and ends with `trailer` as its
    count of batches answered (none if None); returns (server, address)."""

    def answers(requests: Iterator[pb2.FilterRequest]) -> Iterator[tuple]:
        number = 0
        for request in requests:
            kind = request.WhichOneof("msg")
            if kind == "batch":
                keys = [tuple(k.fields) for k in request.batch.keys]
            elif kind == "packed_batch":
                p = request.packed_batch
                keys, at = [], 0
                for n in p.lengths:
                    keys.append((p.data[at : at + n],))
                    at += n
            elif kind == "columnar_batch":
                keys = []  # answered, with no match: the fake reads no columns
            else:
                continue
            yield number, [i for i, k in enumerate(keys) if k[0].startswith(b"a")]
            number += 1

    def filter_stream(requests: Iterator[pb2.FilterRequest], context) -> Iterator[pb2.FilterResponse]:
        for number, matched in policy(answers(requests)):
            yield pb2.FilterResponse(batch=number, matched=matched)
        if trailer is not None:
            context.set_trailing_metadata((("keyfilter-batches", trailer),))

    handler = grpc.method_handlers_generic_handler(
        "keyfilter.v1.KeyFilter",
        {
            "Filter": grpc.stream_stream_rpc_method_handler(
                filter_stream,
                request_deserializer=pb2.FilterRequest.FromString,
                response_serializer=pb2.FilterResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def run(policy: Policy, packed: bool = False, trailer: Optional[str] = None) -> list:
    server, addr = serve(policy, trailer)
    try:
        with keyfilter.Client(addr, timeout=30) as client:
            return list(client.filter(SPEC, KEYS, batch_size=3, packed=packed))
    finally:
        server.stop(None)


@pytest.mark.parametrize("packed", [False, True])
def test_an_honest_server_gives_every_match(packed):
    # The fake itself is right: all answers through, the client yields the matches.
    assert run(honest, packed) == [k for k in KEYS if k[0].startswith(b"a")]


def test_the_servers_count_of_batches_answered_is_checked():
    # keyfilter's server counts them in a trailer: right, the answers pass...
    assert run(honest, trailer="4") == [k for k in KEYS if k[0].startswith(b"a")]
    # ...wrong, an answer was lost between the server and the client.
    with pytest.raises(RemoteError) as e:
        run(honest, trailer="5")
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert "after answering 5 batches, but 4 answers arrived" in e.value.message


@pytest.mark.parametrize("packed", [False, True])
def test_a_stream_ending_ok_with_a_batch_unanswered_raises_data_loss(packed):
    with pytest.raises(RemoteError) as e:
        run(drop_last, packed)
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert "after answering 3 of 4 batches" in e.value.message


def test_an_answer_out_of_order_raises_data_loss():
    with pytest.raises(RemoteError) as e:
        run(swap_second_and_third)
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert "answered batch 2 of the Filter stream where batch 1 was due" in e.value.message


def test_an_answer_for_a_batch_never_sent_raises_data_loss():
    with pytest.raises(RemoteError) as e:
        run(one_more)
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert "answered batch 4 of the Filter stream, but only 4 batches were sent" in e.value.message


def test_arrow_streams_are_held_to_the_same_protocol():
    import pyarrow as pa

    table = pa.table({"k": [k[0] for k in KEYS]})
    server, addr = serve(drop_last)
    try:
        with keyfilter.Client(addr, timeout=30) as client:
            with pytest.raises(RemoteError) as e:
                client.filter(SPEC, table, batch_size=3).read_all()
    finally:
        server.stop(None)
    assert e.value.code == grpc.StatusCode.DATA_LOSS
    assert "after answering 3 of 4 batches" in e.value.message

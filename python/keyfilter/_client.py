"""``keyfilter.Client``: the gRPC client (needs grpcio: the ``grpc`` extra).

It needs no protobuf runtime: requests are encoded and responses decoded in
Rust (``keyfilter._native``) with the core crate's own message types, which is
also far faster than building one protobuf object per key in Python.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib.util
import itertools
import re
import threading
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, overload

import grpc

from . import _arrow, _native
from ._codegen import materialize, running_version
from ._errors import CodeRejected, InvalidSpec, KeyFilterError, RemoteError, is_spec_message
from ._spec import Spec

__all__ = ["Client"]

_SERVICE = "/keyfilter.v1.KeyFilter/"
# What this client sends and accepts; the server applies its own limit
# (keyfilter serve --max-message-bytes, 4 MiB by default).
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_UNSET: Any = object()
_END: Any = object()
# At most about this much key data per columnar Filter message: large
# messages keep the per-message cost (gRPC, Python) small per key, and stay
# below the server's default 4 MiB limit (a 65,536-key batch of three
# 12-byte fields is one message).
_ARROW_MESSAGE_BYTES = 7 << 19
# Default keys per Filter batch: of tuples, and of Arrow data (cut further by
# _ARROW_MESSAGE_BYTES).
_ROW_BATCH_KEYS = 10_000
_ARROW_BATCH_KEYS = 65_536

SpecLike = Union[Spec, Any]  # a Spec, or a keyfilter.v1.FilterSpec message
Key = Sequence[bytes]
# gRPC metadata: (key, value) pairs; a value is str, or bytes for a key ending in "-bin".
Metadata = Sequence[Tuple[str, Union[str, bytes]]]
_MetadataTuple = Tuple[Tuple[str, Union[str, bytes]], ...]
# What gRPC accepts as a metadata key (lower case: HTTP/2 header names).
_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+\Z")


class _SpecBytes:
    """A spec as the client sends it: its FilterSpec bytes and its arity."""

    __slots__ = ("data", "arity")

    def __init__(self, spec: SpecLike) -> None:
        if isinstance(spec, Spec):
            self.data = spec._encoded()
            self.arity = spec.arity
        elif getattr(getattr(spec, "DESCRIPTOR", None), "full_name", None) == "keyfilter.v1.FilterSpec":
            self.data = spec.SerializeToString()
            self.arity = spec.arity
        else:
            raise TypeError(f"expected a keyfilter.Spec or a FilterSpec message, not {type(spec).__name__}")


def _accepted_keys(verify_key: Any) -> Dict[str, Union[bytes, str]]:
    """``Client(verify_key=...)`` as ``{key_id: key}`` (empty: verify nothing)."""
    if verify_key is None:
        return {}
    if isinstance(verify_key, collections.abc.Mapping):
        if not verify_key:
            raise ValueError("verify_key: the mapping of key ids to keys is empty")
        keys = {}
        for key_id, key in verify_key.items():
            if not isinstance(key_id, str) or not key_id:
                raise ValueError(f"verify_key: key ids must be non-empty strings, got {key_id!r}")
            _native.check_verify_key(key)
            keys[key_id] = key
        return keys
    _native.check_verify_key(verify_key)
    return {_native.default_key_id(verify_key): verify_key}


def _bearer(token: Optional[str]) -> _MetadataTuple:
    """``Client(token=...)`` as its ``authorization`` metadata (empty: no token)."""
    if token is None:
        return ()
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    # A header value is printable ASCII; the server trims whitespace around
    # the token, so a token with any would never be the one configured.
    if not token or token != token.strip() or not all(" " <= c <= "~" for c in token):
        raise ValueError("token must be non-empty printable ASCII without surrounding whitespace")
    return (("authorization", f"Bearer {token}"),)


def _checked_metadata(metadata: Metadata) -> _MetadataTuple:
    """``metadata`` as a tuple of pairs, each checked as gRPC will check it
    (so a mistake fails here, naming the pair, and not as a failed call)."""
    if isinstance(metadata, (str, bytes, collections.abc.Mapping)):
        raise TypeError(f"metadata must be a sequence of (key, value) pairs, not {type(metadata).__name__}")
    out = []
    for i, pair in enumerate(metadata):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"metadata[{i}]: expected a (key, value) pair, got {pair!r}")
        key, value = pair
        if not isinstance(key, str) or not _METADATA_KEY.match(key) or key.startswith("grpc-"):
            raise ValueError(
                f"metadata[{i}]: key {key!r} is not a gRPC metadata key "
                "(lower-case letters, digits, '-', '_' and '.'; not starting with 'grpc-')"
            )
        binary = key.endswith("-bin")
        if binary and not isinstance(value, bytes):
            raise TypeError(f"metadata[{i}]: the value of a '-bin' key must be bytes, not {type(value).__name__}")
        if not binary and not (isinstance(value, str) and all(" " <= c <= "~" for c in value)):
            raise ValueError(f"metadata[{i}]: the value of {key!r} must be a str of printable ASCII, got {value!r}")
        out.append((key, value))
    return tuple(out)


def _sets_authorization(metadata: _MetadataTuple) -> bool:
    """Whether ``metadata`` has an ``authorization`` entry."""
    return any(key == "authorization" for key, _ in metadata)


def _error(e: grpc.RpcError) -> KeyFilterError:
    """The keyfilter error for a failed call (raised ``from e``):
    :class:`InvalidSpec` when the server refused the spec, else :class:`RemoteError`."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    details = e.details() if callable(getattr(e, "details", None)) else str(e)
    details = details or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT and is_spec_message(details):
        return InvalidSpec(code, details)
    return RemoteError(code, details)


def _len_field(field: int, body: bytes) -> bytes:
    """A length-delimited protobuf field (field numbers below 16)."""
    n = len(body)
    head = bytearray([(field << 3) | 2])
    while n >= 0x80:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + body


def _match_request(spec: _SpecBytes, keys: Sequence[Key], packed: bool) -> bytes:
    head = _len_field(1, spec.data)  # MatchRequest.spec = 1
    if packed:  # MatchRequest.packed_keys = 3
        return head + _native.encode_keys(keys, 3, arity=spec.arity, packed=True)
    return head + _native.encode_keys(keys, 2)  # MatchRequest.keys = 2


# The trailer in which the server counts the batches a Filter stream answered.
_BATCHES_TRAILER = "keyfilter-batches"


def _answers(call: Any, in_flight: Deque[Any]) -> Iterator[Tuple[Any, Any]]:
    """Pairs each response of a ``Filter`` call with the batch it answers
    (the oldest in ``in_flight``), holding the server to the protocol: one
    response per batch, numbered 0, 1, 2, ... A stream that ends with status
    OK while a batch it was sent is unanswered would silently drop that
    batch's matches: it raises :class:`RemoteError` (``DATA_LOSS``) instead,
    as does an answer out of order or for a batch never sent, or a count of
    batches answered (the server's ``keyfilter-batches`` trailer) that is not
    the number of answers that arrived."""
    expected = 0
    for number, matched in call:
        if not in_flight:
            raise RemoteError(
                grpc.StatusCode.DATA_LOSS,
                f"the server answered batch {number} of the Filter stream, but only {expected} batches were sent",
            )
        if number != expected:
            raise RemoteError(
                grpc.StatusCode.DATA_LOSS,
                f"the server answered batch {number} of the Filter stream where batch {expected} was due",
            )
        yield in_flight.popleft(), matched
        expected += 1
    answered = dict(call.trailing_metadata() or ()).get(_BATCHES_TRAILER)
    if answered is not None and answered != str(expected):
        raise RemoteError(
            grpc.StatusCode.DATA_LOSS,
            f"the server ended the Filter stream with status OK after answering {answered} batches, "
            f"but {expected} answers arrived",
        )
    if in_flight:
        raise RemoteError(
            grpc.StatusCode.DATA_LOSS,
            f"the server ended the Filter stream with status OK after answering {expected} of "
            f"{expected + len(in_flight)} batches",
        )


def _filter_batch(keys: Sequence[Key], arity: int, packed: bool, start: int) -> bytes:
    if packed:  # FilterRequest.packed_batch = 3
        return _native.encode_keys(keys, 3, arity=arity, packed=True, start=start)
    # FilterRequest.batch = 2, a KeyBatch whose keys are field 1.
    return _len_field(2, _native.encode_keys(keys, 1, start=start))


def _compile_request(spec: _SpecBytes, python_version: str, name: str) -> bytes:
    out = _len_field(1, spec.data) + _len_field(2, python_version.encode())
    return out + _len_field(3, name.encode()) if name else out


class Client:
    """A client of a keyfilter server (``keyfilter serve``).

    ``target`` is a gRPC target such as ``"localhost:50051"``; ``credentials``
    (``grpc.ssl_channel_credentials(...)``) makes the channel secure.
    ``timeout`` is the default deadline of every call in seconds (for
    :meth:`filter`, of the whole stream); None means none. Every method also
    takes ``timeout=`` for that call.

    ``token`` is a bearer token for a server started with ``--auth-tokens`` or
    ``--auth-tokens-file``: every call then sends ``authorization: Bearer
    <token>``, over TLS or plaintext alike (plaintext shows the token to
    anyone on the path: use it on loopback only). ``metadata`` is gRPC
    metadata sent with every call, ``(key, value)`` pairs; every method also
    takes ``metadata=``, sent after the client's (neither may set
    ``authorization`` when ``token`` does).

    ``verify_key`` holds the server's Ed25519 public key(s) (each 32 bytes, 64
    hex digits or a PEM block, as ``keyfilter pubkey`` prints it), either one
    key, accepted under the key id a server gives it by default (the first 8
    bytes of the key, in hex), or a mapping ``{key_id: key}`` of every key id
    accepted (for a server started with ``--signing-key-id``, or to accept
    several keys during a rotation). :meth:`compile` then refuses code signed
    under any other key id, checks that the signature covers *this* request
    (its spec, ``python_version`` and name) and the code and magic received,
    before running anything, and refuses unsigned code unless
    ``require_signature=False``. ``require_signature=True`` needs a
    ``verify_key``.

    Failed calls raise :class:`keyfilter.InvalidSpec` when the server refuses
    the spec, else :class:`keyfilter.RemoteError` (both subclasses of
    :class:`keyfilter.KeyFilterError`), carrying the gRPC status ``code`` and
    the server's ``message``, with the ``grpc.RpcError`` as ``__cause__``. Use
    as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: Optional[float] = None,
        options: Sequence[Any] = (),
        verify_key: Union[bytes, str, Mapping[str, Union[bytes, str]], None] = None,
        require_signature: Optional[bool] = None,
        token: Optional[str] = None,
        metadata: Metadata = (),
    ) -> None:
        """Opens the channel (lazily: nothing is sent before the first call)."""
        # Checked before the channel exists, so a bad argument leaks nothing.
        self._metadata = _bearer(token) + _checked_metadata(metadata)
        self._has_token = token is not None
        if self._has_token and _sets_authorization(self._metadata[1:]):
            raise ValueError("metadata: 'authorization' is already set by token=")
        opts = [
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            *options,
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        self.target = target
        self.timeout = timeout
        # Signed matchers: with a public key, unsigned code is refused unless
        # require_signature=False says otherwise.
        self._verify_keys = _accepted_keys(verify_key)
        if require_signature is None:
            require_signature = verify_key is not None
        if require_signature and verify_key is None:
            raise ValueError("require_signature=True needs verify_key (the server's public key)")
        self.verify_key = verify_key
        self.require_signature = require_signature
        # Requests go out as ready-made bytes (no serializer).
        self._match = self._channel.unary_unary(
            _SERVICE + "Match",
            response_deserializer=_native.decode_match_response,
        )
        self._filter = self._channel.stream_stream(
            _SERVICE + "Filter",
            response_deserializer=_native.decode_filter_response,
        )
        # Arrow data: the answers become Arrow arrays in Rust, not Python lists.
        self._match_arrow = self._channel.unary_unary(
            _SERVICE + "Match",
            response_deserializer=_native.decode_match_response_mask,
        )
        self._filter_arrow = self._channel.stream_stream(
            _SERVICE + "Filter",
            response_deserializer=_native.decode_filter_response_indices,
        )
        self._compile = self._channel.unary_unary(
            _SERVICE + "Compile",
            response_deserializer=_native.decode_compile_response,
        )

    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is _UNSET else timeout

    def _call_metadata(self, metadata: Metadata) -> Optional[_MetadataTuple]:
        """The metadata of one call: the client's (token first), then ``metadata``."""
        extra = _checked_metadata(metadata)
        if self._has_token and _sets_authorization(extra):
            raise ValueError("metadata: 'authorization' is already set by the client's token=")
        return (self._metadata + extra) or None

    @overload
    def match(
        self,
        spec: SpecLike,
        keys: _arrow.ArrowData,
        *,
        packed: bool = ...,
        columns: Any = ...,
        timeout: Optional[float] = ...,
        metadata: Metadata = ...,
    ) -> Any: ...
    @overload
    def match(
        self,
        spec: SpecLike,
        keys: Iterable[Key],
        *,
        packed: bool = ...,
        timeout: Optional[float] = ...,
        metadata: Metadata = ...,
    ) -> List[bool]: ...

    def match(
        self,
        spec: SpecLike,
        keys: Any,
        *,
        packed: bool = False,
        columns: Any = None,
        timeout: Optional[float] = _UNSET,
        metadata: Metadata = (),
    ) -> Any:
        """Evaluates ``spec`` on ``keys`` (tuples of bytes) in one ``Match``
        call; returns one bool per key. ``packed=True`` sends the keys in the
        compact ``PackedKeys`` form.

        Arrow data (anything exporting ``__arrow_c_stream__`` or
        ``__arrow_c_array__``: pyarrow, Polars, pandas, DuckDB) is sent in the
        columnar form, its key columns (``columns``: names or positions;
        default all) read in place by Rust, and the answer is a
        ``pyarrow.BooleanArray``, built in Rust. A key with a null field does
        not match. The whole data goes in one message: mind the server's
        ``--max-message-bytes`` (4 MiB by default), or use :meth:`filter`.
        """
        call_metadata = self._call_metadata(metadata)
        if _arrow.is_arrow(keys):
            sent = _SpecBytes(spec)
            body, _ = _native.encode_columnar(keys, 4, sent.arity, columns)  # MatchRequest.columnar_keys = 4
            request = _len_field(1, sent.data) + body
            try:
                mask = self._match_arrow(request, timeout=self._timeout(timeout), metadata=call_metadata)
            except grpc.RpcError as e:
                raise _error(e) from e
            return _arrow.to_arrow_mask(mask)
        if columns is not None:
            raise TypeError("columns= applies to Arrow data only (keys given as tuples have no columns)")
        # list(iter(keys)), not list(keys): the latter presizes from keys.__len__, which may lie.
        request = _match_request(
            _SpecBytes(spec), keys if isinstance(keys, (list, tuple)) else list(iter(keys)), packed
        )
        try:
            return self._match(request, timeout=self._timeout(timeout), metadata=call_metadata)
        except grpc.RpcError as e:
            raise _error(e) from e

    @overload
    def filter(
        self,
        spec: SpecLike,
        keys: _arrow.ArrowData,
        batch_size: Optional[int] = ...,
        *,
        packed: bool = ...,
        columns: Any = ...,
        window: int = ...,
        timeout: Optional[float] = ...,
        metadata: Metadata = ...,
    ) -> Any: ...
    @overload
    def filter(
        self,
        spec: SpecLike,
        keys: Iterable[Key],
        batch_size: Optional[int] = ...,
        *,
        packed: bool = ...,
        window: int = ...,
        timeout: Optional[float] = ...,
        metadata: Metadata = ...,
    ) -> Iterator[Key]: ...

    def filter(
        self,
        spec: SpecLike,
        keys: Any,
        batch_size: Optional[int] = None,
        *,
        packed: bool = False,
        columns: Any = None,
        window: int = 4,
        timeout: Optional[float] = _UNSET,
        metadata: Metadata = (),
    ) -> Any:
        """Streams ``keys`` through the server's ``Filter`` and yields the
        matching keys themselves, in order.

        Lazy at both ends: ``keys`` (any iterable, e.g. a generator over a
        file) is read ``batch_size`` keys at a time only as results are
        consumed, with at most ``window`` batches sent but not yet yielded, so
        memory stays flat whatever the input size. Stopping the iteration
        early cancels the call. An exception raised by ``keys`` (or a key that
        is not a tuple of bytes) ends the stream; it is raised after the keys
        before it have been yielded. ``batch_size`` is the keys per batch
        (default 10,000). Every batch sent must be answered, in order: a
        stream that ends OK with a batch unanswered raises
        :class:`RemoteError` with code ``DATA_LOSS``.

        Arrow data (a pyarrow Table, RecordBatchReader, Polars or pandas
        DataFrame, DuckDB relation, ...) is streamed in the columnar form: its
        record batches are cut into messages of at most ``batch_size`` keys
        (default 65,536) and about 3.5 MiB (cut evenly), and the answer is a
        ``pyarrow.RecordBatchReader`` of the matching rows (all columns, in
        order; ``columns`` picks the key columns), filtered as it is read with
        the same ``window``: no Python object per row, flat memory on any
        stream. An iterable of such objects (say a generator of record
        batches or data frames) gives an iterator of the matched rows'
        record batches. Needs pyarrow.
        """
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        call_metadata = self._call_metadata(metadata)
        if _arrow.is_arrow(keys):
            return self._stream_arrow(
                _SpecBytes(spec),
                keys,
                columns,
                batch_size or _ARROW_BATCH_KEYS,
                window,
                self._timeout(timeout),
                call_metadata,
            )
        return self._rows_or_batches(
            _SpecBytes(spec), iter(keys), batch_size, packed, columns, window, self._timeout(timeout), call_metadata
        )

    def _rows_or_batches(
        self,
        spec: _SpecBytes,
        items: Iterator[Any],
        batch_size: Optional[int],
        packed: bool,
        columns: Any,
        window: int,
        timeout: Optional[float],
        metadata: Optional[_MetadataTuple],
    ) -> Iterator[Any]:
        """An iterable of keys (tuples), or of Arrow objects (record batches,
        data frames): decided by its first item, read only once iteration
        starts, so the input stays lazy."""
        first = next(items, _END)
        if first is not _END and _arrow.is_arrow(first):
            import pyarrow as pa

            def batches() -> Iterator[Any]:
                for item in itertools.chain([first], items):
                    if isinstance(item, pa.RecordBatch):
                        yield item
                    else:
                        yield from pa.table(item).to_batches()

            yield from self._stream_arrow(
                spec, batches(), columns, batch_size or _ARROW_BATCH_KEYS, window, timeout, metadata, as_reader=False
            )
            return
        if columns is not None:
            raise TypeError("columns= applies to Arrow data only (keys given as tuples have no columns)")
        keys = items if first is _END else itertools.chain([first], items)
        yield from self._stream(spec, keys, batch_size or _ROW_BATCH_KEYS, packed, window, timeout, metadata)

    def _stream(
        self,
        spec: _SpecBytes,
        keys: Iterator[Key],
        batch_size: int,
        packed: bool,
        window: int,
        timeout: Optional[float],
        metadata: Optional[_MetadataTuple],
    ) -> Iterator[Key]:
        slots = threading.Semaphore(window)
        in_flight: Deque[List[Key]] = collections.deque()
        finished = threading.Event()
        failure: List[BaseException] = []
        arity = spec.arity

        def requests() -> Iterator[bytes]:
            # Runs in grpcio's own thread: it blocks on `slots` until the
            # consumer has taken the results of an earlier batch.
            yield _len_field(1, spec.data)  # FilterRequest.spec = 1
            start = 0
            while True:
                slots.acquire()
                if finished.is_set():
                    return
                try:
                    batch = list(itertools.islice(keys, batch_size))
                    if not batch:
                        return
                    request = _filter_batch(batch, arity, packed, start)
                except BaseException as e:  # handed to the consumer's thread
                    failure.append(e)
                    return
                # Recorded before it is sent, so before its response can arrive.
                in_flight.append(batch)
                start += len(batch)
                yield request

        call = self._filter(requests(), timeout=timeout, metadata=metadata)
        try:
            for batch, matched in _answers(call, in_flight):
                for i in matched:
                    yield batch[i]
                del batch
                slots.release()
        except grpc.RpcError as e:
            if failure:
                raise failure[0] from None
            raise _error(e) from e
        finally:
            finished.set()
            slots.release()  # wakes the request thread if it waits for a slot
            call.cancel()
        if failure:
            raise failure[0]

    def _stream_arrow(
        self,
        spec: _SpecBytes,
        data: Any,
        columns: Any,
        batch_rows: int,
        window: int,
        timeout: Optional[float],
        metadata: Optional[_MetadataTuple],
        as_reader: bool = True,
    ) -> Any:
        """The matched rows of ``data`` (an Arrow exporter, or with
        ``as_reader=False`` an iterator of record batches, whose schemas may
        differ): a ``RecordBatchReader``, or an iterator of record batches."""
        try:
            import pyarrow as pa
        except ImportError:
            raise ImportError("Client.filter of Arrow data needs pyarrow (pip install 'keyfilter[arrow]')") from None
        reader = pa.RecordBatchReader.from_stream(data) if as_reader else data
        slots = threading.Semaphore(window)
        in_flight: Deque[Any] = collections.deque()
        finished = threading.Event()
        failure: List[BaseException] = []

        def requests() -> Iterator[bytes]:
            # grpcio's thread, as for rows; each message is a slice of one
            # record batch, encoded in Rust without the GIL.
            yield _len_field(1, spec.data)  # FilterRequest.spec = 1
            try:
                for batch in reader:
                    start = 0
                    while start < batch.num_rows:
                        slots.acquire()
                        if finished.is_set():
                            return
                        body, n = _native.encode_columnar(
                            batch, 4, spec.arity, columns, start, batch_rows, _ARROW_MESSAGE_BYTES
                        )  # FilterRequest.columnar_batch = 4
                        in_flight.append(batch.slice(start, n))
                        start += n
                        yield body
            except BaseException as e:  # handed to the consumer's thread
                failure.append(e)

        def batches() -> Iterator[Any]:
            call = self._filter_arrow(requests(), timeout=timeout, metadata=metadata)
            try:
                for part, matched in _answers(call, in_flight):
                    if len(matched):  # batches without a match are left out
                        yield pa.record_batch(_native.take_rows(part, matched))
                    del part
                    slots.release()
            except grpc.RpcError as e:
                if failure:
                    raise failure[0] from None
                raise _error(e) from e
            finally:
                finished.set()
                slots.release()
                call.cancel()
            if failure:
                raise failure[0]

        return pa.RecordBatchReader.from_batches(reader.schema, batches()) if as_reader else batches()

    def compile(
        self,
        spec: SpecLike,
        name: Optional[str] = None,
        *,
        timeout: Optional[float] = _UNSET,
        metadata: Metadata = (),
    ) -> Callable[..., bool]:
        """Has the server generate code for ``spec`` for this interpreter
        (``Compile`` with ``python_version`` = ``"3.<minor>"``), checks the magic
        number against ``importlib.util.MAGIC_NUMBER``, checks the signature when
        the client has a ``verify_key`` (refusing unsigned code if
        ``require_signature``, and code signed under a key id not given, or
        signed for another request), and returns the function made by
        :func:`keyfilter.materialize`, which verifies the code first. A refusal
        is :class:`keyfilter.CodeRejected` (a ``ValueError``)."""
        call_metadata = self._call_metadata(metadata)
        message = _SpecBytes(spec)
        sent_version = running_version()
        sent_name = name or ""
        request = _compile_request(message, sent_version, sent_name)
        try:
            code, version, magic, signature, key_id = self._compile(
                request, timeout=self._timeout(timeout), metadata=call_metadata
            )
        except grpc.RpcError as e:
            raise _error(e) from e
        if version != sent_version:
            raise CodeRejected(f"the server answered for python_version {version!r}, but {sent_version!r} was asked")
        if signature and self._verify_keys:
            self._check_signature(message, sent_version, sent_name, code, magic, signature, key_id)
        elif not signature and self.require_signature:
            raise CodeRejected("refusing unsigned code: the server sent no signature (require_signature=True)")
        if magic != importlib.util.MAGIC_NUMBER:
            raise CodeRejected(
                f"the server generated code for Python {version} (magic {magic.hex()}), "
                f"but this interpreter's magic number is {importlib.util.MAGIC_NUMBER.hex()}"
            )
        return materialize(code, message.arity, python_version=version)

    def _check_signature(
        self,
        spec: _SpecBytes,
        python_version: str,
        name: str,
        code: bytes,
        magic: bytes,
        signature: bytes,
        key_id: str,
    ) -> None:
        """Raises :class:`CodeRejected` unless ``signature`` is by an accepted
        key and covers this request (what this client sent) and this answer."""
        key = self._verify_keys.get(key_id)
        if key is None:
            raise CodeRejected(
                f"refusing code signed with key id {key_id!r}: not an accepted key id "
                f"(accepted: {', '.join(sorted(self._verify_keys))})"
            )
        signed = _native.compile_signed_message(key_id, spec.data, python_version, name, magic, code)
        try:
            _native.verify_signature(key, signed, signature)
        except ValueError as e:
            raise CodeRejected(f"refusing code signed with key id {key_id!r}: {e}") from None

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"keyfilter.Client({self.target!r})"

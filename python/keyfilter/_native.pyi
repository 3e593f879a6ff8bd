"""Type stubs of keyfilter._native, the Rust half of the package."""

from typing import Union, Any, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar

_Wire = Iterable[Tuple[int, int, bytes, Iterable[bytes]]]
# An expression node, or None for no expression:
#   ("predicate", (field, op, value, values)) | ("all", [node, ...]) | ("any", [node, ...])
#   | ("negate", node) | ("unset",)   (an Expr message with no node set)
_Expr = Optional[Sequence[Any]]

DEFAULT_NAME: str
MAX_EXPR_DEPTH: int

_M = TypeVar("_M", bound="Matcher")
# A field of a key: bytes, or a str for a matcher with an encoding.
_Field = Union[bytes, str]

class Matcher:
    """Evaluates a spec natively: ``m(*key) -> bool``, ``m.mask(keys)``, ``m.filter(keys)``.

    ``Matcher(spec, encoding=None)`` reads ``spec._wire()`` (arity, predicates,
    expression) and validates it (ValueError with the server's message).
    A key is a tuple (or list) of exactly ``arity`` bytes objects (or str,
    encoded with ``encoding`` when one is given); wrong arity
    raises ValueError (TypeError for a direct call), a non-bytes field
    TypeError, each naming the key (``keys[7][1]: expected bytes, got str``).
    Subclassed by ``keyfilter.Matcher``.
    """

    def __new__(cls: Type[_M], spec: Any, encoding: Optional[str] = None) -> _M: ...
    @property
    def arity(self) -> int:
        """Number of fields every key must have."""
    @property
    def encoding(self) -> Optional[str]:
        """The codec ``str`` fields are encoded with; None when they are refused."""
    def __call__(self, *key: _Field) -> bool:
        """Whether the key whose fields are the arguments matches."""
    def mask(self, keys: Iterable[Sequence[_Field]]) -> List[bool]:
        """One bool per key, in order."""
    def filter(self, keys: Iterable[Sequence[_Field]]) -> List[Any]:
        """A new list of the matching key objects themselves, in order."""
    def count(self, keys: Iterable[Sequence[_Field]]) -> int:
        """The number of matching keys."""
    def _arrow_eval(
        self, data: Any, columns: Any = None, nulls: str = "no_match", threads: Optional[int] = None, want_mask: bool = True
    ) -> Any:
        """Arrow data: an ``ArrowMask`` (``want_mask``) or the count."""

class ArrowMask:
    """One bool per key as an Arrow boolean array (``__arrow_c_array__``)."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> Tuple[Any, Any]: ...
    def __len__(self) -> int: ...
    @property
    def true_count(self) -> int: ...
    def to_pylist(self) -> List[bool]: ...

class ArrowIndices:
    """Row indices as an Arrow uint32 array (``__arrow_c_array__``)."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> Tuple[Any, Any]: ...
    def __len__(self) -> int: ...
    def to_pylist(self) -> List[int]: ...

def encode_columnar(
    data: Any,
    field: int,
    arity: int,
    columns: Any = None,
    start: int = 0,
    max_rows: Optional[int] = None,
    max_bytes: Optional[int] = None,
) -> Tuple[bytes, int]:
    """Arrow data as a ``ColumnarKeys`` message (protobuf field ``field``): ``(bytes, keys encoded)``."""

class ArrowBatch:
    """A record batch (``__arrow_c_array__``), for ``pyarrow.record_batch``."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> Tuple[Any, Any]: ...
    def __len__(self) -> int: ...

def take_rows(batch: Any, indices: ArrowIndices) -> ArrowBatch:
    """The rows ``indices`` of the record batch ``batch``, taken in Rust."""

def decode_match_response_mask(data: bytes) -> ArrowMask: ...
def decode_filter_response_indices(data: bytes) -> Tuple[int, ArrowIndices]: ...
def _layout() -> Tuple[int, int]: ...
def is_arrow(obj: Any) -> bool:
    """Whether ``obj`` exports Arrow data through the PyCapsule interface."""

def validate(arity: int, predicates: _Wire, expr: _Expr) -> None: ...
def spec_to_json(arity: int, predicates: _Wire, expr: _Expr) -> str: ...
def spec_from_json(text: str) -> Tuple[int, List[Tuple[int, int, bytes, List[bytes]]], _Expr]: ...
def explain(arity: int, predicates: _Wire, expr: _Expr) -> str:
    """The normalized plan of the (validated) spec, as text."""
def compile_code(arity: int, predicates: _Wire, expr: _Expr, python_version: str, name: str) -> bytes: ...
def disassemble(arity: int, predicates: _Wire, expr: _Expr, python_version: str, name: str) -> str: ...
def magic(python_version: str) -> bytes: ...
def supported_versions() -> List[str]: ...
def line_table(python_version: str, code_len: int) -> bytes: ...
def opcodes(python_version: str) -> List[Tuple[str, int, int]]:
    """The generator's opcodes on that version: ``(dis name, number, inline cache units)``."""
def encode_keys(
    keys: Iterable[Sequence[bytes]], field: int, *, arity: Optional[int] = None, packed: bool = False, start: int = 0
) -> bytes:
    """Keys as protobuf field ``field`` (``Key`` rows, or one ``PackedKeys``)."""
def encode_spec(arity: int, predicates: _Wire, expr: _Expr) -> bytes:
    """The FilterSpec message bytes (not validated)."""
def decode_match_response(data: bytes) -> List[bool]: ...
def decode_filter_response(data: bytes) -> Tuple[int, List[int]]: ...
def decode_compile_response(data: bytes) -> Tuple[bytes, str, bytes, bytes, str]: ...
def spec_digest(spec: bytes) -> bytes:
    """SHA-256 of the canonical encoding of the validated spec in these FilterSpec bytes."""
def compile_signed_message(
    key_id: str, spec: bytes, python_version: str, name: str, magic: bytes, code: bytes
) -> bytes:
    """The message a Compile signature covers, for this request (FilterSpec bytes, version, name as sent)."""
def verify_signature(verify_key: Union[bytes, str], message: bytes, signature: bytes) -> None:
    """Raises ValueError unless `signature` is `verify_key`'s Ed25519 signature of `message`."""
def default_key_id(verify_key: Union[bytes, str]) -> str:
    """The key id a server gives this key by default (its first 8 bytes, hex)."""
def check_verify_key(verify_key: Union[bytes, str]) -> None:
    """Raises ValueError unless `verify_key` is a usable Ed25519 public key."""
def file_descriptor_set() -> bytes:
    """The encoded FileDescriptorSet of proto/keyfilter/v1/keyfilter.proto."""

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_UNSPECIFIED: _ClassVar[Op]
    EQ: _ClassVar[Op]
    NE: _ClassVar[Op]
    LT: _ClassVar[Op]
    LE: _ClassVar[Op]
    GT: _ClassVar[Op]
    GE: _ClassVar[Op]
    PREFIX: _ClassVar[Op]
    IN: _ClassVar[Op]
    SUFFIX: _ClassVar[Op]
    CONTAINS: _ClassVar[Op]
OP_UNSPECIFIED: Op
EQ: Op
NE: Op
LT: Op
LE: Op
GT: Op
GE: Op
PREFIX: Op
IN: Op
SUFFIX: Op
CONTAINS: Op

class Predicate(_message.Message):
    __slots__ = ("field", "op", "value", "values")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: int
    op: Op
    value: bytes
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, field: _Optional[int] = ..., op: _Optional[_Union[Op, str]] = ..., value: _Optional[bytes] = ..., values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Expr(_message.Message):
    __slots__ = ("predicate", "all", "any", "negate")
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    predicate: Predicate
    all: ExprList
    any: ExprList
    negate: Expr
    def __init__(self, predicate: _Optional[_Union[Predicate, _Mapping]] = ..., all: _Optional[_Union[ExprList, _Mapping]] = ..., any: _Optional[_Union[ExprList, _Mapping]] = ..., negate: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class ExprList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Expr]
    def __init__(self, items: _Optional[_Iterable[_Union[Expr, _Mapping]]] = ...) -> None: ...

class FilterSpec(_message.Message):
    __slots__ = ("arity", "predicates", "expr")
    ARITY_FIELD_NUMBER: _ClassVar[int]
    PREDICATES_FIELD_NUMBER: _ClassVar[int]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    arity: int
    predicates: _containers.RepeatedCompositeFieldContainer[Predicate]
    expr: Expr
    def __init__(self, arity: _Optional[int] = ..., predicates: _Optional[_Iterable[_Union[Predicate, _Mapping]]] = ..., expr: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, fields: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PackedKeys(_message.Message):
    __slots__ = ("data", "lengths", "count")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    lengths: _containers.RepeatedScalarFieldContainer[int]
    count: int
    def __init__(self, data: _Optional[bytes] = ..., lengths: _Optional[_Iterable[int]] = ..., count: _Optional[int] = ...) -> None: ...

class ColumnarKeys(_message.Message):
    __slots__ = ("count", "columns")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    count: int
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, count: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("values", "offsets", "offset_width", "fixed_width", "validity")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FIXED_WIDTH_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    values: bytes
    offsets: bytes
    offset_width: int
    fixed_width: int
    validity: bytes
    def __init__(self, values: _Optional[bytes] = ..., offsets: _Optional[bytes] = ..., offset_width: _Optional[int] = ..., fixed_width: _Optional[int] = ..., validity: _Optional[bytes] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("spec", "keys", "packed_keys", "columnar_keys")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PACKED_KEYS_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_KEYS_FIELD_NUMBER: _ClassVar[int]
    spec: FilterSpec
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    packed_keys: PackedKeys
    columnar_keys: ColumnarKeys
    def __init__(self, spec: _Optional[_Union[FilterSpec, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ..., packed_keys: _Optional[_Union[PackedKeys, _Mapping]] = ..., columnar_keys: _Optional[_Union[ColumnarKeys, _Mapping]] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, matches: _Optional[_Iterable[bool]] = ...) -> None: ...

class KeyBatch(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ...) -> None: ...

class FilterRequest(_message.Message):
    __slots__ = ("spec", "batch", "packed_batch", "columnar_batch")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PACKED_BATCH_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_BATCH_FIELD_NUMBER: _ClassVar[int]
    spec: FilterSpec
    batch: KeyBatch
    packed_batch: PackedKeys
    columnar_batch: ColumnarKeys
    def __init__(self, spec: _Optional[_Union[FilterSpec, _Mapping]] = ..., batch: _Optional[_Union[KeyBatch, _Mapping]] = ..., packed_batch: _Optional[_Union[PackedKeys, _Mapping]] = ..., columnar_batch: _Optional[_Union[ColumnarKeys, _Mapping]] = ...) -> None: ...

class FilterResponse(_message.Message):
    __slots__ = ("batch", "matched")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    batch: int
    matched: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, batch: _Optional[int] = ..., matched: _Optional[_Iterable[int]] = ...) -> None: ...

class CompileRequest(_message.Message):
    __slots__ = ("spec", "python_version", "name")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    spec: FilterSpec
    python_version: str
    name: str
    def __init__(self, spec: _Optional[_Union[FilterSpec, _Mapping]] = ..., python_version: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CompileResponse(_message.Message):
    __slots__ = ("code", "python_version", "magic", "signature", "key_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAGIC_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    code: bytes
    python_version: str
    magic: bytes
    signature: bytes
    key_id: str
    def __init__(self, code: _Optional[bytes] = ..., python_version: _Optional[str] = ..., magic: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

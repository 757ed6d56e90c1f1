"""Flight SQL's protobuf messages (Arrow's format/FlightSql.proto), packed in `google.protobuf.Any`.

The generated messages come from the `altertable-flightsql` package (`flightsql-dbapi`, which
ships the same file, pins SQLAlchemy below 2). Only the command types listed in COMMANDS are
accepted from a client; anything else is "unknown", bytes that do not parse are "malformed".
"""

from __future__ import annotations

from altertable_flightsql.generated import arrow_flight_sql_pb2 as sql
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from catalog.errors import InvalidArgument

TYPE_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."

# Commands a client may send in a FlightDescriptor, a ticket or an action body.
COMMANDS: dict[str, type[Message]] = {
    name: getattr(sql, name)
    for name in (
        "CommandStatementQuery",
        "CommandPreparedStatementQuery",
        "CommandGetSqlInfo",
        "CommandGetCatalogs",
        "CommandGetDbSchemas",
        "CommandGetTables",
        "CommandGetTableTypes",
        "CommandStatementIngest",
        "CommandStatementUpdate",
        "CommandPreparedStatementUpdate",
        "CommandGetXdbcTypeInfo",
        "CommandGetPrimaryKeys",
        "CommandGetExportedKeys",
        "CommandGetImportedKeys",
        "CommandGetCrossReference",
        "CommandStatementSubstraitPlan",
        "TicketStatementQuery",
        "ActionCreatePreparedStatementRequest",
        "ActionClosePreparedStatementRequest",
        "ActionBeginTransactionRequest",
        "ActionEndTransactionRequest",
        "ActionCancelQueryRequest",
    )
}


def pack(message: Message) -> bytes:
    """`message` wrapped in an Any, serialized."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def unpack(data: bytes) -> Message:
    """The Flight SQL command in `data`; InvalidArgument if it is malformed or unknown."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(bytes(data))
    except DecodeError:
        raise InvalidArgument("malformed Flight SQL command (not a protobuf Any)") from None
    if not wrapper.type_url.startswith(TYPE_PREFIX):
        raise InvalidArgument(
            "unknown command type; send a Flight SQL command "
            "(type.googleapis.com/arrow.flight.protocol.sql.*)"
        )
    name = wrapper.type_url[len(TYPE_PREFIX) :]
    kind = COMMANDS.get(name)
    if kind is None:
        raise InvalidArgument(f"unknown Flight SQL command type {_shown(name)}")
    message = kind()
    try:
        message.ParseFromString(wrapper.value)
    except DecodeError:
        raise InvalidArgument(f"malformed Flight SQL command {name}") from None
    return message


def _shown(name: str) -> str:
    return name if name.isidentifier() and len(name) < 80 else "(unreadable)"

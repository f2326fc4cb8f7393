"""The client library of dpmd and the ``dpmctl`` command.

``connect`` (Twisted) and ``dpmd.client.aio.connect`` (asyncio) give a
``DpmClient`` whose methods are the DPM's interfaces; the protocol itself is
``dpmd.client.core``, which does no I/O.
"""

from dpmd.client._twisted import connect
from dpmd.client.api import DAQ_STATUS_TOPIC, STORAGE_TOPIC, DpmClient
from dpmd.client.endpoints import DEFAULT_ENDPOINT
from dpmd.client.errors import (
    ConnectFailed,
    ConnectionLost,
    DaqError,
    EndpointError,
    ProtocolError,
    RpcError,
)

__all__ = [
    "DAQ_STATUS_TOPIC",
    "DEFAULT_ENDPOINT",
    "STORAGE_TOPIC",
    "ConnectFailed",
    "ConnectionLost",
    "DaqError",
    "DpmClient",
    "EndpointError",
    "ProtocolError",
    "RpcError",
    "connect",
]

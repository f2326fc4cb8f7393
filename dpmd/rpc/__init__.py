"""JSON-RPC 2.0 over lines, the wire; nothing here knows the DAQ core.

A request line goes down through these rooms, its reply back up:

* ``listener``: ``JsonRpcFactory``, which connections get a session, and
  closing them all at ``Exit`` or at stop;
* ``protocol``: ``JsonRpcProtocol``, one connection: bytes into lines,
  requests in flight, pausing reading, closing; ``bounds`` holds what every
  connection of a server shares (their number, the input they hold);
* ``outbox``: the lines held for a client that is not reading, status
  notifications coalesced;
* ``dispatch``: ``Dispatcher``, the JSON-RPC 2.0 envelope without I/O (request
  shape, ids, batches, notifications, who may call what, the reply lines);
* ``methods``: the method table the API declares (``Method``, ``Param``) and
  binding a request's params to it;
* ``errors``: the error codes, ``RpcError``, and what any other exception
  from a handler becomes.

JSON itself is ``dpmd.encoding``'s, shared with the core.
"""

"""JSON-RPC 2.0 over lines: framing (protocol), the pure dispatcher, the server's bounds."""

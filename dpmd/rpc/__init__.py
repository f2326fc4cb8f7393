"""JSON-RPC 2.0 over lines: framing (protocol), the pure dispatcher and topics."""

// Package faultproxy is a TCP proxy that injects network faults between a
// client and a server in tests.
//
// A Proxy listens on 127.0.0.1 and relays every accepted connection to one
// target address. Its Mode can be switched at any time and applies at once to
// existing and new connections:
//
//   - Pass forwards bytes both ways.
//   - Blackhole lets nothing through either way and closes nothing. The proxy
//     stops reading once it holds one chunk per direction, so TCP backpressure
//     builds exactly as it does behind a partition that drops packets, and
//     the held bytes are delivered, in order, when the mode goes back to Pass.
//     A connection accepted during Blackhole is not dialled upstream until
//     the mode changes.
//   - Reset closes every current connection with a TCP RST on both sides and
//     resets new connections as soon as they are accepted.
//   - DropServerToClient forwards client-to-server bytes and silently
//     discards server-to-client bytes (including the server's FIN): publishes
//     arrive, their confirms and the server's heartbeats are lost.
//
// Bytes discarded by DropServerToClient are lost for good; switching back to
// Pass does not replay them, so a framed protocol usually sees a corrupt
// stream afterwards, as it would after real one-way loss.
//
// Every method is safe for concurrent use. Close stops the listener, closes
// all connections and returns only after every goroutine the proxy started has
// returned.
package faultproxy

// Package wcoalesce wraps a net.Conn so that small writes made while an
// earlier write is in the kernel leave together in the next one: a group
// commit for a socket.
//
// amqp091 flushes its buffer once per publish, so a forwarder publishing
// 10k messages/s makes 10k write system calls, and the broker reads as many
// TCP segments. Behind this wrapper, a publish made while the previous
// write is still in the kernel is copied into a pending buffer and goes out
// with the others in one write.
//
// Invariants:
//   - Bytes leave in the order they were written; nothing is reordered or
//     dropped while the connection is healthy.
//   - Write copies p before it returns (the caller may reuse its buffer).
//   - A write error is sticky: every later Write returns it, and the
//     connection is closed so the reader sees the failure too.
//   - Pending bytes are bounded (MaxPending): a Write past it waits for the
//     writer, so a dead peer stalls the caller instead of growing memory.
//   - Close waits for nothing: pending bytes are dropped (a closed AMQP
//     connection has nothing left to say that matters; unconfirmed
//     publishes stay pending in the outbox).
package wcoalesce

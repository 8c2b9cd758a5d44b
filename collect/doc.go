/*
Package collect is the central consumer: it turns the at-least-once stream
of clicks and actions on the central RabbitMQ into exactly one PostgreSQL
row per click_id and per action_id.

# Flow

A Collector declares the topic exchanges (clicks, actions), its durable
queues (collector.clicks bound with "click.#", collector.actions with
"action.#", collector.dead) with x-queue-type quorum or classic, and
consumes both queues in Writers lanes. A lane is an AMQP channel per queue,
each with one consumer (prefetch at least one batch), a goroutine that
parses deliveries into rows as they arrive and gathers them into a batch of
up to BatchSize messages or BatchInterval after its first, and a writer
goroutine with its own PostgreSQL connection that commits the lane's
batches in order; the next batch fills while one is written.

# Invariants

  - Acked only after committed. A batch's rows are COPYed into session
    staging tables and inserted with INSERT ... SELECT ... ON CONFLICT DO
    NOTHING in one transaction; only after the commit (and after the
    batch's poison is confirmed on collector.dead) is the batch acked, with
    one ack multiple per channel up to its last delivery tag there. Each
    channel carries one consumer, whose deliveries arrive in tag order,
    and a lane's batches are acked in that order, so an ack multiple never
    covers a message not yet committed. (Two consumers on one channel
    would break this: their deliveries reach the client through two
    buffers, so a later tag of one can be batched before an earlier tag
    of the other.)
  - Exactly one row per id. Redeliveries (a crash, a lost ack, a second
    collector) and republished duplicates hit the primary keys and are
    counted as duplicates. clicks is keyed (click_id, click_ts) with
    click_ts the click_id's UUIDv7 millisecond, a function of the id, so
    the key is unique per click_id across the day partitions. An action_id
    does not determine its click, so the unpartitioned action_keys table
    claims each action_id once before its row goes into actions.
  - Poison never blocks. A message that is not a JSON object, has no or a
    malformed id, an unknown "v", or a field of the wrong type or value, is
    published to collector.dead (through the default exchange, persistent,
    headers ReasonHeader, DetailHeader, QueueHeader beside its own) and
    acked with its batch once the broker confirmed it. The rest of the
    batch is written as usual. Text is made storable (NUL becomes U+FFFD),
    so no value known to be refused by PostgreSQL reaches it; should the
    database refuse a batch anyway (SQLSTATE class 22 or 23), its rows are
    written one by one and the refused ones dead-lettered as "refused".
  - Outages wait, they do not lose. While PostgreSQL is unreachable the
    writer retries the same batch with back-off and acks nothing; the
    prefetch window stops the broker from sending more. When the broker
    connection breaks, the batches in hand are dropped unacked (the broker
    redelivers them) and the collector reconnects with back-off.
  - Schema. Migrations (migrations/NNNN_name.sql, embedded) are applied at
    start under a session advisory lock, so collectors starting together
    migrate once; schema_migrations records them. Day partitions are
    created before rows of their day are inserted, under another advisory
    lock; days outside [today-PartitionsBack, today+PartitionsAhead] go to
    the default partitions.

Several collectors may consume the same queues: the broker spreads
deliveries between them, and the keys make their writes commute.
*/
package collect

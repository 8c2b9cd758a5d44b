/*
Package outbox is a durable local queue of AMQP messages that survives
crashes and outages.

An Outbox is one bbolt file. HTTP handlers Append records; one forwarder
reads them in order (ReadPending), publishes them, and acknowledges (Ack)
the ones the broker confirmed. It keeps clickedge's first promise: a click
that was answered is on disk, and stays there until the broker confirmed it.

# Write path

One goroutine, the writer, owns the bbolt write path. Append encodes the
record in the caller's goroutine, queues it, and wakes the writer; the
writer commits the oldest batch of queued records together with every
waiting Ack in one transaction and one fsync. Whatever arrives while a
commit runs goes into the next one (natural batching), capped by
Options.MaxBatchRecords and Options.MaxBatchBytes.

With Options.Log (Sync mode only), a log goes before the tree (wal.go):
one more goroutine, the logger, takes the queued batches in order,
assigns their sequences, writes each as one frame (length, CRC-32C, first
sequence, generation) with one pwrite into <path>.log, a preallocated,
zero-filled file of Options.LogBytes, and fdatasyncs it: the file's size
never changes, so that is one flush of data. It answers the batch's
appenders as soon as that fdatasync returns and hands the batch to the
writer, which moves every logged batch waiting into bbolt in one commit,
with the acks and the prune step, while the logger writes the next ones:
a bbolt commit's two fdatasyncs are shared by many log batches and
overlap with log writes. At a low rate the writer lets logged batches
gather (moveWait): while they hold fewer than 256 records it moves
them Options.MoveDelay after the oldest was logged, not at once; never at
Close, with acks or a prune step due, with a direct batch behind them,
or once the log is half used or the logger waits for room. Batches
that need the tree's answer (an AppendIndexed or AppendDurable, Sync's and Prune's, the
spill's way back) are not logged: the logger hands them to the writer, which commits them after every
logged batch before them, and waits. Once everything logged is in bbolt
and a quarter of the log is used (or the next frame does not fit), the
next frame starts the log again from its start under a new generation,
written in the same fdatasync; frames of older generations end any scan.

# Routes

What is the same for every record of one kind from one node (exchange,
routing key, headers) is a route, stored once in the file's routes bucket
and named by id in each record (routes.go, record format 3). Append interns
the route; the writer writes a new route in the transaction of the first
record that names it, so a committed record's route is always committed.
At most 4096 routes are interned, none longer than 1 KiB; others are
stored inline in their records. Routes are never deleted. Records of
format 1 (route inline, older builds) are read as before. A record naming
an unknown route is damage (ErrCorrupt). Callers see Record unchanged.
With the log, the first frame of each log generation that names a route
carries it too (the record's defined form, in the frame only), so a crash
between the log's fdatasync and the move never leaves a logged record whose
route is nowhere on disk: replaying the log puts such routes in the bucket
before the records.

# When a record is durable

In Sync mode (the default) Append returns nil only after the commit holding
the record returned from fdatasync: the record survives kill -9 and power
loss from then on. In Async mode Append returns once the record is queued;
it is committed within Options.FlushInterval plus one commit (see the
CommitLatency histogram), and that is the loss window on a crash. bbolt's
NoSync is never used. AppendDurable returns nil only after the record's own
commit, in either mode, and a failed commit spills nothing: the caller
keeps the record (a hand-off is acknowledged on it).

With Options.Log, a Sync-mode Append returns nil once the frame holding
the record returned from fdatasync: from then on it survives kill -9 and
power loss in the log, and Open moves it into bbolt before anything else
(frames of the current generation, valid CRC, sequence at or above
bbolt's next_seq; a frame torn by the crash was never answered and is
ignored, and a damaged frame followed by valid frames holding records
bbolt lacks makes Open fail with ErrCorrupt; valid frames whose records
bbolt holds are left from before the log started over, and the next frame
opens a new generation so that they never follow it). Readers (ReadPending, Scan, the forwarder) see a record once
it is in bbolt: within Options.MoveDelay (10 ms by default) and one
commit after the log (Stats MoveLatency); Sync waits for it, and moves
at once. When the log is full the logger waits
for the writer to move what it holds; when bbolt takes no writes then
(a write back-off), Append fails with ErrWrite and the caller spills, as
without the log. A write error of the log fails the batch (ErrWrite); the
next frame goes to the same place, but a crash before it may leave the
refused records stored: a duplicate, never a loss. A file whose log holds
records it lacks is refused by a read-only Open (ErrLogPending); opening
it for writing, with or without Options.Log, moves them (without, the
log is then removed).

Any error from Append means the record is not stored. A batch's fate has
one owner: the timeout loop fails a batch that has not reached its commit
point within Options.CommitTimeout (ErrTimeout), and the writer then rolls
it back; once the writer has claimed a batch (just before bbolt writes and
fsyncs it) its appenders wait for that commit's outcome, so Append blocks
longer than CommitTimeout only while a disk hangs inside one fsync.

# Sequence and order

Each committed record gets a sequence number (Record.Seq), assigned in
commit order, strictly increasing and never reused, not even after the
records before it were deleted. Records appended by one goroutine, one
after another, get increasing sequence numbers. ReadPending returns pending
records in sequence order.

# When a record may be deleted

A record leaves the pending set only through Ack, which the forwarder calls
after the broker's basic.ack for it (and no basic.return). Acks ride in the
next commit; a crash before it leaves the record pending and it is published
again. An ack neither moves nor rewrites the record: its sequence joins a
span of delivered sequences (delivered.go), so a commit that carries
thousands of acks writes a few pages. A delivered record is kept for
Options.Retention after its delivery (at most a span's window longer,
never shorter), for replay, and then pruned, at most Options.PruneBatch per
commit so that pruning never stalls appends for long. When
Options.MaxBytes is reached, delivered records are evicted early, oldest
first; so they are when a commit fails because the disk is full (ENOSPC,
EDQUOT): the writer evicts the oldest delivered records in a transaction
of their own and tries the commit again, before any Append fails. Pending
records are never deleted by the outbox.

# What a reader must expect

Delivery is at least once. A record is read again after a restart if it was
read but not acknowledged, or acknowledged but the commit holding the ack
did not happen. Records are published with their MessageID so consumers
deduplicate. Between restarts a reader that passes the last sequence it saw
as "after" sees each record once.

# The spill

When Append fails, the caller may Spill the record: a bounded memory queue
(Options.SpillBytes) that the forwarder publishes directly, ahead of the
file. Spilled records are not durable: they survive broker outages but not
a crash of the process. They carry sequence numbers of their own and
Record.Spilled is set. When the spill is full, Spill returns ErrSpillFull
and counts the record in Stats.Spill.Dropped: nothing is dropped without
being counted.

The writer moves spilled records back into the file as soon as it takes
writes again (after a write back-off, and within Options.MaxBytes), so
they become durable; one the forwarder had in flight is then published
again (a duplicate). Close tries once more and counts what is left as
lost (Stats.Spill.Dropped, Options.OnLost). In Async mode, the records of
a commit that failed are moved to the spill, or counted the same way.
OnLost reports each lost record once, with its route: the outbox holds
several kinds of record (clicks, actions), and each is counted under its
own kind above the outbox.

# The index

A small key/value index lives in the same file (index.go), for callers
whose answer depends on what they appended before: the postback role keeps
each order's status there. AppendIndexed appends a record together with a
conditional change of one entry (the entry must still be what the caller
read with IndexGet, else ErrIndexChanged and nothing is stored), in the
same transaction (never through the log: see Write path, so the change is
checked against every record appended before it, logged or not): after
any crash an entry exists exactly when its record was committed, so an
answer given from the index never disagrees with what will be delivered. AppendIndexed waits for its commit in both durability
modes. Keys are 16 bytes (callers hash what they index), values 16 bits
with an expiry to the second; expired entries are invisible to IndexGet
and deleted by the retention step, at most Options.PruneBatch per
Options.PruneInterval. The index is local state, not a record: Salvage
does not copy it, and replay does not rebuild it.

# Damage

Open checks every page and every record checksum before bbolt reads the
file (see Verify). A damaged file, truncated or with flipped bits, makes
Open fail with an error wrapping ErrCorrupt that says what to do; records
are never skipped silently. A file that passed is safe for bbolt. A record
damaged later, while the node runs, makes ReadPending fail with ErrCorrupt
rather than skip it.

# Tools

Scan walks records in batches, each in its own read transaction, for export
and replay. Verify checks a file without opening it for writing. Compact
rewrites a stopped node's file without its free pages and swaps it in,
keeping the original as a backup. Salvage copies every record whose bytes
are intact, and the routes they name, from a damaged file into a new one, walking the tree tolerantly
and then every page of the file; a record found more than once keeps its
delivered copy, since only a broker ack writes one. Verify reports the
log next to the file and the records the file lacks; Salvage appends
those (by message id, with new sequences) to the new outbox; Compact
keeps next_seq, so the log stays valid beside the compacted file.

# Concurrency

Append, Spill, Stats and Sync may be called from any goroutine. ReadPending,
ReadSpill, Ack and AckSpill are meant for one forwarder; they are safe to
call concurrently, but two readers would each deliver every record. Only one
process may open a file; Open fails with ErrLocked after
Options.LockTimeout.
*/
package outbox

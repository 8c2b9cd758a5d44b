/*
Package cluster joins the edge nodes of one region into a memberlist pool:
who is alive, what each one has not yet delivered, which catalog it serves.
On top of membership it runs catalog anti-entropy and the outbox hand-off.

# One pool per region

Every packet and stream carries the label "clickedge/<region>"
(memberlist.Config.Label, authenticated data when encrypted), so a node of
another region that is pointed at a seed by mistake is refused and never
joins. Seeds (Config.Join) are retried with a backoff until one answers,
and every RejoinInterval while the node is alone, so that a seed that was
down when the pool formed does not leave it split.

# Encryption

With a Keyring, gossip is encrypted with its primary key (AES-GCM) and
accepted under any of its keys, which is how keys rotate without downtime:
install a key everywhere, make it primary everywhere, remove the old one.
Create refuses a non-loopback bind without a keyring. Keyring changes are
written to the keyring file (temp file, fsync, rename, fsync of the
directory) before they are applied, so a restarted node keeps them.

The internal HTTP endpoints (catalog pages, hand-off, key changes) sign each
request with a key derived from the primary gossip key (HMAC-SHA256 over the
method, the URI, the time, the sender and the body's hash); a receiver
accepts a signature made with any key of its keyring within MaxSkew of its
clock. Without a keyring (loopback pools only) they accept loopback
callers only.

# Metadata and live state

Node metadata (memberlist's, at most 512 bytes) holds what changes only at
start: region, roles, version, public and admin addresses. Live state
(outbox depth and age, forwarder state, catalog version and digest) changes
all the time: every LiveInterval it is sent to each member directly (one
UDP packet each) and queued as a gossip broadcast, and push/pull
exchanges carry it for nodes that join; a newer state of a node replaces
its older one in the queue, and receivers keep the newest by sequence. A member's age is how long ago its last
live state arrived here.

Members are alive, suspect (memberlist still counts it alive but no live
state arrived for SuspectAfter; memberlist does not expose its own
suspicion race-free), dead or left. Dead and left members stay listed for
DepartedRetention (at least 10 minutes).

# Anti-entropy

Every AntiEntropyInterval the node compares its catalog digest with the
digests its peers gossip. When a peer's digest differs and was not pulled
yet, it pages through the peer's entries (tombstones included, PageSize at
a time, so memory stays bounded for any catalog size) whose version is
above the peer's version at the previous pull (all, the first time), and
merges each page. A write made on the peer after that point has a higher
version (hybrid logical clock), so incremental pulls miss nothing written
there; an entry the peer merged from elsewhere with an older version is
caught by a full pull once the digests have kept differing for
FullPullAfter. Merging is the catalog's rule (the higher (version, node)
wins), so pulls in any order, repeated or interrupted, converge. A digest
that still differs after a full pull means this node holds something the
peer lacks: the peer pulls it in turn.

# Hand-off

HandOff streams a stopped node's pending records, in sequence order and in
batches, to a live peer of the pool. The peer appends each record unchanged
(message id, headers, body and time) to its own outbox and waits for its
commit (Outbox.AppendDurable, whatever the node's durability; a record
whose commit fails is refused, never left in the memory spill) before it
answers; only after that answer does the
sender Ack the batch. A crash or a failed answer leaves the batch pending
here and possibly committed there: a duplicate with the same message id,
never a loss. Spilled (memory-only) records are handed off the same way.

# Concurrency

Create starts the goroutines it needs (join, live state, anti-entropy) and
Shutdown stops them and waits. Every delegate method says its concurrency
rule; none blocks or calls back into memberlist while memberlist holds a
lock. All exported methods of Cluster are safe for concurrent use.
*/
package cluster

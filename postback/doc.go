/*
Package postback is the registration role: it takes advertisers'
conversions (server-to-server postbacks), checks them, and stores each new
one or each status move in the outbox before it answers 200, so the
forwarder delivers it to the central "actions" exchange like a click.

# Order of checks

A postback is judged in this order, and the first failure answers:

 1. method GET or POST, else 405; parameters parse (no malformed escape,
    no name given twice, at most MaxParams, MaxQueryBytes), else 400;
 2. adv given (400) and known (401);
 3. the client address (behind Config.TrustedProxies) in the advertiser's
    allow list, when it has one, else 403;
 4. signed mode: sig and ts given, the HMAC-SHA256 of the canonical query
    (Canonical) equal to sig in constant time, ts within Config.MaxSkew;
    token mode: the token (parameter or Authorization: Bearer) equal in
    constant time; else 401. Nothing about the fields is revealed to a
    sender that cannot authenticate, but for adv;
 5. the fields (click_id a UUIDv7 in 32 lowercase hex digits, order_id,
    action, status, amount and currency), else 400 naming the field;
 6. the click's time not more than Config.MaxClickFuture ahead and not
    older than the advertiser's window, else 422;
 7. the order's status index entry: the same status again is 200
    duplicate; pending -> approved | declined is a move; anything else
    (backwards, or between approved and declined) is 409;
 8. a new order or a move is appended to the outbox together with its new
    index entry (outbox.AppendIndexed, one transaction, fsynced) and only
    then answered 200 registered or updated; if the outbox cannot take it,
    503 with Retry-After.

Every answer is JSON with "result" (and "action_id") or "error" (and
"field" when one field is at fault). No refusal is ever 200: senders retry
until they get a 200.

# Invariants

  - Answered 200 registered/updated means the action record is committed
    and fsynced, whatever outbox.durability says.
  - The action id (ActionID) depends only on (adv, order_id, action,
    status); it is the AMQP message_id. Two registration nodes, or one that
    lost its index, produce the same ids for the same postbacks: the centre
    deduplicates by message_id.
  - One decision per order at a time: requests for the same (adv, order_id,
    action) are serialised by a striped lock, and the index change is
    conditional (outbox.ErrIndexChanged), so two concurrent identical
    postbacks give one "registered" and one "duplicate", never two records
    with different outcomes.
  - An index entry exists after a crash exactly when its record was
    committed (same transaction). Entries live for the longest window of
    the advertisers plus MaxClickFuture, renewed by each move: as long as
    any postback for the order could still be accepted.
  - A lost action is counted as an action: a record of Config.Exchange
    that the outbox loses after its answer (outbox.Options.OnLost; never
    one registered here, which is committed first, but a peer's taken
    over in a hand-off) is counted by CountLost in
    clickedge_postbacks_dropped_total, not as a result and not as a
    dropped click.
  - The advertisers set is swapped whole (SetAdvertisers); a request uses
    the set it started with. A bad file never replaces a good set: that is
    the caller's rule, and ParseAdvertisers refuses a file with any problem.

# Caveats

The index is per node. Behind a load balancer without affinity, two nodes
may each answer "registered" for the same postback (one logical message,
same message_id) and a move backwards sent to a node that never saw the
forward move is accepted there; the centre, ordering by status, is the
authority. Per-advertiser metrics are not exported: the advertiser count is
not bounded by the code (see docs/postbacks.md).
*/
package postback

/*
Package edge serves the public click endpoints and the admin listener: it turns a request into a click record and a redirect.

# The public endpoints

	GET  /r/{code}   302 to the link's target, the click recorded first
	GET  /c/{code}   200 {"click_id": ..., "url": ...}, the click recorded first
	HEAD /r/{code}   the same answer as GET (status, Location shape), nothing recorded
	HEAD /c/{code}   the same answer as GET, without the body, nothing recorded

A code is [A-Za-z0-9_-]{1,64}, case-sensitive. Unknown codes, malformed ones,
a missing code, a trailing slash or more path segments get 404 with a short
plain-text reason; other methods on /r/ and /c/ get 405 with Allow: GET,
HEAD; every other path gets 404. A paused link sends users to its fallback
URL, recorded as a click with rule "" and "paused":true, or answers 404
"link paused" when it has none.

# Recorded before answered

A GET is answered only after Recorder.Append returned. With an outbox in
sync durability that means the click is committed and fsynced before the
user sees the redirect: kill -9 at any moment loses no answered click. In
async durability the outbox's flush interval is the loss window.

When Append fails, Config.OnRecordError decides. Spill (the default)
redirects anyway and puts the click in the outbox's memory spill, which the
forwarder publishes directly; if the spill refuses it too, the user is still
redirected and the click is counted as dropped and logged: lost, but never
silently. Reject answers 503 with Retry-After: 1 and records nothing: a
rejected click was never answered, so nothing is lost. Failures are logged
at most once per second per kind of error, with the count of the lines left
out; every click's outcome is counted in clickedge_clicks_total, once. With
Config.CountOnFate (async durability) a click Append accepted is counted
when the outbox reports its fate (CountFate, CountLost; lost.go), not at the
answer, since it may still be lost after it.

# HEAD and bots

HEAD records nothing: link checkers and preview fetchers use it, and a
click that no browser follows is not a click. It still routes and renders
the target with a fresh click id, so it answers exactly like GET would.

Bots (device.Classify: crawlers, HTTP libraries, link-preview fetchers) are
always redirected. With Config.BotClicks = Record (the default) their GETs
are recorded with device "bot" and "bot"/"preview" set, so the centre decides
what to pay for; with Skip they are not recorded and are counted as
skipped_bot. Either way clickedge_bot_clicks_total counts them by kind.

# No open redirect, no header injection

Nothing from the request chooses where the user goes, except through the
catalog: the Location is always a catalog template rendered by
(*catalog.Template).AppendURL, which guarantees that it starts with the
template's literal scheme://host[:port] and that every macro value is
escaped for where it stands, so it holds no CR, LF or other control byte
(see the catalog package). The Server checks both once more before it sets
the header and answers 500 rather than send a URL that breaks them. Every
other header value is a constant. The click id is only in the URL (and the
/c JSON), never in a header of its own.

# Client address, parameters, the click

The client is the TCP peer, or, when the peer is one of
Config.TrustedProxies, the right-most X-Forwarded-For address that is not
itself trusted. It feeds the GeoIP lookup and the rules' ip and cidr(); it is
never written into the click.

Only the query parameters on the link's params list are recorded (the first
occurrence of each), percent-decoded, each value cut to 256 bytes at a UTF-8
boundary (the click's "truncated" field names them), at most 16. A malformed
percent escape in a recorded parameter answers 400, naming it. The same
values feed the rules (params) and the macros.

The click body, schema version 1, is written once, by hand, with no
reflection; see click.go for the fields. The record's message id is the
click id, its routing key click.<region>, its headers region, node and
schema.

# Two transports

The click path (routing, the click, the answer) is written once, against a
small view of the request (method, path, raw query, User-Agent,
Accept-Language, X-Forwarded-For, peer address) and a description of the
answer (status, Location, Content-Type, body, Allow, Retry-After; always
Cache-Control: no-store and Content-Length). Two thin front-ends fill the
one and write the other:

	(*Server).ServeHTTP   net/http; Handler returns it
	(*Server).ServeFast   fasthttp (a fasthttp.RequestHandler); FastServer
	                      builds a fasthttp.Server with the limits set

Both give the same answers: TestContract runs every case through ServeHTTP,
net/http on a socket and fasthttp on a socket, and FuzzTransportsAgree
sends the same random requests to both servers and compares status,
Location, Content-Type, the other headers the Server sets, and the body.
ServeFast decodes the request-target itself exactly as net/http does (the
query starts at the first '?', '#' belongs to the path, a malformed %-escape
in the path is refused 400 before routing), and answers fasthttp's own
refusals with net/http's statuses and bodies (400 "400 Bad Request", 431).

Where the HTTP libraries differ below the contract: fasthttp reads at most
4 KiB of request body before the handler runs, so a larger POST gets 413
where net/http answers 405; fasthttp's header limit is MaxHeaderBytes
exactly (net/http allows 4 KiB over it); fasthttp accepts a header name
with a space in it, which net/http refuses 400; a request with two
User-Agent lines is classified by the first under net/http and by the last
under fasthttp; net/http answers an HTTP/1.0 request with HTTP/1.0, and
fasthttp with HTTP/1.1 and Connection: close. None of these reach a click.

The admin listener is always net/http (NewAdmin).

Which to run is the caller's choice (cmd/clickedge: http.server). fasthttp
is the faster public listener by a wide margin, because nearly all of a
request's CPU under net/http is net/http's own (parsing into maps, a
background read goroutine per request, the response writer), not the
edge's: over loopback, in one process on 2 shared cores, a bare net/http
302 did 60k req/s and the edge behind it 40k; a bare fasthttp 302 170k and
the edge behind it 90k (BenchmarkLoopback, noop Recorder). net/http remains
the conservative choice: the standard library, HTTP/2 if ever wanted, and
the behaviour of the lines above exactly as documented by Go.

fasthttp's rules for ServeFast: the request's bytes are valid only while
the handler runs. ServeFast keeps views of them (unsafe strings) in the
pooled scratch only for the request's duration, passes them only to code
that copies (Append, AppendURL, the header setters) or keeps nothing of
them (device.Classify copies the User-Agent into its cache, and the bot
names it returns point into that copy; geo and the rules read values
only), and clears them before the scratch goes back to the pool
(TestServeFastKeepsNoRequestBuffer). FastServer's ShutdownWithContext stops
accepting, lets the requests in flight finish (a click answered is a click
recorded), closes idle keep-alive connections and marks answers sent
meanwhile Connection: close (TestFastShutdown).

# Cost

The hot path takes no lock shared between requests (the catalog is an
atomic pointer; metric children are resolved at New and updated
atomically), makes no system call of its own (time.Now is a vDSO call;
the Recorder's own work aside), and keeps its working memory (the request
view, click id, decoded parameters, URL, body, record) in a pooled scratch
struct. The record's MessageID and Body point into that scratch; this is
safe only because Recorder.Append and Spill copy (encode) the record before
they return, which the Recorder interface requires.

Under ServeFast a redirect allocates nothing (BenchmarkRedirect/fast-noop:
0 allocs/op; fasthttp copies the Location into its own reused buffers).
Under ServeHTTP it allocates the Location header's value and its
one-element slice, which net/http reads after ServeHTTP has returned, on
top of net/http's own per-request allocations (about 20).
*/
package edge

package main

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/edge/geo"
	"github.com/clickedge/clickedge/outbox"
)

// Prometheus collectors over the libraries' Stats snapshots: one per
// component, read at scrape time, so the libraries hold no registry.

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("clickedge_"+name, help, labels, nil)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// histogram converts an outbox.Histogram to a Prometheus one.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h outbox.Histogram) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
}

var (
	obPending        = desc("outbox_pending_records", "Committed records not yet confirmed by the broker.")
	obPendingBytes   = desc("outbox_pending_bytes", "Encoded bytes of the pending records.")
	obOldestAge      = desc("outbox_oldest_pending_age_seconds", "Age of the oldest pending record; 0 when none.")
	obRetained       = desc("outbox_retained_records", "Delivered records kept for replay.")
	obRetainedBytes  = desc("outbox_retained_bytes", "Encoded bytes of the retained records.")
	obFileSize       = desc("outbox_file_size_bytes", "Size of the outbox file.")
	obQueued         = desc("outbox_queued_records", "Records accepted and waiting for their commit.")
	obFailing        = desc("outbox_write_failing", "1 while the outbox backs off after a write error.")
	obAppended       = desc("outbox_appended_records_total", "Records committed.")
	obAcked          = desc("outbox_acked_records_total", "Records marked delivered.")
	obPruned         = desc("outbox_pruned_records_total", "Retained records deleted after their retention.")
	obEvicted        = desc("outbox_evicted_records_total", "Retained records deleted early to stay under outbox.max_bytes.")
	obCommits        = desc("outbox_commits_total", "Commits (each one fsync).")
	obCommitErrors   = desc("outbox_commit_errors_total", "Failed commits.")
	obRefused        = desc("outbox_refused_appends_total", "Appends refused, by reason.", "reason")
	obSpillRecords   = desc("outbox_spill_records", "Records in the memory spill (not durable).")
	obSpillBytes     = desc("outbox_spill_bytes", "Bytes in the memory spill.")
	obSpilled        = desc("outbox_spilled_records_total", "Records put in the memory spill.")
	obSpillDelivered = desc("outbox_spill_delivered_records_total", "Spilled records confirmed by the broker.")
	obSpillDropped   = desc("outbox_spill_dropped_records_total", "Records neither stored nor spilled: lost.")
	obBatch          = desc("outbox_commit_batch_records", "Records per commit.")
	obCommitLatency  = desc("outbox_commit_duration_seconds", "Commit latency, begin to fsynced.")
	obPruneLatency   = desc("outbox_prune_commit_duration_seconds", "Latency of commits that pruned or evicted.")
	// The log before the tree (outbox.write_path: log); 0 without it.
	obLogged      = desc("outbox_log_records_total", "Records written to the log and answered (outbox.write_path: log).")
	obLogFull     = desc("outbox_log_full_total", "Batches refused because the log was full while the file took no writes.")
	obMoving      = desc("outbox_moving_records", "Records answered from the log and not yet moved into the file (counted in outbox_queued_records too).")
	obMoves       = desc("outbox_moves_total", "Commits that moved logged records into the file (counted in outbox_commits_total too).")
	obLogWaits    = desc("outbox_log_waits_total", "Times the log had no room and new answers waited until the file had taken every logged record.")
	obLogRestarts = desc("outbox_log_restarts_total", "Times the log started over from its beginning (every logged record moved).")
	obLogLatency  = desc("outbox_log_write_duration_seconds", "A frame's write and fdatasync in the log; its count is the frames written (outbox_log_records_total over it: records per fdatasync).")
	obMoveLatency = desc("outbox_move_latency_seconds", "From a batch's fdatasync in the log to its commit in the file: what the log adds to a record's way to the broker.")
)

type outboxCollector struct{ o *outbox.Outbox }

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{obPending, obPendingBytes, obOldestAge, obRetained, obRetainedBytes,
		obFileSize, obQueued, obFailing, obAppended, obAcked, obPruned, obEvicted, obCommits, obCommitErrors,
		obRefused, obSpillRecords, obSpillBytes, obSpilled, obSpillDelivered, obSpillDropped, obBatch,
		obCommitLatency, obPruneLatency, obLogged, obLogFull, obMoving, obMoves, obLogWaits, obLogRestarts, obLogLatency, obMoveLatency} {
		ch <- d
	}
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.o.Stats()
	gauge(ch, obPending, float64(s.Pending))
	gauge(ch, obPendingBytes, float64(s.PendingBytes))
	gauge(ch, obOldestAge, s.OldestPendingAge(time.Now()).Seconds())
	gauge(ch, obRetained, float64(s.Retained))
	gauge(ch, obRetainedBytes, float64(s.RetainedBytes))
	gauge(ch, obFileSize, float64(s.FileSize))
	gauge(ch, obQueued, float64(s.Queued))
	gauge(ch, obFailing, boolf(s.Failing))
	counter(ch, obAppended, s.Appended)
	counter(ch, obAcked, s.Acked)
	counter(ch, obPruned, s.Pruned)
	counter(ch, obEvicted, s.Evicted)
	counter(ch, obCommits, s.Commits)
	counter(ch, obCommitErrors, s.CommitErrors)
	counter(ch, obRefused, s.Full, "full")
	counter(ch, obRefused, s.Overloaded, "overloaded")
	counter(ch, obRefused, s.Timeouts, "timeout")
	gauge(ch, obSpillRecords, float64(s.Spill.Records))
	gauge(ch, obSpillBytes, float64(s.Spill.Bytes))
	counter(ch, obSpilled, s.Spill.Spilled)
	counter(ch, obSpillDelivered, s.Spill.Delivered)
	counter(ch, obSpillDropped, s.Spill.Dropped)
	histogram(ch, obBatch, s.BatchSize)
	histogram(ch, obCommitLatency, s.CommitLatency)
	histogram(ch, obPruneLatency, s.PruneLatency)
	counter(ch, obLogged, s.Logged)
	counter(ch, obLogFull, s.LogFull)
	gauge(ch, obMoving, float64(s.Moving))
	counter(ch, obMoves, s.Moves)
	counter(ch, obLogWaits, s.LogWaits)
	counter(ch, obLogRestarts, s.LogRestarts)
	histogram(ch, obLogLatency, s.LogLatency)
	histogram(ch, obMoveLatency, s.MoveLatency)
}

var (
	fwConnected     = desc("forwarder_connected", "1 while a broker session is open.")
	fwBlocked       = desc("forwarder_blocked", "1 while the broker blocks publishing (resource alarm).")
	fwRetrying      = desc("forwarder_retrying", "1 while backing off after a nack, or while a route is held after a return.")
	fwHeldRoutes    = desc("forwarder_held_routes", "Routes (exchange, routing key) held after a return: their records wait, other routes flow.")
	fwInFlight      = desc("forwarder_in_flight", "Publishes awaiting their confirm.")
	fwPublished     = desc("forwarder_published_total", "Messages published.")
	fwConfirmed     = desc("forwarder_confirmed_total", "Messages confirmed delivered (ack without return).")
	fwNacked        = desc("forwarder_nacked_total", "Messages nacked by the broker; they stay pending.")
	fwReturned      = desc("forwarder_returned_total", "Messages returned unroutable; they stay pending.")
	fwRepublished   = desc("forwarder_republished_total", "Publishes of records published before (after a reconnect or a failure).")
	fwReconnects    = desc("forwarder_reconnects_total", "Broker sessions opened after the first.")
	fwConnectErrs   = desc("forwarder_connect_errors_total", "Failed connection attempts.")
	fwSessionErrs   = desc("forwarder_session_errors_total", "Sessions that failed after opening.")
	fwConfirmLatncy = desc("forwarder_confirm_duration_seconds", "Publish to confirm latency.")
)

type forwarderCollector struct{ f *outbox.Forwarder }

func (c *forwarderCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fwConnected, fwBlocked, fwRetrying, fwHeldRoutes, fwInFlight, fwPublished, fwConfirmed,
		fwNacked, fwReturned, fwRepublished, fwReconnects, fwConnectErrs, fwSessionErrs, fwConfirmLatncy} {
		ch <- d
	}
}

func (c *forwarderCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f.Stats()
	gauge(ch, fwConnected, boolf(s.Connected))
	gauge(ch, fwBlocked, boolf(s.Blocked))
	gauge(ch, fwRetrying, boolf(s.Retrying))
	gauge(ch, fwHeldRoutes, float64(s.HeldRoutes))
	gauge(ch, fwInFlight, float64(s.InFlight))
	counter(ch, fwPublished, s.Published)
	counter(ch, fwConfirmed, s.Confirmed)
	counter(ch, fwNacked, s.Nacked)
	counter(ch, fwReturned, s.Returned)
	counter(ch, fwRepublished, s.Republished)
	counter(ch, fwReconnects, s.Reconnects)
	counter(ch, fwConnectErrs, s.ConnectErrors)
	counter(ch, fwSessionErrs, s.SessionErrors)
	histogram(ch, fwConfirmLatncy, s.ConfirmLatency)
}

var (
	catLinks      = desc("catalog_links", "Links in the serving catalog.")
	catInfo       = desc("catalog_info", "The serving catalog's version (first 12 hex of its digest: equal on nodes that serve the same links).", "version")
	catReloads    = desc("catalog_reloads_total", "Catalog reloads, by result.", "result")
	catLastReload = desc("catalog_last_load_timestamp_seconds", "When the serving catalog was loaded.")
)

type catalogCollector struct{ n *node }

func (c *catalogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- catLinks
	ch <- catInfo
	ch <- catReloads
	ch <- catLastReload
}

func (c *catalogCollector) Collect(ch chan<- prometheus.Metric) {
	cat := c.n.srv.Catalog()
	gauge(ch, catLinks, float64(cat.Len()))
	gauge(ch, catInfo, 1, cat.Version())
	counter(ch, catReloads, c.n.reloads.Load(), "ok")
	counter(ch, catReloads, c.n.reloadErrs.Load(), "refused")
	gauge(ch, catLastReload, float64(c.n.lastReload.Load()))
}

var (
	geoBuild      = desc("geoip_build_timestamp_seconds", "Build time of the serving GeoIP database.")
	geoReloads    = desc("geoip_reloads_total", "GeoIP database files swapped in after the first.")
	geoReloadErrs = desc("geoip_reload_errors_total", "GeoIP database files refused.")
	geoLookupErrs = desc("geoip_lookup_errors_total", "Lookups that found an undecodable record.")
)

type geoCollector struct{ db *geo.DB }

func (c *geoCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- geoBuild
	ch <- geoReloads
	ch <- geoReloadErrs
	ch <- geoLookupErrs
}

func (c *geoCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stats()
	gauge(ch, geoBuild, float64(s.BuildTime.Unix()))
	counter(ch, geoReloads, s.Reloads)
	counter(ch, geoReloadErrs, s.ReloadErrors)
	counter(ch, geoLookupErrs, s.LookupErrors)
}

// newBuildInfo is clickedge_build_info{version, revision, goversion} 1.
func newBuildInfo() prometheus.Collector {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "clickedge_build_info",
		Help:        "Build information; the value is 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": rev, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

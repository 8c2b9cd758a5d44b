package main

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/clickedge/clickedge/edge"
)

// publicWriteTimeout bounds writing one public answer (a few hundred
// bytes) to a client that does not read: the fasthttp default, for net too.
const publicWriteTimeout = edge.DefaultFastWriteTimeout

// publicMaxBody is the largest body the public listener takes (413
// beyond); clicks have none. fasthttp's limit is the same (FastServer).
const publicMaxBody = 4 << 10

// Admin listener limits (harden #8; docs/configuration.md, "Limits").
// Slow clients: the header within 5 s, the whole request within 30 s (an
// admin body is at most 1 MiB), the answer within 2 min (a 30 s CPU
// profile, a trace).
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 30 * time.Second
	adminWriteTimeout      = 2 * time.Minute
	adminIdleTimeout       = 60 * time.Second
)

// newAdminServer is the admin listener's server, with the limits both
// listeners share.
func newAdminServer(h http.Handler, lim *edge.Limits, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler: edge.LimitHTTP(h, edge.HTTPLimits{
			Name:           edge.ListenerAdmin,
			MaxHeaderCount: edge.DefaultMaxHeaderCount,
			MaxBody:        edge.DefaultAdminMaxBody,
			Limits:         lim,
		}),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    edge.DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// limitListeners caps the open connections of both listeners (harden #7):
// http.max_connections on the public one, DefaultAdminMaxConns on the
// admin one; both count what they refuse in lim.
func limitListeners(cfg *Config, public, admin net.Listener, lim *edge.Limits) (net.Listener, net.Listener) {
	return edge.Listen(public, edge.ListenerOptions{
			Name:     edge.ListenerPublic,
			MaxConns: cfg.HTTP.MaxConnections,
			NetHTTP:  cfg.HTTP.Server == "net",
			Limits:   lim,
		}), edge.Listen(admin, edge.ListenerOptions{
			Name:     edge.ListenerAdmin,
			MaxConns: edge.DefaultAdminMaxConns,
			NetHTTP:  true,
			Limits:   lim,
		})
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// noRouteHint is added to the forwarder's warnings about clicks the broker
// returned as unroutable (312 NO_ROUTE): the cause is at the centre, and a
// new user reading only the log should learn what to do (harden #14).
func noRouteHint(exchange string) string {
	return fmt.Sprintf("no queue is bound to exchange %q for this routing key: bind the consumers' queue with "+
		"routing key click.# (or this region's key), or set forwarder.declare_queue on a single box; "+
		"the clicks stay pending and are retried (docs/runbook.md, \"Clicks returned unroutable\")", exchange)
}

// hintHandler adds a "hint" attribute to log records whose "reason" is a
// broker's NO_ROUTE return. Matching on the broker's reply text, not on
// the forwarder's wording, keeps it independent of how the forwarder
// phrases its warning.
type hintHandler struct {
	slog.Handler
	hint string
}

func withNoRouteHint(l *slog.Logger, exchange string) *slog.Logger {
	return slog.New(&hintHandler{Handler: l.Handler(), hint: noRouteHint(exchange)})
}

func (h *hintHandler) Handle(ctx context.Context, r slog.Record) error {
	noRoute := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" && strings.Contains(a.Value.String(), "NO_ROUTE") {
			noRoute = true
			return false
		}
		return true
	})
	if noRoute {
		r = r.Clone()
		r.AddAttrs(slog.String("hint", h.hint))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *hintHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &hintHandler{Handler: h.Handler.WithAttrs(attrs), hint: h.hint}
}

func (h *hintHandler) WithGroup(name string) slog.Handler {
	return &hintHandler{Handler: h.Handler.WithGroup(name), hint: h.hint}
}

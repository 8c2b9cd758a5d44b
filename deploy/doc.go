// Package deploy holds clickedge's deployment and observability files
// (region configs, packaging, Prometheus rules, the Grafana dashboard,
// Alertmanager routing, the multi-region demo) and, in its tests, checks
// each with its own tool: promtool, amtool, systemd-analyze. It has no code.
//
// Invariants the tests keep:
//   - every alert has a severity, a summary, a description and a
//     runbook_url whose anchor exists in docs/runbook.md;
//   - every alert has promtool tests that see it fire and stay quiet;
//   - a deliberately broken rule makes promtool fail (the tests can fail);
//   - every metric a rule or panel names is on clickedge's /metrics or in
//     prometheus/pending_metrics.txt (checked in cmd/clickedge, which can
//     start a node).
package deploy

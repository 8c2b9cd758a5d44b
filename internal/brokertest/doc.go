// Package brokertest gives tests a real RabbitMQ: the shared broker, private
// nodes they may kill, and queues and consumers that clean up after them.
//
// Environment (read by tests only, never by library code):
//
//   - CLICKEDGE_TEST_AMQP_URL names the shared broker; the default is
//     amqp://guest:guest@127.0.0.1:5672/.
//   - CLICKEDGE_TEST_SKIP_BROKER=1 skips every test that asks this package
//     for a broker, shared or private, and says why. Without it a missing
//     broker or a missing rabbitmq-server fails the test: CI never skips
//     broker tests silently.
//
// Invariants:
//
//   - A private node (StartNode) has its own name, ports, data and log
//     directories and Erlang cookie. Because its cookie differs from the
//     shared node's, the rabbitmqctl calls made for it cannot reach
//     rabbit@localhost even by mistake; Kill and cleanup signal only
//     processes that descend from the node's own start script.
//   - Every node is shut down and its directory removed by t.Cleanup. If the
//     test binary dies first, the node gets SIGTERM through the parent-death
//     signal of its start script, and the next StartNode in any test binary
//     removes directories (and kills nodes) left by dead test processes.
//   - Queues from TempQueue are deleted by t.Cleanup and expire on the
//     broker (x-expires) if the cleanup never runs.
//   - A Consumer reconnects after its broker restarts, so it sees every
//     message of a durable queue at least once; redeliveries are recorded as
//     such.
//
// Private nodes share the host's epmd (started by the shared node). When none
// is running, the first node starts one, and that epmd daemon outlives the
// test, as it does for any Erlang node.
package brokertest

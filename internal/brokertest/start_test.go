package brokertest

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestStartNodeRetriesOnPortClash hands the first start a claimed pair whose
// distribution port someone else listens on (it fails faster than a taken
// AMQP port, which the node finds only at the end of its boot); StartNode
// must notice the clash and come up on a fresh pair.
func TestStartNodeRetriesOnPortClash(t *testing.T) {
	t.Parallel()
	busy, err := claimPorts()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", busy.dist))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	calls := 0
	n := startNode(t, nil, func() (*portPair, error) {
		calls++
		if calls == 1 {
			return busy, nil
		}
		return claimPorts()
	})
	if calls != 2 || n.Port() == busy.amqp {
		t.Fatalf("StartNode claimed %d pairs and runs on %d; want a retry away from busy %d", calls, n.Port(), busy.amqp)
	}
}

func TestStartNodeFailureShowsLogs(t *testing.T) {
	t.Parallel()
	f := runFake(t, func(tb testing.TB) {
		StartNode(tb, &NodeOptions{Config: "no_such_setting.at_all = 42"})
	})
	if !f.failed {
		t.Fatal("StartNode with a bad config did not fail")
	}
	for _, want := range []string{"exited during start", "stdout.log", "no_such_setting"} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("failure message does not mention %q:\n%s", want, f.msg)
		}
	}
}

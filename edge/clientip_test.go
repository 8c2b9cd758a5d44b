package edge

import (
	"net/netip"
	"testing"

	"github.com/clickedge/clickedge/edge/edgetest"
)

func TestClientAddr(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Recorder = &edgetest.Recorder{}
	cfg.TrustedProxies = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::ffff:172.16.0.0/108"), // written mapped: 172.16.0.0/12
		netip.MustParsePrefix("fd00::/8"),
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string // "" for the zero Addr
	}{
		{"untrusted peer", "203.0.113.1:80", nil, "203.0.113.1"},
		{"untrusted peer, xff ignored", "203.0.113.1:80", []string{"198.51.100.1"}, "203.0.113.1"},
		{"mapped peer", "[::ffff:203.0.113.1]:80", nil, "203.0.113.1"},
		{"zoned peer", "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"peer without port", "203.0.113.1", nil, "203.0.113.1"},
		{"no peer", "", nil, ""},
		{"unix socket", "@", nil, ""},
		{"trusted peer without xff", "10.0.0.1:80", nil, "10.0.0.1"},
		{"trusted peer", "10.0.0.1:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted mapped peer", "[::ffff:10.0.0.1]:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"prefix written mapped", "172.16.5.5:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"right-most untrusted", "10.0.0.1:80", []string{"1.1.1.1, 198.51.100.1, 10.0.0.2"}, "198.51.100.1"},
		{"several header lines", "10.0.0.1:80", []string{"1.1.1.1, 198.51.100.1", "10.9.9.9,fd00::5"}, "198.51.100.1"},
		{"spaces and empties", "10.0.0.1:80", []string{" , 198.51.100.1 ,\t, "}, "198.51.100.1"},
		{"with ports", "10.0.0.1:80", []string{"198.51.100.1:5555"}, "198.51.100.1"},
		{"v6 with port", "10.0.0.1:80", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"mapped in xff", "10.0.0.1:80", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"garbage where the client should be", "10.0.0.1:80", []string{"1.1.1.1, unknown"}, ""},
		{"garbage left of the client ignored", "10.0.0.1:80", []string{"junk, 198.51.100.1"}, "198.51.100.1"},
		{"all trusted", "10.0.0.1:80", []string{"10.1.1.1, 10.2.2.2"}, "10.1.1.1"},
		{"empty header", "10.0.0.1:80", []string{""}, "10.0.0.1"},
	}
	for _, tt := range tests {
		got := s.clientAddr(&request{peer: parsePeer(tt.remote), xff: tt.xff})
		var want netip.Addr
		if tt.want != "" {
			want = netip.MustParseAddr(tt.want)
		}
		if got != want {
			t.Errorf("%s: clientAddr(%s, %q) = %v, want %v", tt.name, tt.remote, tt.xff, got, want)
		}
	}
}

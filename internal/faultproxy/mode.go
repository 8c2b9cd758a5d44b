package faultproxy

import "strconv"

// Mode is what a Proxy does with the bytes and connections it relays.
type Mode int32

const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Blackhole holds all bytes and keeps connections open.
	Blackhole
	// Reset resets current and new connections with a TCP RST.
	Reset
	// DropServerToClient forwards client bytes and discards server bytes.
	DropServerToClient
)

var modeNames = [...]string{
	Pass:               "pass",
	Blackhole:          "blackhole",
	Reset:              "reset",
	DropServerToClient: "drop-server-to-client",
}

func (m Mode) String() string {
	if m.valid() {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

func (m Mode) valid() bool { return m >= 0 && int(m) < len(modeNames) }

//go:build !race

package main

// raceEnabled: the race detector is on; timing bounds get its slowdown.
const raceEnabled = false

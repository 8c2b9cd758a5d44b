//go:build !race

package edge_test

// raceEnabled: the race detector is on (memory figures include its shadow
// memory).
const raceEnabled = false

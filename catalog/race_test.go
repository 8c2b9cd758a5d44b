//go:build race

package catalog

// raceEnabled: timing tests skip under the race detector, which slows
// everything several times.
const raceEnabled = true

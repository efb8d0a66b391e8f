//go:build race

package memory_test

// raceEnabled shrinks tests that the race detector makes slow.
const raceEnabled = true

//go:build race

package e2e

// raceEnabled builds the coordinator binary with the race detector too when the tests run
// with it, so the process tests also look for data races in the server under real load.
const raceEnabled = true

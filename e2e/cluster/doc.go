// Package cluster holds authgate's multi-instance end-to-end tests: several
// Caddy processes (the ./cmd/caddy binary, built once by TestMain) on their own
// loopback ports share one realm secret and one real Redis server
// (internal/testredis), so that a session started on one instance is used,
// ended and revoked on another, and the store can be taken away and brought
// back under them (for all instances by stopping redis-server, for one by
// cutting the TCP proxy it reaches Redis through). A real OpenID Provider (internal/testidp) issues the
// rotating refresh tokens of the refresh test, and one test reloads a running
// Caddy through its admin API (`caddy reload`).
//
// Caddy runs in separate processes because one process holds one Caddy: it
// also lets the tests read an instance's resident memory from /proc. Each
// process's log (stderr) is kept for assertions and shown when a test fails.
// The package has no code of its own besides its tests.
package cluster

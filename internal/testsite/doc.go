// Package testsite holds what authgate's two end-to-end suites share about the
// site they test — e2e, with Caddy in the test process, and e2e/cluster, with
// Caddy in separate processes: the guarded upstream application, the users of
// the credentials provider, the lines Caddy logged, and waiting for the site
// to reach a state.
package testsite

// Package e2e holds authgate's end-to-end tests over HTTP: Caddy with authgate
// runs in the test process (internal/testcaddy), a real OpenID Provider runs on
// loopback (internal/testidp), so does a real SMTP server for the email links
// (mailpit, internal/testmailpit), an httptest upstream records exactly what
// authgate let through, and a cookie-jar HTTP client plays the browser, stepping
// through redirects one at a time. The package has no code of its own besides
// its tests.
//
// Each test starts its own Caddy; there is one Caddy per process, so the tests
// must not call t.Parallel.
package e2e

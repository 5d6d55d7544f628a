// Package browser holds authgate's end-to-end tests in a real browser: headless
// Chromium (Debian's /usr/bin/chromium, driven by chromedp) signs in through
// Caddy running authgate, with the credentials provider, with a real OpenID
// Provider (internal/testidp) and with email links sent through a real SMTP
// server (mailpit, internal/testmailpit), and checks what the upstream
// receives. The tests also save screenshots of the sign-in page (see
// AUTHGATE_TEST_OUTPUT in helpers_test.go). The package has no code of its own
// besides its tests.
package browser

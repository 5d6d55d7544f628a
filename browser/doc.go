// Package browser holds authgate's end-to-end tests in a real browser: headless
// Chromium (Debian's /usr/bin/chromium, driven by chromedp) signs in through
// Caddy running authgate, with the credentials provider and with a real OpenID
// Provider (internal/testidp), and checks what the upstream receives. The tests
// also save screenshots of the sign-in page (see AUTHGATE_TEST_OUTPUT in
// helpers_test.go). The package has no code of its own besides its tests.
package browser

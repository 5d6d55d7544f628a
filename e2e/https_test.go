package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestHTTPSCookies signs in over https: the cookies are Secure and carry the
// __Secure- (session) and __Host- (CSRF, state) prefixes, and are cleared with
// the same attributes, which browsers require to overwrite them.
func TestHTTPSCookies(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, fmt.Sprintf(`{
	auto_https disable_redirects
	skip_install_trust
	default_bind 127.0.0.1
	authgate {
		secret %s
%s	}
}
%s {
	tls internal
	authgate
	reverse_proxy %s
}
`, testSecret, testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser)), base, up.URL))

	waitForLog(t, caddy, "certificate obtained successfully", "127.0.0.1")
	// The certificate may reach the TLS cache a moment after that log line: wait
	// for a handshake to succeed (a readiness check; nothing is timed).
	addr := base[len("https://"):]
	testsite.Eventually(t, 10*time.Second, "a TLS handshake with "+addr, func() error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1"})
		if err == nil {
			conn.Close()
		}
		return err
	})

	b := newBrowser(t)
	// Caddy's internal CA is not trusted by the test process.
	b.c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	secureSession, hostCSRF := "__Secure-"+sessionCookie, "__Host-"+csrfCookie

	wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
	page := b.navigate(base + "/.auth/signin?callbackUrl=" + base + "/app")
	wantStatus(t, page, http.StatusOK)
	if c := setCookie(page, hostCSRF); c == nil || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" {
		t.Errorf("want a Secure, host-only %s cookie with Path=/, got %v", hostCSRF, page.Header.Values("Set-Cookie"))
	}
	if setCookie(page, csrfCookie) != nil {
		t.Errorf("the CSRF cookie lacks its prefix on https")
	}

	f := formFor(t, page.Body, "/.auth/callback/credentials")
	f.Values.Set("username", "alice")
	f.Values.Set("password", aliceUser.Password)
	r := b.post(base+f.Action, f.Values)
	wantLocation(t, r, base+"/app")
	sc := setCookie(r, secureSession)
	if sc == nil || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.MaxAge != sessionMaxAge {
		t.Fatalf("want a Secure, HttpOnly, SameSite=Lax %s cookie, got %v", secureSession, r.Header.Values("Set-Cookie"))
	}
	if setCookie(r, sessionCookie) != nil {
		t.Errorf("the session cookie lacks its prefix on https")
	}
	if _, err := codec(t, testSecret, secureSession).Decode(sc.Value, time.Now()); err != nil {
		t.Errorf("the session token is not sealed for the cookie's name %s: %v", secureSession, err)
	}

	wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
	seen := up.Last(t)
	wantAuthHeaders(t, seen, aliceHeaders)
	if c := seen.Header.Get("Cookie"); strings.Contains(c, "authgate.") {
		t.Errorf("the upstream received authgate's cookies: %q", c)
	}

	// A bad session cookie is cleared with Secure, or browsers ignore the deletion.
	b2 := newBrowser(t)
	b2.c.Transport = b.c.Transport
	b2.setCookie(base, secureSession, "not-a-session-token")
	r = b2.navigate(base + "/app")
	wantSignInRedirect(t, r, base+"/app")
	if c := setCookie(r, secureSession); c == nil || c.MaxAge >= 0 || !c.Secure {
		t.Errorf("want %s cleared with Secure, got %v", secureSession, r.Header.Values("Set-Cookie"))
	}

	// Signing out clears the session the same way.
	r = b.signOut(base)
	wantLocation(t, r, base+"/")
	if c := setCookie(r, secureSession); c == nil || c.MaxAge >= 0 || !c.Secure {
		t.Errorf("want %s cleared with Secure on sign-out, got %v", secureSession, r.Header.Values("Set-Cookie"))
	}
	wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
}

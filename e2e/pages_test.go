package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestPages checks the HTML endpoints' statuses, their protection against
// framing and sniffing, and that nothing from the URL is reflected unescaped.
func TestPages(t *testing.T) {
	base, up, _ := credentialsSite(t, "authgate", "", aliceUser)
	b := newBrowser(t)
	const xss = `"><script>alert(1)</script>`

	t.Run("error codes", func(t *testing.T) {
		b := b.in(t)
		for code, status := range map[string]int{
			"Configuration": 500, "AccessDenied": 403, "Verification": 403, "OAuthSignin": 502,
			"OAuthCallback": 400, "CredentialsSignin": 401, "SessionRequired": 401,
		} {
			r := b.navigate(base + "/.auth/error?error=" + code)
			wantStatus(t, r, status)
			if !strings.Contains(pageText(t, r.Body), "Error code: "+code) {
				t.Errorf("error page for %s does not show its code", code)
			}
		}
		r := b.navigate(base + "/.auth/error?error=" + url.QueryEscape(xss))
		wantStatus(t, r, http.StatusBadRequest)
		if strings.Contains(r.Body, "<script>") || strings.Contains(pageText(t, r.Body), "alert(1)") {
			t.Errorf("the error page reflects the error parameter:\n%s", testsite.Excerpt(r.Body))
		}
	})

	t.Run("sign-in page", func(t *testing.T) {
		b := b.in(t)
		r := b.navigate(base + "/.auth/signin?error=" + url.QueryEscape(xss) + "&callbackUrl=" + url.QueryEscape("/"+xss))
		wantStatus(t, r, http.StatusOK)
		if strings.Contains(r.Body, "<script>") {
			t.Errorf("the sign-in page reflects a parameter unescaped:\n%s", testsite.Excerpt(r.Body))
		}
		for k, want := range map[string]string{
			"Content-Type":           "text/html; charset=utf-8",
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Cache-Control":          "private, no-store",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("sign-in page %s = %q, want %q", k, got, want)
			}
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("sign-in page Content-Security-Policy %q", csp)
		}
	})

	t.Run("unknown endpoints and methods", func(t *testing.T) {
		b := b.in(t)
		wantStatus(t, b.navigate(base+"/.auth/nothing-here"), http.StatusNotFound)
		wantStatus(t, b.post(base+"/.auth/signin/nope", url.Values{"csrfToken": {b.csrfToken(base)}}), http.StatusNotFound)
		wantStatus(t, b.post(base+"/.auth/callback/nope", url.Values{}), http.StatusNotFound)
		req, _ := http.NewRequest(http.MethodPut, base+"/.auth/session", nil)
		wantStatus(t, b.do(req), http.StatusMethodNotAllowed)
		// Near misses of the base path are guarded routes, not endpoints.
		wantSignInRedirect(t, b.navigate(base+"/.authx"), base+"/.authx")
		wantSignInRedirect(t, b.navigate(base+"/.auth"), base+"/.auth")
		if up.Count() != 0 {
			t.Error("the upstream received a request")
		}
	})
}

// TestSessionRenewal checks that a session token older than update_age is
// renewed on a proxied request, sliding its expiry, and a young one is not.
func TestSessionRenewal(t *testing.T) {
	base, up, _ := credentialsSite(t, "authgate", "", aliceUser)
	c := codec(t, testSecret, sessionCookie)
	claims := map[string]any{"sub": "alice", "name": "Alice Example", "email": "alice@example.com"}
	now := time.Now()

	b := newBrowser(t)
	b.setCookie(base, sessionCookie, encode(t, c, claims, 30*24*time.Hour, now.Add(-time.Hour)))
	r := b.navigate(base + "/young")
	wantStatus(t, r, http.StatusOK)
	if sc := setCookie(r, sessionCookie); sc != nil {
		t.Errorf("a one-hour-old session was re-issued: %s", sc)
	}

	old := encode(t, c, claims, 30*24*time.Hour, now.Add(-25*time.Hour))
	b.setCookie(base, sessionCookie, old)
	r = b.navigate(base + "/old")
	wantStatus(t, r, http.StatusOK)
	if r.Body != "upstream: ok" {
		t.Errorf("body %q, want the upstream's", r.Body)
	}
	wantAuthHeaders(t, up.Last(t), aliceHeaders)
	sc := setCookie(r, sessionCookie)
	if sc == nil {
		t.Fatalf("a 25-hour-old session was not renewed: %v", r.Header.Values("Set-Cookie"))
	}
	wantCookieAttrs(t, sc, sessionMaxAge)
	renewed, err := c.Decode(sc.Value, time.Now())
	if err != nil {
		t.Fatalf("the renewed token does not decode: %v", err)
	}
	iat, _ := renewed["iat"].(float64)
	exp, _ := renewed["exp"].(float64)
	if d := time.Since(time.Unix(int64(iat), 0)); d < -time.Minute || d > time.Minute || exp-iat != 30*24*3600 {
		t.Errorf("renewed token iat %v exp %v, want iat now and exp 30 days later", renewed["iat"], renewed["exp"])
	}
	if renewed["sub"] != "alice" || renewed["email"] != "alice@example.com" {
		t.Errorf("renewal lost claims: %v", renewed)
	}
	if b.cookie(base, sessionCookie) == old {
		t.Error("the browser still holds the old token")
	}
}

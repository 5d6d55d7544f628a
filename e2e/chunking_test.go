package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestChunkedSession signs in a user whose session token is longer than one
// cookie may be: it arrives as authgate.session-token.0 and .1, is joined on
// read, and stale chunks are removed when the token shrinks or the user signs out.
func TestChunkedSession(t *testing.T) {
	long := testsite.User{Login: "long", Password: "long-password-e2e", Name: strings.Repeat("N", 5000), Email: "long@example.com"}
	base, up, _ := credentialsSite(t, "authgate", "", long, bobUser)
	chunk0, chunk1, chunk2 := sessionCookie+".0", sessionCookie+".1", sessionCookie+".2"

	b := newBrowser(t)
	r := b.signInCredentials(base, base+"/", "long", long.Password)
	wantLocation(t, r, base+"/")
	c0, c1 := setCookie(r, chunk0), setCookie(r, chunk1)
	if c0 == nil || c1 == nil || setCookie(r, chunk2) != nil || (setCookie(r, sessionCookie) != nil && setCookie(r, sessionCookie).MaxAge >= 0) {
		t.Fatalf("want the session in chunks .0 and .1, got Set-Cookie %v", r.Header.Values("Set-Cookie"))
	}
	wantCookieAttrs(t, c0, sessionMaxAge)
	wantCookieAttrs(t, c1, sessionMaxAge)
	if len(c0.Value) > 4096-len(chunk0) || len(c1.Value) > 4096-len(chunk1) {
		t.Errorf("chunks of %d and %d bytes do not fit in a cookie", len(c0.Value), len(c1.Value))
	}
	claims, err := codec(t, testSecret, sessionCookie).Decode(c0.Value+c1.Value, time.Now())
	if err != nil || claims["name"] != long.Name {
		t.Fatalf("the joined chunks do not decode to the user's token: %v", err)
	}

	wantStatus(t, b.navigate(base+"/long"), http.StatusOK)
	seen := up.Last(t)
	wantAuthHeaders(t, seen, map[string]string{
		"x-auth-request-user": "long", "x-auth-request-email": "long@example.com", "x-auth-request-name": long.Name,
	})
	wantNoAuthCookies(t, seen, "authgate.")
	var sess struct{ User map[string]any }
	if r := b.api(base + "/.auth/session"); json.Unmarshal([]byte(r.Body), &sess) != nil || sess.User["name"] != long.Name {
		t.Errorf("/.auth/session does not have the long name")
	}

	// Signing in as bob, whose token fits one cookie, removes the chunks.
	r = b.signInCredentials(base, base+"/", "bob", bobUser.Password)
	wantLocation(t, r, base+"/")
	if c := setCookie(r, sessionCookie); c == nil || c.MaxAge <= 0 {
		t.Fatalf("bob's session is not in one cookie: %v", r.Header.Values("Set-Cookie"))
	}
	wantCleared(t, r, chunk0)
	wantCleared(t, r, chunk1)
	if names := b.cookieNames(base); slices.Contains(names, chunk0) || slices.Contains(names, chunk1) {
		t.Errorf("the browser kept stale chunks: %v", names)
	}
	wantStatus(t, b.navigate(base+"/bob"), http.StatusOK)
	wantAuthHeaders(t, up.Last(t), map[string]string{
		"x-auth-request-user": "bob", "x-auth-request-email": "bob@example.com", "x-auth-request-name": "Bob Example",
	})

	// Back to the long session, then signing out clears every chunk.
	wantLocation(t, b.signInCredentials(base, base+"/", "long", long.Password), base+"/")
	r = b.signOut(base)
	wantLocation(t, r, base+"/")
	wantCleared(t, r, chunk0)
	wantCleared(t, r, chunk1)
	for _, n := range b.cookieNames(base) {
		if strings.HasPrefix(n, sessionCookie) {
			t.Errorf("the browser still has %s after signing out", n)
		}
	}
	wantSignInRedirect(t, b.navigate(base+"/long"), base+"/long")
}

package e2e

import (
	"net/http"
	"testing"
)

// TestMatcherKeepsEndpoints: `authgate /app/*` guards only /app/*, yet the sign-in
// endpoints under /.auth/ still answer (the directive adds a route for them), so
// the redirect to sign in does not land on the upstream's 404.
func TestMatcherKeepsEndpoints(t *testing.T) {
	base, up, _ := credentialsSite(t, "authgate /app/*", "", aliceUser)
	b := newBrowser(t)

	// Outside the matcher: not guarded.
	r := b.navigate(base + "/public/page")
	wantStatus(t, r, http.StatusOK)
	if up.Count() != 1 {
		t.Fatalf("the upstream saw %d requests for an unguarded path, want 1", up.Count())
	}

	// Inside: redirected to a sign-in page that authgate, not the upstream, serves.
	wantSignInRedirect(t, b.navigate(base+"/app/x"), base+"/app/x")
	page := b.navigate(base + "/.auth/signin?callbackUrl=" + base + "/app/x")
	wantStatus(t, page, http.StatusOK)
	formFor(t, page.Body, "/.auth/callback/credentials")
	if up.Count() != 1 {
		t.Fatalf("the sign-in page reached the upstream (%d requests)", up.Count())
	}

	// And signing in works end to end.
	r = b.signInCredentials(base, base+"/app/x", "alice", aliceUser.Password)
	wantLocation(t, r, base+"/app/x")
	wantStatus(t, b.navigate(base+"/app/x"), http.StatusOK)
	if got := up.Last(t).HeaderValues("X-Auth-Request-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("the upstream saw X-Auth-Request-User %v, want [alice]", got)
	}
}

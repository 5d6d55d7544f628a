package e2e

import (
	"net/http"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
)

// TestMatcherKeepsEndpoints: `authgate /app/*` guards only /app/*, yet the sign-in
// endpoints under /.auth/ still answer (the directive adds a route for them), so
// the redirect to sign in does not land on the upstream's 404.
func TestMatcherKeepsEndpoints(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := newUpstream(t)
	testcaddy.Start(t, globalBlock(credentialsProvider(usersFile(t, aliceUser)))+
		siteBlock(port, "authgate /app/*", up.URL))
	b := newBrowser(t)

	// Outside the matcher: not guarded.
	r := b.navigate(base + "/public/page")
	wantStatus(t, r, http.StatusOK)
	if up.count() != 1 {
		t.Fatalf("the upstream saw %d requests for an unguarded path, want 1", up.count())
	}

	// Inside: redirected to a sign-in page that authgate, not the upstream, serves.
	wantSignInRedirect(t, b.navigate(base+"/app/x"), base+"/app/x")
	page := b.navigate(base + "/.auth/signin?callbackUrl=" + base + "/app/x")
	wantStatus(t, page, http.StatusOK)
	formFor(t, page.Body, "/.auth/callback/credentials")
	if up.count() != 1 {
		t.Fatalf("the sign-in page reached the upstream (%d requests)", up.count())
	}

	// And signing in works end to end.
	r = b.signInCredentials(base, base+"/app/x", "alice", aliceUser.password)
	wantLocation(t, r, base+"/app/x")
	wantStatus(t, b.navigate(base+"/app/x"), http.StatusOK)
	if got := up.last(t).headerValues("X-Auth-Request-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("the upstream saw X-Auth-Request-User %v, want [alice]", got)
	}
}

package e2e

import (
	"net/http"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestVerifyForwardAuth: another proxy's forward_auth asks /.auth/verify; a
// signed-in request gets 200 with the identity headers, any other 401 — here
// with Caddy's own forward_auth in front of a second site.
func TestVerifyForwardAuth(t *testing.T) {
	port, other := testcaddy.FreePort(t), testcaddy.FreePort(t)
	base, otherBase := origin(port), origin(other)
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser)))+
		siteBlock(port, "authgate", up.URL)+
		otherBase+" {\n\tforward_auth "+base[len("http://"):]+" {\n\t\turi /.auth/verify\n\t\tcopy_headers X-Auth-Request-User X-Auth-Request-Email\n\t}\n\treverse_proxy "+up.URL+"\n}\n")
	b := newBrowser(t)

	r := b.api(base + "/.auth/verify")
	wantStatus(t, r, http.StatusUnauthorized)

	wantLocation(t, b.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")
	r = b.api(base + "/.auth/verify")
	wantStatus(t, r, http.StatusOK)
	if got := r.Header.Get("X-Auth-Request-User"); got != "alice" {
		t.Errorf("/.auth/verify X-Auth-Request-User = %q, want alice", got)
	}

	// Through forward_auth on the other site (the cookie is the same host's: Go's
	// jar ignores ports, as browsers do).
	wantStatus(t, b.api(otherBase+"/page"), http.StatusOK)
	if got := up.Last(t).HeaderValues("X-Auth-Request-Email"); len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("upstream behind forward_auth saw X-Auth-Request-Email %v, want [alice@example.com]", got)
	}
	wantStatus(t, newBrowser(t).api(otherBase+"/page"), http.StatusUnauthorized)
}

package cluster

import (
	"net/http"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestRenewedSessionsStayRevocable: a jwt session token is re-issued with a
// new jti whenever it is renewed (update_age), rotated to a new secret or
// refreshed (refresh_access_token). Sign-out and the administrator's
// revocation work by the session id (sid) that every re-issue carries, so
// signing out with the renewed cookie also ends the cookie it replaced, and
// revoking a user's sessions ends their current cookie. Two instances share
// Redis.
func TestRenewedSessionsStayRevocable(t *testing.T) {
	rs := testredis.NewServer(t)
	const prefix = "renew:"
	up := newUpstream(t)
	cfg := siteConfig{Realm: testsite.CredentialsProvider(usersFile(t, "alice", "admin")) + redisStore(rs.Addr, prefix) +
		"\t\tsession {\n\t\t\tupdate_age 1s\n\t\t}\n" +
		"\t\tadmin {\n\t\t\trequire " + bt + `token.sub == "admin"` + bt + "\n\t\t}\n"}
	a := startInstance(t, "A", up, false, cfg)
	b := startInstance(t, "B", up, false, cfg)
	waitSubscribers(t, rs.Addr, prefix, 2)

	// renew waits until update_age has passed and returns the cookie a request
	// with v re-issues.
	renew := func(v string) string {
		t.Helper()
		time.Sleep(1100 * time.Millisecond)
		r := api(t, a.base+"/app", v)
		wantStatus(t, r, http.StatusOK)
		sc := setCookie(r, sessionCookie)
		if sc == nil || sc.Value == v {
			t.Fatalf("%s: the session was not renewed", r.what)
		}
		return sc.Value
	}

	t.Run("sign-out", func(t *testing.T) {
		first := signIn(t, a, "alice")
		current := renew(first)
		signOut(t, b, current)
		refusedEventually(t, a, current, "the renewed cookie signed out on B, sent to A")
		// A copy of the cookie from before the renewal is the same session.
		refusedEventually(t, a, first, "the cookie the signed-out one replaced, sent to A")
		wantSignedOut(t, api(t, b.base+"/app", first))
	})

	t.Run("admin", func(t *testing.T) {
		first := signIn(t, a, "alice")
		current := renew(first)
		admin := signIn(t, a, "admin")
		tok, c := csrf(t, a)
		r := mustDo(t, request{method: http.MethodPost, url: a.base + "/.auth/admin/revoke", accept: jsonAccept,
			cookies: []*http.Cookie{c, sessionC(admin)}, json: map[string]any{"user": "alice", "csrfToken": tok}})
		wantStatus(t, r, http.StatusOK)
		for _, in := range []*instance{a, b} {
			refusedEventually(t, in, current, "alice's current cookie after an administrator revoked her sessions")
			refusedEventually(t, in, first, "alice's first cookie after an administrator revoked her sessions")
		}
	})
}

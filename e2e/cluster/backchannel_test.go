package cluster

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testredis"
)

// TestBackChannelLogoutEverywhere: two instances share Redis; a logout at the
// provider, sent to instance A as a logout token, ends alice's session on A
// and on B, while bob's session lives on on both.
func TestBackChannelLogoutEverywhere(t *testing.T) {
	rs := testredis.NewServer(t)
	const prefix = "bcl:"
	up := newUpstream(t)
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	baseA := fmt.Sprintf("http://127.0.0.1:%d", portA)
	client := testidp.Client{ID: "bcl-client", Secret: "bcl-client-secret",
		RedirectURIs:         []string{baseA + "/.auth/callback/oidc", fmt.Sprintf("http://127.0.0.1:%d/.auth/callback/oidc", portB)},
		BackchannelLogoutURI: baseA + "/.auth/backchannel-logout/oidc"}
	idp := testidp.Start(t, testidp.Options{Clients: []testidp.Client{client}, Accounts: map[string]map[string]any{
		"alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Example"},
		"bob":   {"email": "bob@example.com", "email_verified": true, "name": "Bob Example"},
	}})
	cfg := siteConfig{
		Realm: fmt.Sprintf("\t\tprovider oidc {\n\t\t\tissuer %s\n\t\t\tclient_id %s\n\t\t\tclient_secret %s\n\t\t}\n", idp.Issuer, client.ID, client.Secret) +
			redisStore(rs.Addr, prefix) +
			"\t\tcallbacks {\n\t\t\tsign_in {\n\t\t\t\tdefault allow\n\t\t\t}\n\t\t}\n",
	}
	a := startInstanceOn(t, "A", portA, up, false, cfg)
	b := startInstanceOn(t, "B", portB, up, false, cfg)
	waitSubscribers(t, rs.Addr, prefix, 2)

	aliceJar, _ := cookiejar.New(nil)
	alice := signInOIDCWith(t, a, aliceJar, "alice")
	bob := signInOIDC(t, b, idp, "bob")
	for _, in := range []*instance{a, b} {
		wantStatus(t, api(t, in.base+"/app", alice), http.StatusOK)
		wantStatus(t, api(t, in.base+"/app", bob), http.StatusOK)
	}

	testidp.EndSession(t, aliceJar, idp.Issuer+"/session/end?client_id="+client.ID)
	refusedEventually(t, b, alice, "alice's session after a logout at the provider")
	refusedEventually(t, a, alice, "alice's session after a logout at the provider")
	for _, in := range []*instance{a, b} {
		wantStatus(t, api(t, in.base+"/app", bob), http.StatusOK)
	}
	if n := a.logCount("back-channel logout", `"sessions":1`); n != 1 {
		t.Errorf("instance A logged %d back-channel logouts ending one session, want 1\n%s", n, a.logTail(20))
	}
}

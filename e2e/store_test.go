package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// These tests sign in through the store (Auth.js's adapter): OAuth/OIDC and
// email sign-ins resolve to a stored user whose random id is the token's sub.
// Their email provider prints links to Caddy's log (`mailer log`), so they need
// no mail server.

// storeIDP starts the identity provider with alice and bob and a client per
// provider id, registered with authgate's redirect URI on base.
func storeIDP(t *testing.T, base string, ids ...string) *testidp.IDP {
	t.Helper()
	var clients []testidp.Client
	for _, id := range ids {
		clients = append(clients, testidp.Client{ID: id + "-client", Secret: id + "-client-secret",
			RedirectURIs: []string{base + "/.auth/callback/" + id}})
	}
	return testidp.Start(t, testidp.Options{Clients: clients, Accounts: map[string]map[string]any{
		"alice": alice,
		"bob":   {"email": "bob@example.com", "email_verified": true, "name": "Bob Example"},
	}})
}

// newUserJWT are jwt rules that copy is_new_user and trigger into the token.
const newUserJWT = `
		callbacks {
			jwt {
				set first ` + bt + `is_new_user` + bt + `
				set trig ` + bt + `trigger` + bt + `
			}
		}
`

// signInByLink asks for a link for address from the email provider (id
// "email", `mailer log`), follows the newest one in the log, and returns the
// token it set.
func (b *browser) signInByLink(c *testcaddy.Server, base, address, callbackURL string) map[string]any {
	b.t.Helper()
	wantLinkSent(b.t, b, base, b.requestLink(base, "email", address, callbackURL), "email")
	r := b.navigate(latestLogLink(b.t, c, address, callbackPrefix(base, "email")))
	wantLocation(b.t, r, callbackURL)
	return sessionClaims(b.t, r)
}

// wantNewUser checks a token's first (is_new_user) and trig (trigger) claims.
func wantNewUser(t *testing.T, claims map[string]any, isNew bool) {
	t.Helper()
	trig := "sign_in"
	if isNew {
		trig = "sign_up"
	}
	if claims["first"] != isNew || claims["trig"] != trig {
		t.Errorf("token first = %v, trig = %v; want %v, %s", claims["first"], claims["trig"], isNew, trig)
	}
}

// TestIsNewUser checks jwt's is_new_user and trigger: a user's first sign-in
// creates them (sign_up), the next finds them (sign_in) with the same sub, with
// OpenID Connect and with email links alike.
func TestIsNewUser(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := storeIDP(t, base, "oidc")
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock("\t\turl "+base+"\n"+oidcProvider("oidc", idp.Issuer)+emailProvider("", "log")+newUserJWT)+
		siteBlock(port, "authgate", up.URL))

	subs := map[string]string{}
	t.Run("OpenID Connect", func(t *testing.T) {
		b := newBrowser(t)
		r := b.signInOIDC(base, "oidc", base+"/app", "alice")
		wantLocation(t, r, base+"/app")
		first := sessionClaims(t, r)
		wantNewUser(t, first, true)
		sub := wantStoredUserID(t, first)
		wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
		wantAuthHeaders(t, up.Last(t), identityHeaders(sub, "alice@example.com", "Alice Example"))

		wantLocation(t, b.signOut(base), base+"/")
		r = b.signInOIDC(base, "oidc", base+"/app", "alice")
		wantLocation(t, r, base+"/app")
		again := sessionClaims(t, r)
		wantNewUser(t, again, false)
		if got := wantStoredUserID(t, again); got != sub {
			t.Errorf("second sign-in: sub %s, want %s", got, sub)
		}
		subs["alice"] = sub
	})

	t.Run("email", func(t *testing.T) {
		b := newBrowser(t)
		first := b.signInByLink(caddy, base, "bob@example.com", base+"/app")
		wantNewUser(t, first, true)
		sub := wantStoredUserID(t, first)

		wantLocation(t, b.signOut(base), base+"/")
		again := b.signInByLink(caddy, base, "bob@example.com", base+"/app")
		wantNewUser(t, again, false)
		if got := wantStoredUserID(t, again); got != sub {
			t.Errorf("second sign-in: sub %s, want %s", got, sub)
		}
		if sub == subs["alice"] {
			t.Errorf("bob and alice have the same sub %s", sub)
		}
	})
}

// TestAccountNotLinked checks Auth.js's OAuthAccountNotLinked: an OAuth
// account whose email address belongs to a user who signed in another way is
// refused, unless its provider has allow_email_linking, which links it to that
// user. The email provider, for its part, finds users by address.
func TestAccountNotLinked(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := storeIDP(t, base, "oidc", "linking")
	up := testsite.NewUpstream(t, testsite.OK)
	linking := fmt.Sprintf("\t\tprovider oidc linking {\n\t\t\tissuer %s\n\t\t\tclient_id linking-client\n\t\t\tclient_secret linking-client-secret\n\t\t\tscopes openid email profile\n\t\t\tallow_email_linking\n\t\t}\n", idp.Issuer)
	caddy := testcaddy.Start(t, globalBlock("\t\turl "+base+"\n"+emailProvider("", "log")+oidcProvider("oidc", idp.Issuer)+linking+newUserJWT)+
		siteBlock(port, "authgate", up.URL))

	b := newBrowser(t)
	// alice signs in by email first: a new user.
	first := b.signInByLink(caddy, base, "alice@example.com", base+"/app")
	wantNewUser(t, first, true)
	sub := wantStoredUserID(t, first)
	b.dropCookie(base, sessionCookie)

	notLinked := func(t *testing.T) {
		t.Helper()
		before := caddy.LogCount(`"error_code":"OAuthAccountNotLinked"`)
		r := b.in(t).signInOIDC(base, "oidc", base+"/app", "alice")
		wantNoSetCookie(t, r, sessionCookie)
		page := wantErrorPage(t, b.in(t), base, r, "OAuthAccountNotLinked", http.StatusConflict)
		wantNoLeak(t, page.Body, "store:")
		if b.cookie(base, sessionCookie) != "" {
			t.Fatal("the browser has a session cookie after OAuthAccountNotLinked")
		}
		if caddy.LogCount(`"error_code":"OAuthAccountNotLinked"`) <= before {
			t.Error("no OAuthAccountNotLinked log line")
		}
	}
	// The same address at the identity provider, without allow_email_linking: refused.
	t.Run("not linked", notLinked)

	t.Run("allow_email_linking", func(t *testing.T) {
		b := b.in(t)
		r := b.signInOIDC(base, "linking", base+"/app", "alice")
		wantLocation(t, r, base+"/app")
		claims := sessionClaims(t, r)
		wantNewUser(t, claims, false) // linked to the user who was there
		if got := wantStoredUserID(t, claims); got != sub {
			t.Errorf("linked sign-in: sub %s, want %s, the email user's", got, sub)
		}
		// The user is the email user as stored, as in Auth.js: linking takes
		// nothing from the profile, so there is no name.
		if claims["name"] != nil && claims["name"] != "" {
			t.Errorf("linked sign-in: token name %v, want none (the stored user has none)", claims["name"])
		}
		wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
		wantAuthHeaders(t, up.Last(t), map[string]string{"x-auth-request-user": sub, "x-auth-request-email": "alice@example.com"})
		b.dropCookie(base, sessionCookie)

		// Linked now: the next sign-in finds the account.
		r = b.signInOIDC(base, "linking", base+"/app", "alice")
		if got := wantStoredUserID(t, sessionClaims(t, r)); got != sub {
			t.Errorf("second linked sign-in: sub %s, want %s", got, sub)
		}
		b.dropCookie(base, sessionCookie)
	})

	// Linking one provider's account links no other.
	t.Run("still not linked", notLinked)

	t.Run("email finds the OAuth user", func(t *testing.T) {
		b := newBrowser(t)
		r := b.signInOIDC(base, "oidc", base+"/app", "bob")
		wantLocation(t, r, base+"/app")
		bobSub := wantStoredUserID(t, sessionClaims(t, r))
		if bobSub == sub {
			t.Fatalf("bob and alice have the same sub %s", sub)
		}
		b.dropCookie(base, sessionCookie)
		claims := b.signInByLink(caddy, base, "bob@example.com", base+"/app")
		wantNewUser(t, claims, false)
		if got := wantStoredUserID(t, claims); got != bobSub {
			t.Errorf("bob by email: sub %s, want %s, his OpenID Connect user's", got, bobSub)
		}
	})
}

// TestBoltSurvivesRestart checks that the bolt store keeps users and unused
// sign-in links across a restart of Caddy.
func TestBoltSurvivesRestart(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	db := filepath.Join(t.TempDir(), "authgate.db")
	caddyfile := globalBlock("\t\turl "+base+"\n"+emailProvider("", "log")+"\t\tstore bolt "+db+"\n"+newUserJWT) + siteBlock(port, "authgate", up.URL)
	caddy := testcaddy.Start(t, caddyfile)

	b := newBrowser(t)
	first := b.signInByLink(caddy, base, "alice@example.com", base+"/app")
	wantNewUser(t, first, true)
	sub := wantStoredUserID(t, first)
	b.dropCookie(base, sessionCookie)
	// A second link, not followed before the restart.
	wantLinkSent(t, b, base, b.requestLink(base, "email", "alice@example.com", base+"/later"), "email")
	links := logLinks(t, caddy, "alice@example.com", callbackPrefix(base, "email"))
	if len(links) != 2 {
		t.Fatalf("Caddy logged %d links for alice, want 2", len(links))
	}
	unused := links[1]

	if err := caddy.Stop(); err != nil {
		t.Fatalf("stopping Caddy: %v", err)
	}
	b.c.CloseIdleConnections()
	caddy = testcaddy.Start(t, caddyfile)

	r := b.navigate(unused)
	wantLocation(t, r, base+"/later")
	claims := sessionClaims(t, r)
	wantNewUser(t, claims, false)
	if got := wantStoredUserID(t, claims); got != sub {
		t.Errorf("after the restart: sub %s, want %s as before", got, sub)
	}
	wantStatus(t, b.navigate(base+"/later"), http.StatusOK)
	if got := up.Last(t).HeaderValues("X-Auth-Request-User"); len(got) != 1 || got[0] != sub {
		t.Errorf("the upstream saw X-Auth-Request-User %q, want [%q]", got, sub)
	}
	// Used once, before or after a restart.
	wantVerificationFailed(t, newBrowser(t), base, links[0])
	wantVerificationFailed(t, newBrowser(t), base, unused)
	if caddy.LogContains("signed in") != true {
		t.Error("the restarted Caddy did not log the sign-in")
	}
}

// TestSignInSeesStoredUser: as in Auth.js, sign_in sees the stored user once the
// provider account is linked (its id is the stored UUID), and the provider's
// description before that (its id is the provider's subject).
func TestSignInSeesStoredUser(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := storeIDP(t, base, "oidc")
	up := testsite.NewUpstream(t, testsite.OK)
	rules := "\t\tcallbacks {\n\t\t\tsign_in {\n\t\t\t\tredirect /known `user.id.matches(\"^[0-9a-f]{8}-[0-9a-f]{4}-\")`\n\t\t\t}\n\t\t}\n"
	testcaddy.Start(t, globalBlock(oidcProvider("oidc", idp.Issuer)+rules)+siteBlock(port, "authgate", up.URL))

	b := newBrowser(t)
	// First sign-in: no stored user yet, so user.id is the provider's "alice".
	r := b.signInOIDC(base, "oidc", base+"/app", "alice")
	wantLocation(t, r, base+"/app")
	wantStoredUserID(t, sessionClaims(t, r))
	wantLocation(t, b.signOut(base), base+"/")

	// Second sign-in: the account is linked, sign_in sees the stored UUID.
	r = b.signInOIDC(base, "oidc", base+"/app", "alice")
	wantLocation(t, r, base+"/known")
}

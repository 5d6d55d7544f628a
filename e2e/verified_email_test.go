package e2e

import (
	"net/http"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testmailpit"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// Accounts at the identity provider: mallory typed in the victim's address,
// which the provider never verified; victor and trent proved theirs.
var verifiedEmailAccounts = map[string]map[string]any{
	"mallory": {"email": "victim@example.com", "email_verified": false, "name": "Mallory"},
	"victor":  {"email": "victim@example.com", "email_verified": true, "name": "Victor"},
	"trent":   {"email": "trent@example.com", "email_verified": true, "name": "Trent"},
}

// TestUnverifiedEmailHijack is pre-account hijacking: an attacker signs in
// through OpenID Connect with the victim's address, unverified; the victim
// then signs in with an email link. The victim lands in a new user, not the
// attacker's, and the attacker's account keeps signing into the attacker's
// user. Control: with a verified address, the link does land in the OIDC
// user, as it should.
func TestUnverifiedEmailHijack(t *testing.T) {
	mp := testmailpit.Start(t)
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := testidp.Start(t, testidp.Options{Accounts: verifiedEmailAccounts, Clients: []testidp.Client{
		{ID: "oidc-client", Secret: "oidc-client-secret", RedirectURIs: []string{base + "/.auth/callback/oidc"}},
	}})
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock("\t\turl "+base+"\n"+oidcProvider("oidc", idp.Issuer)+
		emailProvider("", mp.MailerURL("", ""))+`
		callbacks {
			sign_in {
				default allow
			}
			jwt {
				set profile_email `+bt+`profile.email`+bt+`
			}
		}
`)+siteBlock(port, "authgate", up.URL))

	byLink := func(b *browser, addr string) map[string]any {
		t.Helper()
		wantLinkSent(t, b, base, b.requestLink(base, "email", addr, base+"/app"), "email")
		r := b.navigate(testmailpit.Link(t, mp.Latest(t, addr).Text, callbackPrefix(base, "email")))
		wantLocation(t, r, base+"/app")
		return sessionClaims(t, r)
	}
	byOIDC := func(b *browser, account string) map[string]any {
		t.Helper()
		r := b.signInOIDC(base, "oidc", base+"/app", account)
		wantLocation(t, r, base+"/app")
		return sessionClaims(t, r)
	}

	attacker := newBrowser(t)
	first := byOIDC(attacker, "mallory")
	attackerSub := wantStoredUserID(t, first)
	if email, ok := first["email"]; ok && email != nil && email != "" {
		t.Errorf("the attacker's token has email %v: an unverified address became the user's", email)
	}
	if first["profile_email"] != "victim@example.com" {
		t.Errorf("jwt saw profile.email %v, want the raw claim victim@example.com", first["profile_email"])
	}
	wantStatus(t, attacker.navigate(base+"/app"), http.StatusOK)
	if got := up.Last(t).Header.Get("X-Auth-Request-Email"); got != "" {
		t.Errorf("the upstream saw the attacker's email %q, want none", got)
	}

	victim := byLink(newBrowser(t), "victim@example.com")
	victimSub := wantStoredUserID(t, victim)
	if victimSub == attackerSub {
		t.Fatalf("the victim's email sign-in landed in the attacker's user %s", attackerSub)
	}
	if victim["email"] != "victim@example.com" {
		t.Errorf("the victim's token has email %v, want victim@example.com", victim["email"])
	}
	if again := wantStoredUserID(t, byOIDC(newBrowser(t), "mallory")); again != attackerSub {
		t.Errorf("the attacker's account signed into user %s, want the attacker's own %s (victim: %s)", again, attackerSub, victimSub)
	}

	// Control: a verified address is the user's, and its link finds that user.
	trentSub := wantStoredUserID(t, byOIDC(newBrowser(t), "trent"))
	if got := wantStoredUserID(t, byLink(newBrowser(t), "trent@example.com")); got != trentSub {
		t.Errorf("trent's email link signed into %s, want the user of his verified OIDC sign-in %s", got, trentSub)
	}
}

// TestUnverifiedEmailShorthands: the email and domain shorthands never match
// an unverified address, while profile.email still has it.
func TestUnverifiedEmailShorthands(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := testidp.Start(t, testidp.Options{Accounts: verifiedEmailAccounts, Clients: []testidp.Client{
		{ID: "oidc-client", Secret: "oidc-client-secret", RedirectURIs: []string{base + "/.auth/callback/oidc"}},
	}})
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(oidcProvider("oidc", idp.Issuer)+`
		callbacks {
			sign_in {
				allow email victim@example.com
				allow domain example.com
				redirect /unverified `+bt+`profile.email == "victim@example.com"`+bt+`
			}
		}
`)+siteBlock(port, "authgate", up.URL))

	r := newBrowser(t).signInOIDC(base, "oidc", base+"/app", "mallory")
	wantLocation(t, r, base+"/unverified")
	wantNoSetCookie(t, r, sessionCookie)
	// Controls: the same address verified, and another verified one.
	for _, account := range []string{"victor", "trent"} {
		r := newBrowser(t).signInOIDC(base, "oidc", base+"/app", account)
		wantLocation(t, r, base+"/app")
	}
}

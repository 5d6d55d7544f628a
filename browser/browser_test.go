package browser

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testmailpit"
)

// secret is the realm's session secret in these tests.
const secret = "browser-test-secret-0123456789-0123456789"

// Tests here start Caddy (one per process), so none runs in parallel.

// TestBrowserCredentials signs in with the credentials provider as a user does:
// the guarded page sends the browser to the sign-in form, a wrong password is
// refused with the CredentialsSignin message, the right one lands on the page
// first asked for with the user's identity given to the upstream, and signing
// out through the confirmation page ends the session.
func TestBrowserCredentials(t *testing.T) {
	users := writeUsersFile(t, testUser{username: "alice", password: "correct horse", name: "Alice Example", email: "alice@example.com"})
	upstream := startUpstream(t)
	port := testcaddy.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, fmt.Sprintf(`{
	admin off
	auto_https off
	authgate {
		secret %s
		provider credentials {
			name "Test users"
			users_file %q
		}
	}
}

%s {
	authgate
	reverse_proxy %s
}
`, secret, users, origin, strings.TrimPrefix(upstream.URL, "http://")))

	p := startBrowser(t)

	// A signed-out visit to a guarded page ends on the sign-in form.
	p.navigate(origin + "/app")
	u := p.wantPath(origin, "/.auth/signin")
	if got, want := u.Query().Get("callbackUrl"), origin+"/app"; got != want {
		p.fatalf("sign-in page's callbackUrl = %q, want %q", got, want)
	}
	p.wantText("h1", "Sign in")
	p.mustHave(`form[action="/.auth/callback/credentials"] input[name=username]#username-credentials`)
	p.mustHave(`form[action="/.auth/callback/credentials"] input[name=password][type=password]#password-credentials`)
	p.wantText("button#submit-credentials", "Sign in with Test users")
	if _, ok := p.text(".error"); ok {
		p.fatalf("the sign-in page shows an error before any attempt")
	}
	p.screenshot("signin-credentials.png")

	// A wrong password: back on the sign-in page with Auth.js's CredentialsSignin message.
	p.typeInto("#username-credentials", "alice")
	p.typeInto("#password-credentials", "wrong password")
	p.clickAndWait("#submit-credentials")
	u = p.wantPath(origin, "/.auth/signin")
	if got := u.Query().Get("error"); got != "CredentialsSignin" {
		p.fatalf("error parameter = %q, want CredentialsSignin", got)
	}
	p.wantText(`.error[role=alert]`, "Sign in failed. Check the username and password you entered.")
	p.screenshot("signin-credentials-error.png")

	// The right password: on the page first asked for, and the upstream knows who.
	p.typeInto("#username-credentials", "alice")
	p.typeInto("#password-credentials", "correct horse")
	if resp := p.clickAndWait("#submit-credentials"); resp.Status != http.StatusOK {
		p.fatalf("after signing in: status %d, want 200", resp.Status)
	}
	p.wantPath(origin, "/app")
	p.wantText("#upstream", "Hello from the upstream")
	p.wantText("#user", "alice")
	p.wantText("#email", "alice@example.com")
	p.wantText("#name", "Alice Example")
	if cookies := p.mustText("#cookies"); strings.Contains(cookies, "authgate") {
		p.fatalf("the upstream received authgate's cookies: %s", cookies)
	}

	// Still signed in on the next visit.
	p.navigate(origin + "/app/other")
	p.wantPath(origin, "/app/other")
	p.wantText("#email", "alice@example.com")

	// Sign out through the confirmation page.
	p.navigate(origin + "/.auth/signout")
	p.wantPath(origin, "/.auth/signout")
	p.wantText("button#signout", "Sign out")
	p.clickAndWait("button#signout")
	if got := p.sessionJSON(origin); len(got) != 0 {
		p.fatalf("/.auth/session after signing out = %v, want {}", got)
	}

	// Signed out: the guarded page sends the browser to sign in again.
	p.navigate(origin + "/app")
	p.wantPath(origin, "/.auth/signin")
	p.mustHave("#username-credentials")
}

// TestBrowserOIDC signs in through a real OpenID Provider: the sign-in page's
// button starts the authorization code flow, the provider's login and consent
// pages are filled in as a user does, and the browser comes back to the page
// first asked for, with the provider's claims given to the upstream and in
// /.auth/session.
func TestBrowserOIDC(t *testing.T) {
	upstream := startUpstream(t)
	port := testcaddy.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := testidp.Start(t, testidp.Options{
		Clients: []testidp.Client{{
			ID:           "authgate-browser",
			Secret:       "authgate-browser-client-secret",
			RedirectURIs: []string{origin + "/.auth/callback/oidc"},
		}},
		Accounts: map[string]map[string]any{
			"bob": {"email": "bob@example.com", "email_verified": true, "name": "Bob Example"},
		},
	})
	testcaddy.Start(t, fmt.Sprintf(`{
	admin off
	auto_https off
	authgate {
		secret %s
		provider oidc {
			issuer %s
			client_id authgate-browser
			client_secret authgate-browser-client-secret
			scopes openid email profile
		}
		callbacks {
			sign_in {
				default allow
			}
		}
	}
}

%s {
	authgate
	reverse_proxy %s
}
`, secret, idp.Issuer, origin, strings.TrimPrefix(upstream.URL, "http://")))

	p := startBrowser(t)

	// The sign-in page offers the provider.
	p.navigate(origin + "/app")
	p.wantPath(origin, "/.auth/signin")
	p.wantText("h1", "Sign in")
	p.wantText(`form[action="/.auth/signin/oidc"] button#signin-oidc`, "Sign in with OpenID Connect")
	if _, ok := p.text("input[type=password]"); ok {
		p.fatalf("the sign-in page shows a password field with no credentials provider")
	}
	p.screenshot("signin-oidc.png")

	// The button leads to the provider's login page.
	p.clickAndWait("#signin-oidc")
	idpURL, err := url.Parse(idp.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	if u := p.location(); u.Host != idpURL.Host || !strings.HasPrefix(u.Path, "/interaction/") {
		p.fatalf("after the sign-in button: browser at %s, want the provider's login page at %s/interaction/…", u, idp.Issuer)
	}
	p.mustHave(`form input[name=prompt][value=login]`)
	p.typeInto(`input[name=login]`, "bob")
	p.typeInto(`input[name=password]`, "any password")
	p.clickAndWait(`form button[type=submit]`)

	// Then its consent page.
	if u := p.location(); u.Host != idpURL.Host {
		p.fatalf("after logging in: browser at %s, want the provider's consent page", u)
	}
	p.mustHave(`form input[name=prompt][value=consent]`)
	if resp := p.clickAndWait(`form button[type=submit]`); resp.Status != http.StatusOK {
		p.fatalf("after consenting: status %d, want 200", resp.Status)
	}

	// Back on the page first asked for, signed in as the user the store
	// created for bob's account: X-Auth-Request-User is its id, the token's sub.
	p.wantPath(origin, "/app")
	sub := p.wantStoredUser(origin)
	p.wantText("#email", "bob@example.com")
	p.wantText("#name", "Bob Example")

	// The session endpoint shows the user.
	s := p.sessionJSON(origin)
	user, _ := s["user"].(map[string]any)
	if user["email"] != "bob@example.com" || user["name"] != "Bob Example" {
		p.fatalf("/.auth/session user = %v, want bob@example.com, Bob Example", s["user"])
	}
	if exp, _ := s["expires"].(string); exp == "" {
		p.fatalf("/.auth/session has no expires: %v", s)
	}

	// Signed out and in again (the provider remembers bob and his consent, so
	// the button leads straight back): the same user.
	p.navigate(origin + "/.auth/signout")
	p.clickAndWait("button#signout")
	p.navigate(origin + "/app")
	p.wantPath(origin, "/.auth/signin")
	p.clickAndWait("#signin-oidc")
	p.wantPath(origin, "/app")
	if again := p.wantStoredUser(origin); again != sub {
		p.fatalf("second sign-in: sub %s, want %s as at the first", again, sub)
	}
	p.wantText("#email", "bob@example.com")
}

// TestBrowserEmail signs in with a link mailed through a real SMTP server
// (mailpit): the sign-in page's email form sends the link and shows "check
// your email", and the link, read from mailpit as from an inbox, lands on the
// page first asked for, signed in as a stored user.
func TestBrowserEmail(t *testing.T) {
	mp := testmailpit.Start(t)
	upstream := startUpstream(t)
	port := testcaddy.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, fmt.Sprintf(`{
	admin off
	auto_https off
	authgate {
		secret %s
		url %s
		provider email {
			mailer %s
			from "authgate <auth@example.com>"
		}
		callbacks {
			sign_in {
				default allow
			}
		}
	}
}

%s {
	authgate
	reverse_proxy %s
}
`, secret, origin, mp.MailerURL("", ""), origin, strings.TrimPrefix(upstream.URL, "http://")))

	p := startBrowser(t)

	// A signed-out visit ends on the sign-in page with the email form.
	p.navigate(origin + "/app")
	p.wantPath(origin, "/.auth/signin")
	p.wantText("h1", "Sign in")
	p.mustHave(`form[action="/.auth/signin/email"] input[name=email][type=email]#email-email`)
	p.wantText("button#submit-email", "Sign in with Email")
	if _, ok := p.text("input[type=password]"); ok {
		p.fatalf("the sign-in page shows a password field with no credentials provider")
	}
	p.screenshot("signin-email.png")

	p.typeInto("#email-email", "Alice@Example.com")
	if resp := p.clickAndWait("#submit-email"); resp.Status != http.StatusOK {
		p.fatalf("after asking for a link: status %d, want 200", resp.Status)
	}
	p.wantPath(origin, "/.auth/verify-request")
	p.wantText("h1", "Check your email")

	// The inbox has the link.
	msg := mp.Latest(t, "alice@example.com")
	link := testmailpit.Link(t, msg.Text, origin+"/.auth/callback/email?")
	if resp := p.navigate(link); resp.Status != http.StatusOK {
		p.fatalf("after following the link: status %d, want 200", resp.Status)
	}
	p.wantPath(origin, "/app")
	p.wantText("#upstream", "Hello from the upstream")
	p.wantText("#email", "alice@example.com")
	p.wantStoredUser(origin)
	if cookies := p.mustText("#cookies"); strings.Contains(cookies, "authgate") {
		p.fatalf("the upstream received authgate's cookies: %s", cookies)
	}

	// The link works once.
	p.navigate(link)
	u := p.wantPath(origin, "/.auth/error")
	if got := u.Query().Get("error"); got != "Verification" {
		p.fatalf("a used link: error %q, want Verification", got)
	}
}

// sessionJSON opens /.auth/session in the browser and decodes the JSON it shows.
func (p *page) sessionJSON(origin string) map[string]any {
	p.t.Helper()
	resp := p.navigate(origin + "/.auth/session")
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.MimeType, "application/json") {
		p.fatalf("/.auth/session: status %d, type %q; want 200 JSON", resp.Status, resp.MimeType)
	}
	body := p.mustText("body")
	var s map[string]any
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		p.fatalf("/.auth/session is not a JSON object: %v\n%s", err, body)
	}
	return s
}

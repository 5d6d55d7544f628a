package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// ruleAccounts are the identity provider's accounts for the rules tests: users
// with different emails, groups and departments.
var ruleAccounts = map[string]map[string]any{
	"alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Example",
		"groups": []string{"admins", "staff"}, "department": "eng"},
	"bob": {"email": "bob@example.com", "email_verified": true, "name": "Bob Example",
		"groups": []string{"staff"}, "department": "ops"},
	"carol": {"email": "carol@example.com", "email_verified": true, "name": "Carol Example",
		"groups": []string{"staff"}, "department": "sales"},
	"dave": {"email": "dave@example.com", "email_verified": true, "name": "Dave Example",
		"groups": []string{"staff"}, "department": "partners"},
	"mallory": {"email": "mallory@evil.test", "email_verified": true, "name": "Mallory",
		"groups": []string{"admins", "staff"}, "department": "eng"},
	// mallory's address at the company domain: both the deny and the allow rule match.
	"mallory2": {"email": "mallory@example.com", "email_verified": true, "name": "Mallory Again",
		"groups": []string{"staff"}, "department": "eng"},
	"eve": {"email": "eve@other.test", "email_verified": true, "name": "Eve",
		"groups": []string{"staff"}, "department": "eng"},
}

// startRulesIDP starts the identity provider with ruleAccounts and a client for
// the `provider oidc sso` block oidcProvider("sso", …) writes, registered with
// authgate's redirect URI on base.
func startRulesIDP(t *testing.T, base string) *testidp.IDP {
	t.Helper()
	return testidp.Start(t, testidp.Options{
		Clients: []testidp.Client{{ID: "sso-client", Secret: "sso-client-secret",
			RedirectURIs: []string{base + "/.auth/callback/sso"}}},
		Accounts: ruleAccounts,
	})
}

// ticks turns ´ into backticks, so Caddyfiles with CEL expressions can be
// written as Go raw strings.
func ticks(s string) string {
	return strings.ReplaceAll(s, "´", bt)
}

// signInAs signs account in with the sso provider in a new browser, from the
// sign-in page for callbackURL, and returns the browser and authgate's answer
// to the provider's callback.
func signInAs(t *testing.T, base, callbackURL, account string) (*browser, response) {
	t.Helper()
	b := newBrowser(t)
	return b, b.signInOIDC(base, "sso", callbackURL, account)
}

// sessionOf returns the browser's session from GET /.auth/session.
func sessionOf(t *testing.T, b *browser, base string) map[string]any {
	t.Helper()
	r := b.api(base + "/.auth/session")
	wantStatus(t, r, http.StatusOK)
	var s map[string]any
	if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
		t.Fatalf("/.auth/session %q: %v", r.Body, err)
	}
	return s
}

// sessionUser returns the user object of a session.
func sessionUser(t *testing.T, s map[string]any) map[string]any {
	t.Helper()
	u, ok := s["user"].(map[string]any)
	if !ok {
		t.Fatalf("session %v has no user object", s)
	}
	return u
}

// TestRulesSignIn checks the sign_in rules after a real OpenID Connect sign-in:
// the first matching rule decides, an allow rule makes the block an allow-list,
// a deny ends at the AccessDenied page without a session, and a redirect rule
// sends the user to its (checked) URL.
func TestRulesSignIn(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := startRulesIDP(t, base)
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock(oidcProvider("sso", idp.Issuer)+ticks(`
		callbacks {
			sign_in {
				deny email mallory@*
				redirect /request-access claim department sales
				redirect https://evil.example ´profile.department == "partners"´
				allow domain example.com
			}
		}
`))+fmt.Sprintf(`%s {
	handle /request-access {
		respond "ask an administrator"
	}
	handle {
		authgate
		reverse_proxy %s
	}
}
`, base, up.URL))

	t.Run("allowed", func(t *testing.T) {
		b, r := signInAs(t, base, base+"/app", "alice")
		wantLocation(t, r, base+"/app")
		sub := wantStoredUserID(t, sessionClaims(t, r))
		wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
		wantUpstream(t, up, "/app", identityHeaders(sub, "alice@example.com", "Alice Example"))
	})

	denied := func(t *testing.T, account string) {
		t.Helper()
		before := up.Count()
		logged := caddy.LogCount(`"error_code":"AccessDenied"`)
		b, r := signInAs(t, base, base+"/app", account)
		wantNoSetCookie(t, r, sessionCookie)
		page := wantErrorPage(t, b, base, r, "AccessDenied", http.StatusForbidden)
		wantNoLeak(t, page.Body)
		if !strings.Contains(pageText(t, page.Body), "You do not have permission to sign in.") {
			t.Errorf("the AccessDenied page does not explain it: %s", pageText(t, page.Body))
		}
		if b.cookie(base, sessionCookie) != "" {
			t.Fatal("the browser has a session cookie after a denied sign-in")
		}
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
		wantSessionRequired(t, b.api(base+"/app"), http.StatusUnauthorized)
		if s := b.api(base + "/.auth/session"); strings.TrimSpace(s.Body) != "{}" {
			t.Errorf("/.auth/session after a denied sign-in: %q, want {}", s.Body)
		}
		if up.Count() != before {
			t.Error("the upstream received a request from a denied user")
		}
		if caddy.LogCount(`"error_code":"AccessDenied"`) <= logged {
			t.Error("the denied sign-in is not logged with AccessDenied")
		}
	}
	t.Run("denied by email", func(t *testing.T) { denied(t, "mallory") })
	// The deny rule comes first, so it wins over the allow rule that matches too.
	t.Run("deny before allow", func(t *testing.T) { denied(t, "mallory2") })
	// No rule matches: the block has an allow rule, so it is an allow-list.
	t.Run("not on the allow-list", func(t *testing.T) { denied(t, "eve") })

	t.Run("redirect rule", func(t *testing.T) {
		b, r := signInAs(t, base, base+"/app", "carol")
		wantLocation(t, r, base+"/request-access")
		wantNoSetCookie(t, r, sessionCookie)
		page := b.navigate(base + "/request-access")
		wantStatus(t, page, http.StatusOK)
		if page.Body != "ask an administrator" {
			t.Errorf("/request-access: %q", page.Body)
		}
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
	})

	t.Run("redirect rule to another origin", func(t *testing.T) {
		b, r := signInAs(t, base, base+"/app", "dave")
		wantNoSetCookie(t, r, sessionCookie)
		if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || (loc != base && loc != base+"/") {
			t.Errorf("a redirect rule to https://evil.example answered %d to %q, want 302 to %s/", r.StatusCode, loc, base)
		}
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
	})
}

// TestRulesJWTAndSession checks that jwt rules put the provider's profile in the
// token, session rules shape the session, and the site's header lines and
// {http.auth.session.*} placeholders carry them to the upstream and to other
// handlers.
func TestRulesJWTAndSession(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := startRulesIDP(t, base)
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(oidcProvider("sso", idp.Issuer)+ticks(`
		callbacks {
			jwt {
				set department ´profile.department´
				set role ´"admins" in profile.groups ? "admin" : "user"´
				set groups ´profile.groups´
			}
			session {
				set user.role ´token.role´
				set user.department ´token.department´
			}
		}
`))+ticks(fmt.Sprintf(`%s {
	authgate {
		header X-Auth-Request-Department ´token.department´
		header X-Auth-Request-Role ´session.user.role´
		header X-Auth-Request-Groups ´token.groups´
	}
	# deferred, so that it is set when the response is written, after authgate ran
	header >X-Role {http.auth.session.user.role}
	handle /whoami {
		respond "role={http.auth.session.user.role} department={http.auth.session.user.department} user={http.auth.user.id}"
	}
	handle {
		reverse_proxy %s {
			header_up X-Session-Role {http.auth.session.user.role}
			header_up X-Session-Department {http.auth.session.user.department}
		}
	}
}
`, base, up.URL)))

	subs := map[string]string{} // account → the token's sub
	for _, tc := range []struct {
		account, name, email, role, department, groups string
	}{
		{"alice", "Alice Example", "alice@example.com", "admin", "eng", "admins,staff"},
		{"bob", "Bob Example", "bob@example.com", "user", "ops", "staff"},
	} {
		t.Run(tc.account, func(t *testing.T) {
			b, r := signInAs(t, base, base+"/app", tc.account)
			wantLocation(t, r, base+"/app")
			sc := setCookie(r, sessionCookie)
			if sc == nil {
				t.Fatalf("no session cookie: %v", r.Header.Values("Set-Cookie"))
			}

			// The token holds what the jwt rules set, next to the defaults.
			claims, err := codec(t, testSecret, sessionCookie).Decode(sc.Value, time.Now())
			if err != nil {
				t.Fatalf("decoding the session cookie: %v", err)
			}
			groups, _ := claims["groups"].([]any)
			if claims["email"] != tc.email || claims["role"] != tc.role ||
				claims["department"] != tc.department || fmt.Sprint(groups) != "["+strings.ReplaceAll(tc.groups, ",", " ")+"]" {
				t.Errorf("session token %v, want email %s, role %s, department %s, groups %s", claims, tc.email, tc.role, tc.department, tc.groups)
			}
			// sub is the stored user's own id: each account has its own.
			sub := wantStoredUserID(t, claims)
			for other, s := range subs {
				if s == sub {
					t.Errorf("%s and %s have the same sub %s", tc.account, other, sub)
				}
			}
			subs[tc.account] = sub

			// /.auth/session: the default shape plus what the session rules set.
			s := sessionOf(t, b, base)
			u := sessionUser(t, s)
			want := map[string]any{"name": tc.name, "email": tc.email, "image": nil, "role": tc.role, "department": tc.department}
			if fmt.Sprint(u) != fmt.Sprint(want) {
				t.Errorf("/.auth/session user = %v, want %v", u, want)
			}
			if _, ok := s["expires"].(string); !ok || len(s) != 2 {
				t.Errorf("/.auth/session = %v, want {user, expires}", s)
			}

			// The upstream gets exactly the configured headers — the defaults are
			// replaced — even when the client sends its own.
			r = b.navigate(base+"/app", "X-Auth-Request-Role", "admin", "X-Auth-Request-User", "root")
			wantStatus(t, r, http.StatusOK)
			seen := wantUpstream(t, up, "/app", map[string]string{
				"x-auth-request-department": tc.department,
				"x-auth-request-role":       tc.role,
				"x-auth-request-groups":     tc.groups,
			})
			// Placeholders: in reverse_proxy's header_up ...
			for k, v := range map[string]string{"X-Session-Role": tc.role, "X-Session-Department": tc.department} {
				if got := seen.HeaderValues(k); !slices.Equal(got, []string{v}) {
					t.Errorf("header_up %s: the upstream saw %q, want [%q]", k, got, v)
				}
			}
			// ... in the header directive ...
			if got := r.Header.Values("X-Role"); !slices.Equal(got, []string{tc.role}) {
				t.Errorf("response header X-Role %q, want [%q]", got, tc.role)
			}
			// ... and in respond.
			r = b.navigate(base + "/whoami")
			wantStatus(t, r, http.StatusOK)
			if want := fmt.Sprintf("role=%s department=%s user=%s", tc.role, tc.department, sub); r.Body != want {
				t.Errorf("/whoami = %q, want %q", r.Body, want)
			}
		})
	}

	t.Run("signed out", func(t *testing.T) {
		b := newBrowser(t)
		before := up.Count()
		wantSignInRedirect(t, b.navigate(base+"/whoami"), base+"/whoami")
		wantSessionRequired(t, b.api(base+"/app", "X-Auth-Request-Role", "admin"), http.StatusUnauthorized)
		if up.Count() != before {
			t.Error("a signed-out request reached the upstream")
		}
	})
}

// TestRulesRequire checks routes' require lines: a user who does not meet them
// gets 403 (a page for browsers, JSON for others) and never reaches the
// upstream, while other routes of the site let them through; several require
// lines must all hold.
func TestRulesRequire(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := startRulesIDP(t, base)
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(oidcProvider("sso", idp.Issuer)+ticks(`
		callbacks {
			jwt {
				set groups ´profile.groups´
			}
		}
`))+ticks(fmt.Sprintf(`%[1]s {
	handle /admin/* {
		authgate {
			require claim groups admins
		}
		reverse_proxy %[2]s
	}
	handle /both/* {
		authgate {
			require ´session.user.email.endsWith("@example.com")´
			require claim groups admins
		}
		reverse_proxy %[2]s
	}
	handle {
		authgate
		reverse_proxy %[2]s
	}
}
`, base, up.URL)))

	// Signed out, a guarded route asks to sign in; require does not come into it.
	anon := newBrowser(t)
	wantSignInRedirect(t, anon.navigate(base+"/admin/x"), base+"/admin/x")
	wantSessionRequired(t, anon.api(base+"/admin/x"), http.StatusUnauthorized)

	forbidden := func(t *testing.T, b *browser, path string) {
		t.Helper()
		before := up.Count()
		r := b.navigate(base + path)
		wantStatus(t, r, http.StatusForbidden)
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("403 page Content-Type %q", ct)
		}
		if text := pageText(t, r.Body); !strings.Contains(text, "Access denied") || !strings.Contains(text, "not available to your account") {
			t.Errorf("403 page does not say access is denied: %s", text)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("403 page Cache-Control %q, want no-store", cc)
		}
		r = b.api(base + path)
		wantStatus(t, r, http.StatusForbidden)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("403 Content-Type %q, want application/json", ct)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil || len(body) != 1 || body["error"] != "AccessDenied" {
			t.Errorf("403 body %q, want {\"error\":\"AccessDenied\"}", r.Body)
		}
		if up.Count() != before {
			t.Errorf("a refused request to %s reached the upstream", path)
		}
	}
	allowed := func(t *testing.T, b *browser, path string) {
		t.Helper()
		wantStatus(t, b.navigate(base+path), http.StatusOK)
		if seen := up.Last(t); seen.URI != path {
			t.Errorf("the upstream got %s, want %s", seen.URI, path)
		}
	}

	for _, tc := range []struct {
		account     string
		admin, both bool
	}{
		{"alice", true, true},    // admins, at example.com
		{"bob", false, false},    // not in admins
		{"mallory", true, false}, // admins, but not at example.com
	} {
		t.Run(tc.account, func(t *testing.T) {
			b, r := signInAs(t, base, base+"/other", tc.account)
			wantLocation(t, r, base+"/other")
			allowed(t, b, "/other")
			for path, ok := range map[string]bool{"/admin/x": tc.admin, "/both/x": tc.both} {
				if ok {
					allowed(t, b, path)
				} else {
					forbidden(t, b, path)
				}
			}
		})
	}
}

// postSessionUpdate posts Auth.js's update(data) to /.auth/session as JSON, as
// the client library's fetch does; an empty csrf leaves the token out.
func (b *browser) postSessionUpdate(base, csrf string, data any) response {
	b.t.Helper()
	body := map[string]any{"data": data}
	if csrf != "" {
		body["csrfToken"] = csrf
	}
	js, err := json.Marshal(body)
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/.auth/session", bytes.NewReader(js))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return b.do(req)
}

// TestSessionUpdate checks POST /.auth/session: the jwt rules run with trigger
// "update" and the posted data as `session`, the new token is issued in a new
// cookie, and a rule whose condition does not hold leaves the claim alone.
func TestSessionUpdate(t *testing.T) {
	base, up, _ := credentialsSite(t, ticks(`authgate {
		header X-Auth-Request-User ´token.sub´
		header X-Auth-Request-Role ´token.role´
	}`), ticks(`
		callbacks {
			jwt {
				set role ´"user"´ ´trigger == "sign_in"´
				set role ´session.role´ ´trigger == "update" && session.role in ["user", "editor"]´
			}
			session {
				set user.role ´token.role´
			}
		}
`), aliceUser)
	c := codec(t, testSecret, sessionCookie)

	b := newBrowser(t)
	wantLocation(t, b.signInCredentials(base, base+"/app", "alice", aliceUser.Password), base+"/app")
	upstreamRole := func(t *testing.T, want string) {
		t.Helper()
		wantStatus(t, b.in(t).navigate(base+"/app"), http.StatusOK)
		wantAuthHeaders(t, up.Last(t), map[string]string{"x-auth-request-user": "alice", "x-auth-request-role": want})
	}
	upstreamRole(t, "user")
	csrf := b.csrfToken(base)

	// update posts data and checks the answer: the session with role want, and a
	// new session cookie whose token has role want.
	update := func(t *testing.T, data any, want string) {
		t.Helper()
		b := b.in(t)
		before := b.cookie(base, sessionCookie)
		r := b.postSessionUpdate(base, csrf, data)
		wantStatus(t, r, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
			t.Errorf("Cache-Control %q, want private, no-store", cc)
		}
		var s map[string]any
		if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
			t.Fatalf("POST /.auth/session answered %q: %v", r.Body, err)
		}
		u := sessionUser(t, s)
		if u["role"] != want || u["email"] != "alice@example.com" || u["name"] != "Alice Example" {
			t.Errorf("POST /.auth/session answered user %v, want alice with role %s", u, want)
		}
		if _, ok := s["expires"].(string); !ok {
			t.Errorf("POST /.auth/session answered %v without expires", s)
		}
		sc := setCookie(r, sessionCookie)
		if sc == nil {
			t.Fatalf("the update set no session cookie: %v", r.Header.Values("Set-Cookie"))
		}
		wantCookieAttrs(t, sc, sessionMaxAge)
		if sc.Value == before {
			t.Error("the update re-issued the same token")
		}
		claims, err := c.Decode(sc.Value, time.Now())
		if err != nil {
			t.Fatalf("decoding the updated session cookie: %v", err)
		}
		if claims["role"] != want || claims["sub"] != "alice" || claims["email"] != "alice@example.com" {
			t.Errorf("updated token %v, want alice with role %s", claims, want)
		}
		if got := sessionUser(t, sessionOf(t, b, base))["role"]; got != want {
			t.Errorf("GET /.auth/session after the update: role %v, want %s", got, want)
		}
		upstreamRole(t, want)
	}

	t.Run("allowed value", func(t *testing.T) {
		update(t, map[string]any{"role": "editor"}, "editor")
	})
	t.Run("value the condition refuses", func(t *testing.T) {
		update(t, map[string]any{"role": "admin"}, "editor")
	})
	t.Run("data without the key", func(t *testing.T) {
		update(t, map[string]any{"theme": "dark"}, "editor")
	})
	t.Run("no data", func(t *testing.T) {
		update(t, nil, "editor")
	})
	t.Run("back to user", func(t *testing.T) {
		update(t, map[string]any{"role": "user"}, "user")
		update(t, map[string]any{"role": "editor"}, "editor")
	})

	t.Run("without CSRF token", func(t *testing.T) {
		for name, token := range map[string]string{"none": "", "another browser's": newBrowser(t).csrfToken(base)} {
			b := b.in(t)
			r := b.postSessionUpdate(base, token, map[string]any{"role": "user"})
			wantStatus(t, r, http.StatusForbidden)
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s token: Content-Type %q, want application/json", name, ct)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body["error"] == nil {
				t.Errorf("%s token: body %q, want a JSON error", name, r.Body)
			}
			wantNoSetCookie(t, r, sessionCookie)
		}
		upstreamRole(t, "editor")
	})

	t.Run("signed out", func(t *testing.T) {
		b := b.in(t)
		wantLocation(t, b.signOut(base), base+"/")
		r := b.postSessionUpdate(base, csrf, map[string]any{"role": "user"})
		wantStatus(t, r, http.StatusOK)
		if strings.TrimSpace(r.Body) != "{}" {
			t.Errorf("signed-out update answered %q, want {}", r.Body)
		}
		wantNoSetCookie(t, r, sessionCookie)
		wantSessionRequired(t, b.api(base+"/app"), http.StatusUnauthorized)
	})
}

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

var (
	aliceUser = testsite.User{Login: "alice", Password: "alice-password-e2e", Name: "Alice Example", Email: "alice@example.com"}
	bobUser   = testsite.User{Login: "bob", Password: "bob-password-e2e", Name: "Bob Example", Email: "bob@example.com"}
)

// credentialsSite starts Caddy with a credentials realm (plus realmExtra) in
// front of a new upstream, with the site directive's block directive.
func credentialsSite(t *testing.T, directive, realmExtra string, users ...testsite.User) (string, *testsite.Upstream, *testcaddy.Server) {
	t.Helper()
	port := testcaddy.FreePort(t)
	up := testsite.NewUpstream(t, testsite.OK)
	c := testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, users...))+realmExtra)+siteBlock(port, directive, up.URL))
	return origin(port), up, c
}

// TestCredentialsSignIn signs in through the credentials form: wrong passwords
// and unknown users are sent back to the form with CredentialsSignin, the right
// password signs in and the upstream gets the user's identity.
func TestCredentialsSignIn(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser, bobUser)))+
		fmt.Sprintf(`%s {
	authgate
	reverse_proxy %s {
		header_up X-Placeholder-User {http.auth.user.id}
		header_up X-Placeholder-Email {http.auth.user.email}
		header_up X-Placeholder-Name {http.auth.user.name}
	}
}
`, base, up.URL))

	b := newBrowser(t)
	target := base + "/app?page=2"
	wantSignInRedirect(t, b.navigate(target), target)

	// The sign-in page has the credentials form.
	f := b.signInForm(base, target, "/.auth/callback/credentials")
	for _, k := range []string{"csrfToken", "callbackUrl", "username", "password"} {
		if _, ok := f.Values[k]; !ok {
			t.Errorf("credentials form has no %s field: %v", k, f.Values)
		}
	}

	failed := "/.auth/signin?error=CredentialsSignin&callbackUrl=" + url.QueryEscape(target)
	for _, tc := range []struct{ name, username, password string }{
		{"wrong password", "alice", "wrong-password-e2e"},
		{"unknown user", "mallory", "mallory-password-e2e"},
		{"empty password", "alice", ""},
		{"another user's password", "alice", bobUser.Password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := b.in(t)
			r := b.signInCredentials(base, target, tc.username, tc.password)
			wantLocation(t, r, failed)
			wantNoSetCookie(t, r, sessionCookie)
			page := b.navigate(base + failed)
			wantStatus(t, page, http.StatusOK)
			if text := pageText(t, page.Body); !strings.Contains(text, "Sign in failed. Check the username and password you entered.") {
				t.Errorf("sign-in page does not say why: %s", text)
			}
			if got := formFor(t, page.Body, "/.auth/callback/credentials").Values.Get("callbackUrl"); got != target {
				t.Errorf("the form lost the callback URL: %q", got)
			}
			wantSignInRedirect(t, b.navigate(target), target)
		})
	}
	if up.Count() != 0 {
		t.Fatal("the upstream received a request before sign-in")
	}

	// The right password.
	r := b.signInCredentials(base, target, "alice", aliceUser.Password)
	wantLocation(t, r, target)
	c := setCookie(r, sessionCookie)
	if c == nil {
		t.Fatalf("no session cookie: %v", r.Header.Values("Set-Cookie"))
	}
	wantCookieAttrs(t, c, sessionMaxAge)
	r = b.navigate(target)
	wantStatus(t, r, http.StatusOK)
	seen := wantUpstream(t, up, "/app?page=2", aliceHeaders)
	// Caddy placeholders carry the user, for access logs and other handlers.
	for k, want := range map[string]string{"X-Placeholder-User": "alice", "X-Placeholder-Email": "alice@example.com", "X-Placeholder-Name": "Alice Example"} {
		if got := seen.Header.Get(k); got != want {
			t.Errorf("placeholder header %s = %q, want %q", k, got, want)
		}
	}
	wantNoAuthCookies(t, seen, "authgate.")

	// Another user in another browser.
	b2 := newBrowser(t)
	wantLocation(t, b2.signInCredentials(base, base+"/", "bob", bobUser.Password), base+"/")
	wantStatus(t, b2.navigate(base+"/b"), http.StatusOK)
	bobHeaders := map[string]string{
		"x-auth-request-user": "bob", "x-auth-request-email": "bob@example.com", "x-auth-request-name": "Bob Example",
	}
	wantAuthHeaders(t, up.Last(t), bobHeaders)

	// A session cookie written "name =value" is the one net/http (and other
	// upstreams' parsers) read first: authgate reads that one too, and strips
	// it, so the upstream never gets a session token however it is spaced.
	spaced := b.get(base+"/spaced", "text/html", "Cookie", sessionCookie+" ="+b2.cookie(base, sessionCookie))
	wantStatus(t, spaced, http.StatusOK)
	seen = wantUpstream(t, up, "/spaced", bobHeaders)
	wantNoAuthCookies(t, seen, "authgate.")

	// GET on the credentials callback just shows the form.
	wantLocation(t, b2.navigate(base+"/.auth/callback/credentials"), "/.auth/signin")

	var provs map[string]map[string]string
	if r := b.api(base + "/.auth/providers"); json.Unmarshal([]byte(r.Body), &provs) != nil || provs["credentials"]["type"] != "credentials" {
		t.Errorf("/.auth/providers = %s", r.Body)
	}

	// Passwords never reach the log.
	logs := caddy.Logs()
	for _, p := range []string{"wrong-password-e2e", "mallory-password-e2e", aliceUser.Password, bobUser.Password} {
		if strings.Contains(logs, p) {
			t.Errorf("the log contains the password %q", p)
		}
	}
	if !caddy.LogContains(`"msg":"sign-in refused"`, `"provider":"credentials"`, `"username":"mallory"`, `"client_ip":"127.0.0.1"`, `"error_code":"CredentialsSignin"`) {
		t.Error("refused sign-ins are not logged")
	}
}

// TestHeaderSpoofing sends identity headers of its own: the upstream sees only
// authgate's, in any spelling, and a signed-out request never reaches it.
func TestHeaderSpoofing(t *testing.T) {
	port, portCustom, portUnderscore := testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)
	base, custom, underscore := origin(port), origin(portCustom), origin(portUnderscore)
	up := testsite.NewUpstream(t, testsite.OK)
	customHeaders := "authgate {\n" +
		"\t\theader X-User-Role " + bt + "token.sub" + bt + "\n" +
		"\t\theader X-Auth-Request-Email " + bt + "token.email" + bt + "\n" +
		"\t\theader X-User-Picture " + bt + "token.picture" + bt + "\n" +
		"\t}"
	// Caddy itself drops request headers with '_' unless a server allows them
	// (GHSA-f59h-q822-g45g); this server does, so that authgate's own handling
	// of '_' spellings is what the upstream depends on.
	allowUnderscores := fmt.Sprintf("\tservers 127.0.0.1:%d {\n\t\texpected_underscore_headers x_auth_request_* x_user_role x_user_picture x_trace_id\n\t}\n", portUnderscore)
	testcaddy.Start(t, globalOptions(allowUnderscores, testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser)))+
		siteBlock(port, "authgate", up.URL)+
		siteBlock(portCustom, customHeaders, up.URL)+
		siteBlock(portUnderscore, customHeaders, up.URL))

	spoofed := []string{
		"X-Auth-Request-User", "mallory",
		"x-auth-request-email", "mallory@evil.test",
		"X_Auth_Request_Name", "Mallory",
		"X-AUTH-REQUEST-GROUPS", "admins",
		"x_auth_request_access_token", "forged",
		"X-Auth-Request-Preferred-Username", "root",
	}

	t.Run("signed out", func(t *testing.T) {
		b := newBrowser(t)
		wantSessionRequired(t, b.api(base+"/api", spoofed...), http.StatusUnauthorized)
		wantSignInRedirect(t, b.navigate(base+"/api", spoofed...), base+"/api")
		wantSessionRequired(t, b.api(custom+"/api", append(spoofed, "X-User-Role", "admin")...), http.StatusUnauthorized)
		wantSessionRequired(t, b.api(underscore+"/api", append(spoofed, "x_user_role", "admin")...), http.StatusUnauthorized)
		if up.Count() != 0 {
			t.Fatal("a signed-out request with identity headers reached the upstream")
		}
	})

	b := newBrowser(t)
	wantLocation(t, b.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")

	t.Run("default headers", func(t *testing.T) {
		b := b.in(t)
		wantStatus(t, b.api(base+"/api", spoofed...), http.StatusOK)
		wantAuthHeaders(t, up.Last(t), aliceHeaders)
	})

	// configured checks a site whose header lines replace the defaults.
	configured := func(t *testing.T, site string, extra ...string) testsite.Request {
		t.Helper()
		b := b.in(t)
		wantStatus(t, b.api(site+"/api", append(append(spoofed,
			"X-User-Role", "admin",
			"X-USER-ROLE", "superuser",
			"x_user_role", "admin",
			"X_USER_PICTURE", "https://evil.test/p.png",
			"x-user-picture", "https://evil.test/p.png",
		), extra...)...), http.StatusOK)
		seen := up.Last(t)
		wantAuthHeaders(t, seen, map[string]string{"x-auth-request-email": "alice@example.com"})
		if got := seen.HeaderValues("X-User-Role"); len(got) != 1 || got[0] != "alice" {
			t.Errorf("the upstream saw X-User-Role %q, want [alice]", got)
		}
		// token.picture is null for this user: no header, and not the client's.
		if got := seen.HeaderValues("X-User-Picture"); len(got) != 0 {
			t.Errorf("the upstream saw X-User-Picture %q, want none", got)
		}
		return seen
	}
	t.Run("configured headers", func(t *testing.T) {
		configured(t, custom)
	})
	// Identity headers sent as trailers of a chunked body, declared and not:
	// the upstream gets none of them, whether the proxy forwards trailers or not.
	t.Run("trailers", func(t *testing.T) {
		b := b.in(t)
		for _, site := range []string{base, custom} {
			req, err := http.NewRequest(http.MethodPost, site+"/upload", io.MultiReader(strings.NewReader("part one, "), strings.NewReader("part two")))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			req.Trailer = http.Header{"X-Auth-Request-User": {"mallory"}, "X-User-Role": {"admin"}, "X-Checksum": {"c0ffee"}}
			wantStatus(t, b.do(req), http.StatusOK)
			seen := up.Last(t)
			if seen.Trailer == nil {
				t.Fatalf("%s: the upstream got no trailers at all (control)", site)
			}
			if got := seen.Trailer.Get("X-Checksum"); got != "c0ffee" {
				t.Errorf("%s: the upstream saw the trailer X-Checksum %q, want c0ffee (control: trailers are forwarded)", site, got)
			}
			for _, k := range []string{"X-Auth-Request-User", "X-User-Role"} {
				if v, ok := seen.Trailer[k]; ok && !(site == base && k == "X-User-Role") {
					t.Errorf("%s: the upstream saw the trailer %s %q", site, k, v)
				}
			}
		}
		// Trailers that no Trailer header declared, written by hand.
		conn, err := net.Dial("tcp", strings.TrimPrefix(custom, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /undeclared HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\nCookie: %s=%s\r\n"+
			"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n"+
			"X-Auth-Request-User: mallory\r\nX-User-Role: admin\r\nX-Checksum: c0ffee\r\n\r\n",
			strings.TrimPrefix(custom, "http://"), sessionCookie, b.cookie(base, sessionCookie))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantStatus(t, response{Response: resp}, http.StatusOK)
		seen := wantUpstream(t, up, "/undeclared", map[string]string{"x-auth-request-email": "alice@example.com"})
		for _, k := range []string{"X-Auth-Request-User", "X-User-Role"} {
			if v, ok := seen.Trailer[k]; ok {
				t.Errorf("undeclared trailers: the upstream saw %s %q", k, v)
			}
		}
	})
	t.Run("configured headers, underscores allowed", func(t *testing.T) {
		seen := configured(t, underscore, "x_trace_id", "trace-1")
		// Control: the server does let allowed underscore headers through.
		if got := seen.HeaderValues("x_trace_id"); len(got) != 1 || got[0] != "trace-1" {
			t.Fatalf("the upstream saw x_trace_id %q: the underscore allow-list is not in effect", got)
		}
	})
}

// TestSessionCookieAttacks sends session cookies that are tampered with,
// truncated, expired, or sealed with the wrong key: each is no session (a
// redirect for browsers, 401 for scripts, never a 500), and is cleared.
func TestSessionCookieAttacks(t *testing.T) {
	base, up, _ := credentialsSite(t, "authgate", "", aliceUser)
	b := newBrowser(t)
	r := b.signInCredentials(base, base+"/", "alice", aliceUser.Password)
	wantLocation(t, r, base+"/")
	token := b.cookie(base, sessionCookie)
	parts := strings.Split(token, ".")
	if len(parts) != 5 || parts[1] != "" {
		t.Fatalf("session cookie %q is not a compact JWE with alg dir", token)
	}
	replace := func(i int, part string) string {
		p := append([]string(nil), parts...)
		p[i] = part
		return strings.Join(p, ".")
	}

	now := time.Now()
	claims := map[string]any{"sub": "forged-user", "name": "Forged", "email": "forged@example.com"}
	good := codec(t, testSecret, sessionCookie)
	forged := func(secret, salt string, maxAge time.Duration, at time.Time) string {
		return encode(t, codec(t, secret, salt), claims, maxAge, at)
	}

	// Controls: the real cookie and one made with the realm's secret and cookie
	// name are sessions, so the cases below fail for the reason they name.
	for name, tok := range map[string]string{"real": token, "forged with the secret": encode(t, good, claims, time.Hour, now)} {
		t.Run("control "+name, func(t *testing.T) {
			b := newBrowser(t)
			b.setCookie(base, sessionCookie, tok)
			wantStatus(t, b.navigate(base+"/control"), http.StatusOK)
		})
	}

	for _, tc := range []struct{ name, value string }{
		{"header changed", replace(0, flip(parts[0], 0))},
		{"encrypted key added", replace(1, "AAAAAAAAAAAAAAAAAAAAAA")},
		{"iv changed", replace(2, flip(parts[2], 0))},
		{"ciphertext changed", replace(3, flip(parts[3], len(parts[3])/2))},
		{"ciphertext start changed", replace(3, flip(parts[3], 0))},
		{"tag changed", replace(4, flip(parts[4], 0))},
		{"truncated", token[:len(token)/2]},
		{"tag removed", strings.Join(parts[:4], ".")},
		{"ciphertext truncated", replace(3, parts[3][:len(parts[3])-8])},
		{"garbage", "not-a-session-token"},
		{"expired", forged(testSecret, sessionCookie, time.Hour, now.Add(-3*time.Hour))},
		{"issued in the future", forged(testSecret, sessionCookie, time.Hour, now.Add(time.Hour))},
		{"another secret", forged("another-secret-0123456789-abcdefghijklmnop", sessionCookie, time.Hour, now)},
		{"another cookie's key", forged(testSecret, "authjs.session-token", time.Hour, now)},
		{"the state cookie's key", forged(testSecret, stateCookie, time.Hour, now)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.Count()
			b := newBrowser(t)
			b.setCookie(base, sessionCookie, tc.value)
			r := b.navigate(base + "/app")
			wantSignInRedirect(t, r, base+"/app")
			wantCleared(t, r, sessionCookie)

			b.setCookie(base, sessionCookie, tc.value)
			r = b.api(base + "/app")
			wantSessionRequired(t, r, http.StatusUnauthorized)
			wantCleared(t, r, sessionCookie)

			b.setCookie(base, sessionCookie, tc.value)
			r = b.api(base + "/.auth/session")
			wantStatus(t, r, http.StatusOK)
			if strings.TrimSpace(r.Body) != "{}" {
				t.Errorf("/.auth/session = %s, want {}", r.Body)
			}
			wantCleared(t, r, sessionCookie)
			if up.Count() != before {
				t.Error("the upstream received the request")
			}
		})
	}

	t.Run("tampered chunk", func(t *testing.T) {
		// The real token split into chunks is a session; with a chunk changed it
		// is not, and every chunk is cleared.
		b := newBrowser(t)
		// Split inside the ciphertext, so that changing the second chunk's first
		// character changes ciphertext bits.
		half := len(parts[0]) + len(parts[2]) + 3 + len(parts[3])/2
		b.setCookie(base, sessionCookie+".0", token[:half])
		b.setCookie(base, sessionCookie+".1", token[half:])
		wantStatus(t, b.navigate(base+"/chunks"), http.StatusOK)

		b.setCookie(base, sessionCookie+".1", flip(token[half:], 0))
		r := b.navigate(base + "/chunks")
		wantSignInRedirect(t, r, base+"/chunks")
		wantCleared(t, r, sessionCookie+".0")
		wantCleared(t, r, sessionCookie+".1")
	})
}

// TestUpstreamCookies checks that the application's own cookies reach the
// upstream exactly as the browser sent them while authgate's are removed.
func TestUpstreamCookies(t *testing.T) {
	base, up, _ := credentialsSite(t, "authgate", "", aliceUser)
	b := newBrowser(t)
	wantLocation(t, b.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")

	// Cookies as applications write them: plain, quoted, and quoted with
	// octal escapes (Python's http.cookies, e.g. Django's messages cookie).
	appCookies := []string{`theme=dark`, `pref="a b"`, `messages="1f2e\054[[\"__json_message\"\0540\05425]]"`, `empty=`}
	req, err := http.NewRequest(http.MethodGet, base+"/cookies", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", htmlAccept)
	req.Header.Set("Cookie", strings.Join(appCookies, "; ")) // the jar adds authgate's after these
	wantStatus(t, b.do(req), http.StatusOK)
	seen := up.Last(t)
	if got := strings.Join(seen.Header.Values("Cookie"), "; "); got != strings.Join(appCookies, "; ") {
		t.Errorf("the upstream got Cookie %q\nwant %q", got, strings.Join(appCookies, "; "))
	}
}

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// stackedSite is a site guarded site-wide and, more strictly, on /admin/*,
// with the directives laid out as body says.
func stackedSite(t *testing.T, body string) (string, *testsite.Upstream) {
	t.Helper()
	port := testcaddy.FreePort(t)
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser, bobUser)))+
		fmt.Sprintf("%s {\n\t@admin path /admin/*\n%s\n}\n", origin(port), strings.ReplaceAll(body, "UPSTREAM", up.URL)))
	return origin(port), up
}

// TestStackedGuards: a site-wide authgate and a stricter `authgate @admin`
// both see the signed-in user, whichever order they come in and inside route
// and handle blocks; both require lines must hold.
func TestStackedGuards(t *testing.T) {
	strict := "authgate @admin {\n\t\trequire email alice@example.com\n\t}"
	for name, body := range map[string]string{
		"site-wide first":     "\tauthgate\n\t" + strict + "\n\treverse_proxy UPSTREAM",
		"strict first":        "\t" + strict + "\n\tauthgate\n\treverse_proxy UPSTREAM",
		"in a route":          "\troute {\n\t\tauthgate\n\t\t" + strict + "\n\t\treverse_proxy UPSTREAM\n\t}",
		"route, strict first": "\troute {\n\t\t" + strict + "\n\t\tauthgate {\n\t\t\trequire domain example.com\n\t\t}\n\t\treverse_proxy UPSTREAM\n\t}",
		"in a handle":         "\thandle {\n\t\tauthgate\n\t\t" + strict + "\n\t\treverse_proxy UPSTREAM\n\t}",
	} {
		t.Run(name, func(t *testing.T) {
			base, up := stackedSite(t, body)
			alice := newBrowser(t)
			wantLocation(t, alice.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")
			for _, path := range []string{"/admin/panel", "/page"} {
				wantStatus(t, alice.navigate(base+path), http.StatusOK)
				if got := up.Last(t).HeaderValues("X-Auth-Request-Email"); len(got) != 1 || got[0] != "alice@example.com" {
					t.Errorf("%s: the upstream saw X-Auth-Request-Email %v, want [alice@example.com]", path, got)
				}
				if c := up.Last(t).CookieNames(); len(c) != 0 {
					t.Errorf("%s: authgate's cookies reached the upstream: %v", path, c)
				}
			}
			bob := newBrowser(t)
			wantLocation(t, bob.signInCredentials(base, base+"/", "bob", bobUser.Password), base+"/")
			n := up.Count()
			wantStatus(t, bob.navigate(base+"/admin/panel"), http.StatusForbidden)
			if up.Count() != n {
				t.Error("bob reached /admin/*")
			}
			wantStatus(t, bob.navigate(base+"/page"), http.StatusOK)
			// Signed out, both guards send to sign in.
			wantSignInRedirect(t, newBrowser(t).navigate(base+"/admin/panel"), base+"/admin/panel")
		})
	}
}

// TestPublicRoutesStripForgedIdentity: with `authgate @admin`, the public
// routes never carry a forged identity header upstream, in any spelling; and
// a client's Connection header cannot make the proxy drop the headers
// authgate set.
func TestPublicRoutesStripForgedIdentity(t *testing.T) {
	base, up := stackedSite(t, "\tauthgate @admin {\n\t\theader X-Role `token.sub`\n\t\tassertion\n\t}\n\treverse_proxy UPSTREAM")
	forged := []string{
		"X-Auth-Request-User", "admin",
		"x-auth-request-email", "admin@example.com",
		"X_Auth_Request_User", "admin",
		"X-Role", "admin",
		"x_role", "admin",
		"X-Authgate-Assertion", "forged",
	}
	b := newBrowser(t)
	wantStatus(t, b.navigate(base+"/public", forged...), http.StatusOK)
	if h := up.Last(t).AuthHeaders(); len(h) != 0 {
		t.Errorf("a public route carried forged identity headers upstream: %v", h)
	}
	for _, name := range []string{"X-Role", "X_role", "X-Authgate-Assertion"} {
		if v := up.Last(t).Header.Values(name); len(v) != 0 {
			t.Errorf("a public route carried %s: %v upstream", name, v)
		}
	}

	// On the guarded route, Connection naming authgate's headers does not drop them.
	wantLocation(t, b.signInCredentials(base, base+"/admin/x", "alice", aliceUser.Password), base+"/admin/x")
	wantStatus(t, b.navigate(base+"/admin/x", "Connection", "X-Role, X-Auth-Request-User, X-Authgate-Assertion"), http.StatusOK)
	last := up.Last(t)
	if got := last.HeaderValues("X-Role"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("with Connection: X-Role, the upstream saw X-Role %v, want [alice]", got)
	}
	if got := last.HeaderValues("X-Authgate-Assertion"); len(got) != 1 || got[0] == "forged" {
		t.Errorf("with Connection naming it, the upstream saw X-Authgate-Assertion %v", got)
	}
	// The control: a header of the client's own that Connection names is
	// dropped by the proxy, so the check above can fail.
	wantStatus(t, b.navigate(base+"/admin/x", "X-Other", "1", "Connection", "X-Other"), http.StatusOK)
	if v := up.Last(t).Header.Values("X-Other"); len(v) != 0 {
		t.Errorf("control: reverse_proxy kept a header named in Connection (%v); the test above proves nothing", v)
	}
}

// TestAmbiguousPaths: a site that uses authgate answers 400 to paths that
// `path /admin/*` does not match but upstreams read as /admin/…, guarded route
// or public; legitimate encodings pass; allow_ambiguous_paths opts out.
func TestAmbiguousPaths(t *testing.T) {
	port, optPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
	up, optUp := testsite.NewUpstream(t, testsite.OK), testsite.NewUpstream(t, testsite.OK)
	_ = optUp
	testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser)))+
		fmt.Sprintf("%s {\n\t@admin path /admin/*\n\tauthgate @admin\n\treverse_proxy %s\n}\n", origin(port), up.URL)+
		fmt.Sprintf("%s {\n\t@admin path /admin/*\n\tauthgate @admin {\n\t\tallow_ambiguous_paths\n\t}\n\treverse_proxy %s\n}\n", origin(optPort), optUp.URL))
	base, optOut := origin(port), origin(optPort)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/admin;x/secret", 400},
		{"/admin%00/secret", 400},
		{"/admin%252fsecret", 400},
		{"/%2561dmin/secret", 400},
		{"/admin\\secret", 400},
		{"/admin%2fsecret", 400},
		{"/admin%5Csecret", 400},
		{"/a%20b", 200},
		{"/caf%C3%A9", 200},
		{"/search?q=a;b", 200},
		{"/admin/secret", 302},
	} {
		n := up.Count()
		if got := rawGet(t, base, tc.path); got != tc.status {
			t.Errorf("GET %s: %d, want %d", tc.path, got, tc.status)
		}
		if tc.status == 400 && up.Count() != n {
			t.Errorf("GET %s reached the upstream", tc.path)
		}
		if tc.status == 400 {
			// Served as Caddy's matchers read it: to the upstream or, where
			// the decoded path is /admin/…, to sign in.
			if got := rawGet(t, optOut, tc.path); got == 400 {
				t.Errorf("with allow_ambiguous_paths, GET %s: 400, want it served", tc.path)
			}
		}
	}
}

// rawGet sends a request line exactly as written (Go's client would clean
// the path) and returns the status.
func rawGet(t *testing.T, base, path string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nConnection: close\r\n\r\n", path, strings.TrimPrefix(base, "http://"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestVerifyAppliesSiteRules: /.auth/verify answers as the site it is served
// on would: its require lines (403) and its header lines.
func TestVerifyAppliesSiteRules(t *testing.T) {
	base, _, _ := credentialsSite(t, "authgate {\n\t\trequire email alice@example.com\n\t\theader X-Who `token.name`\n\t}", "", aliceUser, bobUser)
	alice := newBrowser(t)
	wantLocation(t, alice.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")
	r := alice.api(base + "/.auth/verify")
	wantStatus(t, r, http.StatusOK)
	if got := r.Header.Get("X-Who"); got != "Alice Example" {
		t.Errorf("/.auth/verify X-Who = %q, want the site's header line", got)
	}
	bob := newBrowser(t)
	wantLocation(t, bob.signInCredentials(base, base+"/", "bob", bobUser.Password), base+"/")
	wantStatus(t, bob.navigate(base+"/x"), http.StatusForbidden)
	if r := bob.api(base + "/.auth/verify"); r.StatusCode != http.StatusForbidden || r.Header.Get("X-Who") != "" {
		t.Errorf("bob at /.auth/verify: %d X-Who %q, want 403 without identity", r.StatusCode, r.Header.Get("X-Who"))
	}
}

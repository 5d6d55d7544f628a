package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestBehindProxy: behind a TLS-terminating proxy that Caddy trusts
// (trusted_proxies), cookies are Secure with their prefixes and callback URLs
// are https on the proxy's host; from a peer Caddy does not trust, the same
// X-Forwarded-* headers change nothing.
func TestBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers string
		trusted bool
	}{
		{"trusted", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n", true},
		{"not trusted", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testcaddy.FreePort(t)
			base := origin(port)
			up := testsite.NewUpstream(t, testsite.OK)
			c := testcaddy.Start(t, globalOptions(tc.servers, testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser)))+siteBlock(port, "authgate", up.URL))
			defer c.Stop()
			b := newBrowser(t)
			fwd := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com"}

			r := b.api(base+"/.auth/csrf", fwd...)
			wantStatus(t, r, http.StatusOK)
			var secureCookie bool
			for _, sc := range r.Cookies() {
				if strings.HasPrefix(sc.Name, "__Host-") && sc.Secure {
					secureCookie = true
				}
			}
			if secureCookie != tc.trusted {
				t.Errorf("CSRF cookie Secure with __Host-: %v, want %v (Set-Cookie %v)", secureCookie, tc.trusted, r.Header.Values("Set-Cookie"))
			}

			r = b.api(base+"/.auth/providers", fwd...)
			var ps map[string]map[string]string
			if err := json.Unmarshal([]byte(r.Body), &ps); err != nil {
				t.Fatalf("/.auth/providers: %v: %s", err, r.Body)
			}
			want := base + "/.auth/callback/credentials"
			if tc.trusted {
				want = "https://app.example.com/.auth/callback/credentials"
			}
			if got := ps["credentials"]["callbackUrl"]; got != want {
				t.Errorf("callbackUrl = %q, want %q", got, want)
			}
		})
	}
}

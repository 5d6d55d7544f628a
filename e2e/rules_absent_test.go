package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestRulesAbsentFieldNeverGrantsAccess signs in with a real OpenID Provider
// whose accounts do or do not have a `groups` claim: `deny !("staff" in
// profile.groups)` denies the one without groups (it used to let them in: the
// absent key made the whole condition false), a `require` on a claim the
// token lacks refuses, and each refusal by a rule is logged at info with the
// rule's file:line, the user and the client IP, on every request.
func TestRulesAbsentFieldNeverGrantsAccess(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := testidp.Start(t, testidp.Options{
		Clients: []testidp.Client{{ID: "sso-client", Secret: "sso-client-secret", RedirectURIs: []string{base + "/.auth/callback/sso"}}},
		Accounts: map[string]map[string]any{
			"staff":    {"email": "staff@example.com", "email_verified": true, "name": "Staff", "groups": []string{"staff"}},
			"nogroups": {"email": "nogroups@example.com", "email_verified": true, "name": "No Groups"},
		},
	})
	up := testsite.NewUpstream(t, testsite.OK)
	cfg := globalBlock(oidcProvider("sso", idp.Issuer)+ticks(`
		callbacks {
			sign_in {
				deny ´!("staff" in profile.groups)´
				allow domain example.com
			}
			jwt {
				set groups ´profile.groups´
			}
		}
`)) + ticks(fmt.Sprintf(`%[1]s {
	handle /admin/* {
		authgate {
			require ´!("contractors" in token.groups) && "admins" in token.groups´
		}
		reverse_proxy %[2]s
	}
	handle {
		authgate
		reverse_proxy %[2]s
	}
}
`, base, up.URL))
	caddy := testcaddy.Start(t, cfg)
	denyRule, requireRule := "Caddyfile:"+lineOf(t, cfg, `deny `+bt), "Caddyfile:"+lineOf(t, cfg, `require `+bt)

	t.Run("a user without groups is denied", func(t *testing.T) {
		b, r := signInAs(t, base, base+"/app", "nogroups")
		wantNoSetCookie(t, r, sessionCookie)
		wantErrorPage(t, b, base, r, "AccessDenied", http.StatusForbidden)
		if !caddy.LogContains(`"error_code":"AccessDenied"`, `"rule":"`+denyRule+`"`, `"email":"nogroups@example.com"`, `"client_ip":"127.0.0.1"`) {
			t.Errorf("the denial is not logged with its rule %s, email and client IP:\n%s", denyRule, caddy.Logs())
		}
	})

	t.Run("a require on an absent claim refuses, and says so each time", func(t *testing.T) {
		b, r := signInAs(t, base, base+"/app", "staff")
		wantLocation(t, r, base+"/app")
		wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
		before := up.Count()
		for range 2 {
			wantStatus(t, b.api(base+"/admin/x"), http.StatusForbidden)
		}
		if up.Count() != before {
			t.Error("a refused request reached the upstream")
		}
		logged := caddy.LogCount(`"msg":"request refused by a rule"`, `"rule":"`+requireRule+`"`, `"email":"staff@example.com"`, `"client_ip":"127.0.0.1"`, `"level":"info"`)
		if logged != 2 {
			t.Errorf("%d refusals logged with rule %s, email and client IP, want 2:\n%s", logged, requireRule, caddy.Logs())
		}
	})
}

// lineOf is the 1-based number of the first line of text containing part.
func lineOf(t *testing.T, text, part string) string {
	t.Helper()
	for i, line := range strings.Split(text, "\n") {
		if strings.Contains(line, part) {
			return fmt.Sprint(i + 1)
		}
	}
	t.Fatalf("no line contains %q", part)
	return ""
}

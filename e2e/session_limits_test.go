package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// postSession posts Auth.js's update(data) as JSON and returns the answer.
func (b *browser) postSession(base string, data any) response {
	b.t.Helper()
	body, _ := json.Marshal(map[string]any{"csrfToken": b.csrfToken(base), "data": data})
	req, err := http.NewRequest(http.MethodPost, base+"/.auth/session", strings.NewReader(string(body)))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return b.do(req)
}

// TestSessionTooLarge: an update that would make the session cookie larger
// than 12 KB is refused with 413, and the old session stays usable (sign-out
// included); a small update still works.
func TestSessionTooLarge(t *testing.T) {
	rules := `
		callbacks {
			sign_in {
				default allow
			}
			jwt {
				set theme ` + bt + `session.theme` + bt + ` ` + bt + `trigger == "update"` + bt + `
			}
			session {
				set theme ` + bt + `token.theme` + bt + `
			}
		}`
	base, _, _ := credentialsSite(t, "authgate", rules, aliceUser)
	b := newBrowser(t)
	wantLocation(t, b.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")
	before := b.cookie(base, sessionCookie)

	r := b.postSession(base, map[string]any{"theme": strings.Repeat("x", 30<<10)})
	if r.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "SessionTooLarge") {
		t.Fatalf("a 30 KB update: %d %s, want 413 SessionTooLarge", r.StatusCode, r.Body)
	}
	if len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("the refused update set cookies: %v", r.Header.Values("Set-Cookie"))
	}
	if b.cookie(base, sessionCookie) != before {
		t.Error("the refused update replaced the session cookie")
	}
	wantStatus(t, b.navigate(base+"/app"), http.StatusOK)

	// The control: a small update is taken.
	r = b.postSession(base, map[string]any{"theme": "dark"})
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, `"theme":"dark"`) {
		t.Errorf("a small update answered %s, want the new theme", r.Body)
	}
	wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
	wantRedirect(t, b.signOut(base))
}

// TestDatabaseSessionUpdateSeesUser: with database sessions, POST
// /.auth/session answers with what the session callback derives from the
// stored user, as GET does.
func TestDatabaseSessionUpdateSeesUser(t *testing.T) {
	rules := `
		session {
			strategy database
		}
		callbacks {
			sign_in {
				default allow
			}
			session {
				set user.uid ` + bt + `user.id` + bt + `
			}
		}`
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	c := testcaddy.Start(t, globalBlock("\t\turl "+base+"\n"+emailProvider("", "log")+rules)+siteBlock(port, "authgate", up.URL))
	b := newBrowser(t)
	wantLinkSent(t, b, base, b.requestLink(base, "email", "carol@example.com", base+"/app"), "email")
	wantLocation(t, b.navigate(latestLogLink(t, c, "carol@example.com", callbackPrefix(base, "email"))), base+"/app")

	get := b.api(base + "/.auth/session")
	var g map[string]any
	if err := json.Unmarshal([]byte(get.Body), &g); err != nil {
		t.Fatal(err)
	}
	uid, _ := g["user"].(map[string]any)["uid"].(string)
	if uid == "" {
		t.Fatalf("GET /.auth/session = %s, want user.uid", get.Body)
	}
	post := b.postSession(base, map[string]any{"x": 1})
	wantStatus(t, post, http.StatusOK)
	if !strings.Contains(post.Body, fmt.Sprintf(`"uid":%q`, uid)) {
		t.Errorf("POST /.auth/session = %s, want user.uid %s as in GET", post.Body, uid)
	}
}

// TestRealmsKeepTheirSessions: two realms with the same secret: a user of one
// is no user of the other, because named realms have cookies of their own.
func TestRealmsKeepTheirSessions(t *testing.T) {
	port, corpPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
	up := testsite.NewUpstream(t, testsite.OK)
	users := testsite.UsersFile(t, aliceUser, bobUser)
	testcaddy.Start(t, fmt.Sprintf(`{
	authgate {
		secret %[1]s
		%[2]s
	}
	authgate corp {
		secret %[1]s
		%[2]s
	}
}
%[3]s {
	authgate
	reverse_proxy %[5]s
}
%[4]s {
	authgate corp
	reverse_proxy %[5]s
}
`, testSecret, testsite.CredentialsProvider(users), strings.Replace(origin(port), "127.0.0.1", "localhost", 1), origin(corpPort), up.URL))
	def := strings.Replace(origin(port), "127.0.0.1", "localhost", 1)
	corp := origin(corpPort)
	b := newBrowser(t)
	wantLocation(t, b.signInCredentials(corp, corp+"/", "bob", bobUser.Password), corp+"/")
	if names := b.cookieNames(corp); !containsName(names, "authgate.corp.session-token") {
		t.Fatalf("corp's session cookie: %v, want authgate.corp.session-token", names)
	}
	// bob of the default realm, his cookie carried to corp's site (as a shared
	// cookie domain would), is no user there.
	bob := newBrowser(t)
	wantLocation(t, bob.signInCredentials(def, def+"/", "bob", bobUser.Password), def+"/")
	tok := bob.cookie(def, sessionCookie)
	if tok == "" {
		t.Fatal("no session cookie at the default realm's site")
	}
	wantStatus(t, bob.navigate(def+"/x"), http.StatusOK)
	carried := newBrowser(t)
	carried.setCookie(corp, sessionCookie, tok)
	wantSignInRedirect(t, carried.navigate(corp+"/x"), corp+"/x")
}

func containsName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// TestReloadKeepsState: after a sign-out, `caddy reload` — the same config
// forced, or a changed one — keeps the revocation and the users, with the
// memory, bolt and Redis stores.
func TestReloadKeepsState(t *testing.T) {
	for _, kind := range []string{"memory", "bolt", "redis"} {
		t.Run(kind, func(t *testing.T) {
			storeLine := "store " + kind
			if kind == "redis" {
				rs := testredis.NewServer(t)
				storeLine = "store redis redis://" + rs.Addr + "/0"
			}
			port := testcaddy.FreePort(t)
			base := origin(port)
			up := testsite.NewUpstream(t, testsite.OK)
			config := func(extra string) string {
				return globalBlock("\t\turl "+base+"\n\t\t"+storeLine+"\n"+emailProvider("", "log")+extra) + siteBlock(port, "authgate", up.URL)
			}
			c := testcaddy.Start(t, config(""))
			b := newBrowser(t)
			sub := wantStoredUserID(t, b.signInByLink(c, base, "dave@example.com", base+"/app"))
			stolen := b.cookie(base, sessionCookie)
			wantRedirect(t, b.signOut(base))

			c.Reload(t, config(""), true)
			c.Reload(t, config("\t\tbase_path /.auth\n"), false)
			waitServedAfterReload(t, base+"/app", http.StatusUnauthorized)

			thief := newBrowser(t)
			thief.setCookie(base, sessionCookie, stolen)
			wantSessionRequired(t, thief.api(base+"/app"), http.StatusUnauthorized)

			// The log file is reopened by the reloads: find the new link by
			// what it is not, rather than by its place in the file.
			used := logLinks(t, c, "dave@example.com", callbackPrefix(base, "email"))
			again := newBrowser(t)
			wantLinkSent(t, again, base, again.requestLink(base, "email", "dave@example.com", base+"/app"), "email")
			var link string
			for _, l := range logLinks(t, c, "dave@example.com", callbackPrefix(base, "email")) {
				if !slices.Contains(used, l) {
					link = l
				}
			}
			r := again.navigate(link)
			wantLocation(t, r, base+"/app")
			if got := wantStoredUserID(t, sessionClaims(t, r)); got != sub {
				t.Errorf("after the reloads dave is another user: %s, before %s", got, sub)
			}
		})
	}
}

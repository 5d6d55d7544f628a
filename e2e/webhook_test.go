package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// hookSecret is the webhooks' shared secret.
const hookSecret = "s3cret"

// hookCall is a request the webhook server received, its signature verified.
type hookCall struct {
	Path    string
	Header  http.Header
	Payload map[string]any
}

// hookServer is a webhook receiver on loopback: it checks each request's
// signature as a receiver would, records it, and answers with decide's status
// and body.
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []hookCall
}

func newHookServer(t *testing.T, decide func(w http.ResponseWriter, r *http.Request, payload map[string]any)) *hookServer {
	t.Helper()
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("webhook: reading the request: %v", err)
			return
		}
		if err := verifySignature(r.Header.Get("X-Authgate-Signature"), body); err != nil {
			t.Errorf("webhook %s: %v", r.URL.Path, err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook %s: %s with Content-Type %q, want a JSON POST", r.URL.Path, r.Method, r.Header.Get("Content-Type"))
		}
		var payload map[string]any
		if err := json.Unmarshal(body, &payload); err != nil {
			t.Errorf("webhook %s: body %q: %v", r.URL.Path, body, err)
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.calls = append(h.calls, hookCall{Path: r.URL.Path, Header: r.Header.Clone(), Payload: payload})
		h.mu.Unlock()
		decide(w, r, payload)
	}))
	t.Cleanup(h.Close)
	return h
}

// verifySignature checks X-Authgate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
// "<t>.<body>")>, with an HMAC of its own and against callbacks.Sign.
func verifySignature(header string, body []byte) error {
	ts, mac, ok := strings.Cut(header, ",")
	ts, ok1 := strings.CutPrefix(ts, "t=")
	mac, ok2 := strings.CutPrefix(mac, "v1=")
	if !ok || !ok1 || !ok2 {
		return fmt.Errorf("X-Authgate-Signature %q: want t=<unix>,v1=<hex>", header)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("X-Authgate-Signature %q: timestamp: %v", header, err)
	}
	got, err := hex.DecodeString(mac)
	if err != nil {
		return fmt.Errorf("X-Authgate-Signature %q: %v", header, err)
	}
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("X-Authgate-Signature %q does not match the body", header)
	}
	if want := callbacks.Sign([]byte(hookSecret), time.Unix(sec, 0), body); header != want {
		return fmt.Errorf("X-Authgate-Signature %q, callbacks.Sign makes %q", header, want)
	}
	return nil
}

// callsFor returns the calls the server received at path for user id.
func (h *hookServer) callsFor(path, id string) []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookCall
	for _, c := range h.calls {
		if u, _ := c.Payload["user"].(map[string]any); c.Path == path && u["id"] == id {
			out = append(out, c)
		}
	}
	return out
}

// hookUser is a credentials user whose login tells the webhook what to answer.
func hookUser(login string) testsite.User {
	return testsite.User{Login: login, Password: login + "-password-e2e", Name: "User " + login, Email: login + "@example.com"}
}

// TestWebhooks signs users in through a realm whose sign_in and jwt callbacks
// are webhooks on a real HTTP server: its answers allow, deny, redirect or
// defer to the next rule, and a slow, broken or garbled answer refuses the
// sign-in with the Configuration error; a jwt webhook's token is what the
// upstream sees.
func TestWebhooks(t *testing.T) {
	hook := newHookServer(t, func(w http.ResponseWriter, r *http.Request, p map[string]any) {
		u, _ := p["user"].(map[string]any)
		email, _ := u["email"].(string)
		who, _, _ := strings.Cut(email, "@")
		answer := func(v string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, v)
		}
		if r.URL.Path == "/jwt" {
			if p["callback"] == "jwt" && p["trigger"] == "sign_in" && who == "hooked" {
				// iat, exp and jti are authgate's to set: these are ignored.
				answer(`{"token": {"sub": "x", "name": "From Hook", "email": "hook@example.com", "role": "admin", "iat": 1, "exp": 2, "jti": "from-hook"}}`)
			} else {
				answer(`{}`)
			}
			return
		}
		switch who {
		case "allowed", "alice", "hooked":
			answer(`{"allow": true}`)
		case "denied":
			answer(`{"allow": false}`)
		case "redirected":
			answer(`{"redirect": "/request-access"}`)
		case "offsite":
			answer(`{"redirect": "https://evil.example/phish"}`)
		case "undecided":
			answer(`{}`)
		case "slow":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
			answer(`{"allow": true}`)
		case "garbage":
			answer(`{"allow": true} and then some`)
		case "failing":
			http.Error(w, `{"allow": true}`, http.StatusInternalServerError)
		case "notbool":
			answer(`{"allow": "yes"}`)
		default:
			t.Errorf("webhook: unexpected user %q", email)
			answer(`{"allow": false}`)
		}
	})

	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := startRulesIDP(t, base)
	logins := []string{"allowed", "denied", "redirected", "offsite", "undecided", "slow", "garbage", "failing", "notbool", "hooked"}
	var users []testsite.User
	for _, l := range logins {
		users = append(users, hookUser(l))
	}
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, users...))+oidcProvider("sso", idp.Issuer)+
		fmt.Sprintf(`
		callbacks {
			sign_in {
				webhook %[1]s/sign-in {
					secret %[2]s
					timeout 500ms
					header X-Hook-Key key-123
				}
				deny
			}
			jwt {
				webhook %[1]s/jwt {
					secret %[2]s
				}
			}
		}
`, hook.URL, hookSecret))+ticks(fmt.Sprintf(`%s {
	handle /request-access {
		respond "ask an administrator"
	}
	handle {
		authgate {
			header X-Auth-Request-User ´token.sub´
			header X-Auth-Request-Email ´token.email´
			header X-Auth-Request-Name ´token.name´
			header X-Auth-Request-Role ´token.role´
		}
		reverse_proxy %s
	}
}
`, base, up.URL)))

	signIn := func(t *testing.T, login string) (*browser, response) {
		t.Helper()
		b := newBrowser(t)
		r := b.signInCredentials(base, base+"/app", login, hookUser(login).Password)
		if n := len(hook.callsFor("/sign-in", login)); n == 0 {
			t.Errorf("the sign_in webhook was not called for %s", login)
		}
		return b, r
	}
	signedIn := func(t *testing.T, b *browser, r response, headers map[string]string) {
		t.Helper()
		wantLocation(t, r, base+"/app")
		if setCookie(r, sessionCookie) == nil {
			t.Fatalf("no session cookie: %v", r.Header.Values("Set-Cookie"))
		}
		wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
		wantUpstream(t, up, "/app", headers)
	}
	notSignedIn := func(t *testing.T, b *browser, r response) {
		t.Helper()
		wantNoSetCookie(t, r, sessionCookie)
		if b.cookie(base, sessionCookie) != "" {
			t.Fatal("the browser has a session cookie")
		}
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
	}
	identity := func(login string) map[string]string {
		return map[string]string{"x-auth-request-user": login, "x-auth-request-email": login + "@example.com", "x-auth-request-name": "User " + login}
	}

	t.Run("allow", func(t *testing.T) {
		b, r := signIn(t, "allowed")
		signedIn(t, b, r, identity("allowed"))

		// What the webhook received: the callback's variables, signed, with the
		// configured header, and without the password or the CSRF token.
		calls := hook.callsFor("/sign-in", "allowed")
		if len(calls) != 1 {
			t.Fatalf("the sign_in webhook received %d calls for allowed, want 1", len(calls))
		}
		c := calls[0]
		if c.Header.Get("X-Hook-Key") != "key-123" {
			t.Errorf("the webhook request has X-Hook-Key %q, want key-123", c.Header.Get("X-Hook-Key"))
		}
		p := c.Payload
		if p["callback"] != "sign_in" {
			t.Errorf("payload callback %v, want sign_in", p["callback"])
		}
		if u := fmt.Sprint(p["user"]); u != "map[email:allowed@example.com id:allowed name:User allowed]" {
			t.Errorf("payload user %s", u)
		}
		acc, _ := p["account"].(map[string]any)
		if acc["provider"] != "credentials" || acc["type"] != "credentials" || acc["provider_account_id"] != "allowed" {
			t.Errorf("payload account %v", acc)
		}
		creds, _ := p["credentials"].(map[string]any)
		if creds["username"] != "allowed" {
			t.Errorf("payload credentials %v, want the username", creds)
		}
		if _, ok := creds["password"]; ok {
			t.Error("the webhook received the password")
		}
		if _, ok := creds["csrfToken"]; ok {
			t.Error("the webhook received the CSRF token")
		}
		req, _ := p["request"].(map[string]any)
		if req["method"] != "POST" || req["path"] != "/.auth/callback/credentials" {
			t.Errorf("payload request %v", req)
		}
		// The jwt webhook ran too, at sign-in, with the default token.
		jc := hook.callsFor("/jwt", "allowed")
		if len(jc) != 1 {
			t.Fatalf("the jwt webhook received %d calls for allowed, want 1", len(jc))
		}
		tok, _ := jc[0].Payload["token"].(map[string]any)
		if jc[0].Payload["callback"] != "jwt" || jc[0].Payload["trigger"] != "sign_in" || tok["sub"] != "allowed" {
			t.Errorf("jwt webhook payload %v", jc[0].Payload)
		}
	})

	t.Run("allow with OpenID Connect", func(t *testing.T) {
		b := newBrowser(t)
		r := b.signInOIDC(base, "sso", base+"/app", "alice")
		// X-Auth-Request-User is token.sub: the stored user's id.
		sub := wantStoredUserID(t, sessionClaims(t, r))
		signedIn(t, b, r, identityHeaders(sub, "alice@example.com", "Alice Example"))
		calls := hook.callsFor("/sign-in", "alice")
		if len(calls) != 1 {
			t.Fatalf("the sign_in webhook received %d calls for alice, want 1", len(calls))
		}
		p := calls[0].Payload
		acc, _ := p["account"].(map[string]any)
		prof, _ := p["profile"].(map[string]any)
		if acc["provider"] != "sso" || acc["type"] != "oidc" || prof["email"] != "alice@example.com" ||
			fmt.Sprint(prof["groups"]) != "[admins staff]" || prof["department"] != "eng" {
			t.Errorf("the webhook received account %v, profile %v", acc, prof)
		}
	})

	denied := func(t *testing.T, login string) {
		t.Helper()
		before := up.Count()
		b, r := signIn(t, login)
		page := wantErrorPage(t, b, base, r, "AccessDenied", http.StatusForbidden)
		wantNoLeak(t, page.Body, hook.URL)
		notSignedIn(t, b, r)
		if up.Count() != before {
			t.Error("the upstream received a request")
		}
	}
	t.Run("deny", func(t *testing.T) { denied(t, "denied") })
	// {} is no decision: the next rule, deny, decides.
	t.Run("no decision", func(t *testing.T) { denied(t, "undecided") })

	t.Run("redirect", func(t *testing.T) {
		b, r := signIn(t, "redirected")
		wantLocation(t, r, base+"/request-access")
		notSignedIn(t, b, r)
	})
	t.Run("redirect to another origin", func(t *testing.T) {
		b, r := signIn(t, "offsite")
		if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || (loc != base && loc != base+"/") {
			t.Errorf("a webhook redirect to https://evil.example answered %d to %q, want 302 to %s/", r.StatusCode, loc, base)
		}
		notSignedIn(t, b, r)
	})

	// Failures of the webhook refuse the sign-in with Configuration; the page
	// shows nothing of the webhook, the log says what went wrong.
	// The log line names the rule (Caddyfile:<line>) and, when the call
	// itself failed, the webhook's URL.
	for _, tc := range []struct {
		login  string
		logged []string
	}{
		{"slow", []string{hook.URL, "timed out after 500ms"}},
		{"garbage", []string{hook.URL, "not a JSON object"}},
		{"failing", []string{hook.URL, "status 500"}},
		{"notbool", []string{"allow that is not a boolean"}},
	} {
		t.Run("fails closed: "+tc.login, func(t *testing.T) {
			parts := append([]string{`"error_code":"Configuration"`, `"error":"Caddyfile:`}, tc.logged...)
			before := caddy.LogCount(parts...)
			b, r := signIn(t, tc.login)
			page := wantErrorPage(t, b, base, r, "Configuration", http.StatusInternalServerError)
			wantNoLeak(t, page.Body, hook.URL, "webhook", "deadline", "timed out", "status 500", "JSON", "boolean", hookSecret)
			notSignedIn(t, b, r)
			if caddy.LogCount(parts...) <= before {
				t.Errorf("no log line has all of %q", parts)
			}
		})
	}

	t.Run("jwt webhook replaces the token", func(t *testing.T) {
		b, r := signIn(t, "hooked")
		signedIn(t, b, r, map[string]string{
			"x-auth-request-user": "x", "x-auth-request-email": "hook@example.com",
			"x-auth-request-name": "From Hook", "x-auth-request-role": "admin",
		})
		claims, err := codec(t, testSecret, sessionCookie).Decode(b.cookie(base, sessionCookie), time.Now())
		if err != nil {
			t.Fatalf("decoding the session cookie: %v", err)
		}
		for k, want := range map[string]any{"sub": "x", "name": "From Hook", "email": "hook@example.com", "role": "admin"} {
			if claims[k] != want {
				t.Errorf("session token %s = %v, want %v", k, claims[k], want)
			}
		}
		// iat, exp and jti stay authgate's (Decode checked exp and iat).
		if jti, _ := claims["jti"].(string); jti == "" || jti == "from-hook" {
			t.Errorf("session token jti %v, want authgate's", claims["jti"])
		}
		u := sessionUser(t, sessionOf(t, b, base))
		if u["name"] != "From Hook" || u["email"] != "hook@example.com" {
			t.Errorf("/.auth/session user %v, want the webhook's identity", u)
		}
	})
}

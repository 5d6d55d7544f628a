package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testenv"
)

// TestAuthJSInterop runs a realm whose cookie is Auth.js's: the session cookie
// authgate sets decodes with @auth/core's own decode(), and a token made by
// @auth/core's encode() is a session at authgate.
func TestAuthJSInterop(t *testing.T) {
	a := testenv.NeedAuthJS(t)
	const name = "authjs.session-token"
	base, up, _ := credentialsSite(t, "authgate", "\t\tcookie {\n\t\t\tname "+name+"\n\t\t}\n", aliceUser)

	t.Run("authgate to Auth.js", func(t *testing.T) {
		b := newBrowser(t)
		r := b.signInCredentials(base, base+"/", "alice", aliceUser.Password)
		wantLocation(t, r, base+"/")
		c := setCookie(r, name)
		if c == nil {
			t.Fatalf("no %s cookie: %v", name, r.Header.Values("Set-Cookie"))
		}
		wantCookieAttrs(t, c, sessionMaxAge)
		if setCookie(r, sessionCookie) != nil {
			t.Errorf("the realm also set %s", sessionCookie)
		}
		out, err := a.Run(t, "decode", testSecret, name, c.Value)
		if err != nil {
			t.Fatalf("@auth/core cannot decode authgate's cookie: %v", err)
		}
		var claims map[string]any
		if err := json.Unmarshal([]byte(out), &claims); err != nil {
			t.Fatalf("@auth/core's output %q: %v", out, err)
		}
		for k, want := range map[string]any{"sub": "alice", "name": "Alice Example", "email": "alice@example.com"} {
			if claims[k] != want {
				t.Errorf("@auth/core decoded %s = %v, want %v", k, claims[k], want)
			}
		}
		for _, k := range []string{"iat", "exp", "jti"} {
			if _, ok := claims[k]; !ok {
				t.Errorf("@auth/core decoded no %s: %v", k, claims)
			}
		}
		if _, err := a.Run(t, "decode", testSecret, sessionCookie, c.Value); err == nil {
			t.Error("@auth/core decoded the cookie with another cookie name as salt")
		}
	})

	t.Run("Auth.js to authgate", func(t *testing.T) {
		claims, _ := json.Marshal(map[string]any{"sub": "nextjs-user", "name": "Next User", "email": "next@example.com", "picture": "https://example.com/n.png"})
		token, err := a.Run(t, "encode", testSecret, name, string(claims))
		if err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t)
		b.setCookie(base, name, token)
		wantStatus(t, b.navigate(base+"/from-nextjs"), http.StatusOK)
		wantAuthHeaders(t, up.Last(t), map[string]string{
			"x-auth-request-user": "nextjs-user", "x-auth-request-email": "next@example.com", "x-auth-request-name": "Next User",
		})
		wantNoAuthCookies(t, up.Last(t), name)
		r := b.api(base + "/.auth/session")
		var sess struct{ User map[string]any }
		if err := json.Unmarshal([]byte(r.Body), &sess); err != nil || sess.User["name"] != "Next User" ||
			sess.User["email"] != "next@example.com" || sess.User["image"] != "https://example.com/n.png" {
			t.Errorf("/.auth/session = %s", r.Body)
		}

		// Encoded for authgate's default cookie name, it is not this realm's.
		other, err := a.Run(t, "encode", testSecret, sessionCookie, string(claims))
		if err != nil {
			t.Fatal(err)
		}
		before := up.Count()
		b = newBrowser(t)
		b.setCookie(base, name, other)
		r = b.navigate(base + "/from-nextjs")
		wantSignInRedirect(t, r, base+"/from-nextjs")
		wantCleared(t, r, name)
		if up.Count() != before {
			t.Error("a token for another cookie name reached the upstream")
		}
	})
}

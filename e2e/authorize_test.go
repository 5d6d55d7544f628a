package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestCredentialsAuthorizeEndpoint signs in with a credentials provider whose
// check is the operator's HTTP service (authorize_url): it gets the POSTed
// form as JSON, without the CSRF token and the callback URL; a user object
// signs in, with its extra fields for the rules; 401 and 403 are wrong
// credentials; a slow, failing or garbled answer, or a user without an id, is
// the Configuration error.
func TestCredentialsAuthorizeEndpoint(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any // what the endpoint received, in order
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var fields map[string]any
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &fields) != nil {
			t.Errorf("authorize endpoint: %s %q %q, want a JSON object POSTed", r.Method, r.Header.Get("Content-Type"), body)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, fields)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch fields["username"] {
		case "u1":
			if fields["password"] != "right-password" {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"error":"wrong password"}`)
				return
			}
			_, _ = io.WriteString(w, `{"id":"u1","name":"U One","email":"u1@example.com","role":"admin"}`)
		case "numeric":
			_, _ = io.WriteString(w, `{"id":42,"name":"Forty Two"}`)
		case "locked":
			w.WriteHeader(http.StatusForbidden)
		case "slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, `{"id":"slow"}`)
		case "garbage":
			_, _ = io.WriteString(w, `{"id":"garbage"} and then some`)
		case "failing":
			http.Error(w, `{"id":"failing"}`, http.StatusInternalServerError)
		case "noid":
			_, _ = io.WriteString(w, `{"name":"No Id","email":"noid@example.com"}`)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(ep.Close)
	last := func(t *testing.T) map[string]any {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			t.Fatal("the authorize endpoint received no request")
		}
		return got[len(got)-1]
	}

	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock(fmt.Sprintf(`
		provider credentials {
			authorize_url %s/authorize
			timeout 500ms
		}
		callbacks {
			jwt {
				set role %suser.role%s
			}
		}
`, ep.URL, bt, bt))+siteBlock(port, "authgate", up.URL))

	// signIn posts the credentials form with the fields.
	signIn := func(t *testing.T, fields url.Values) (*browser, response) {
		t.Helper()
		b := newBrowser(t)
		f := b.signInForm(base, base+"/app", "/.auth/callback/credentials")
		for k, v := range fields {
			f.Values[k] = v
		}
		return b, b.post(base+f.Action, f.Values)
	}

	t.Run("good credentials", func(t *testing.T) {
		b, r := signIn(t, url.Values{"username": {"u1"}, "password": {"right-password"}, "otp": {"123456"}})
		wantLocation(t, r, base+"/app")
		// The endpoint got the form's fields, and not authgate's own.
		want := map[string]any{"username": "u1", "password": "right-password", "otp": "123456"}
		if f := last(t); fmt.Sprint(f) != fmt.Sprint(want) {
			t.Errorf("the authorize endpoint received %v, want %v", f, want)
		}
		// sub is the endpoint's user id; the jwt rule read its extra field.
		claims := sessionClaims(t, r)
		for k, want := range map[string]any{"sub": "u1", "name": "U One", "email": "u1@example.com", "role": "admin"} {
			if claims[k] != want {
				t.Errorf("session token %s = %v, want %v", k, claims[k], want)
			}
		}
		wantStatus(t, b.navigate(base+"/app"), http.StatusOK)
		wantUpstream(t, up, "/app", identityHeaders("u1", "u1@example.com", "U One"))
	})

	// An integer id is the user's id too.
	t.Run("numeric id", func(t *testing.T) {
		_, r := signIn(t, url.Values{"username": {"numeric"}, "password": {"any-password"}})
		wantLocation(t, r, base+"/app")
		if claims := sessionClaims(t, r); claims["sub"] != "42" || claims["name"] != "Forty Two" {
			t.Errorf("session token %v, want sub 42, name Forty Two", claims)
		}
	})

	for _, tc := range []struct{ name, username, password string }{
		{"wrong password (401)", "u1", "wrong-password"},
		{"refused (403)", "locked", "any-password"},
		{"unknown user (401)", "nobody", "any-password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.Count()
			b, r := signIn(t, url.Values{"username": {tc.username}, "password": {tc.password}})
			wantLocation(t, r, "/.auth/signin?error=CredentialsSignin&callbackUrl="+url.QueryEscape(base+"/app"))
			wantNoSetCookie(t, r, sessionCookie)
			if f := last(t); f["username"] != tc.username {
				t.Errorf("the authorize endpoint's last request was for %v, want %s", f["username"], tc.username)
			}
			page := b.navigate(base + r.Header.Get("Location"))
			wantStatus(t, page, http.StatusOK)
			if !strings.Contains(pageText(t, page.Body), "Sign in failed. Check the username and password you entered.") {
				t.Errorf("the sign-in page does not show the CredentialsSignin message: %s", pageText(t, page.Body))
			}
			wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
			if up.Count() != before {
				t.Error("the upstream received a request")
			}
		})
	}

	// The endpoint failing is not the user's fault: Configuration, logged.
	for _, tc := range []struct{ username, logged string }{
		{"slow", "authorize endpoint"},
		{"garbage", "not a JSON user object"},
		{"failing", "status 500"},
		{"noid", "has no id"},
	} {
		t.Run("fails closed: "+tc.username, func(t *testing.T) {
			before := caddy.LogCount(`"error_code":"Configuration"`, tc.logged)
			b, r := signIn(t, url.Values{"username": {tc.username}, "password": {"any-password"}})
			wantNoSetCookie(t, r, sessionCookie)
			page := wantErrorPage(t, b, base, r, "Configuration", http.StatusInternalServerError)
			wantNoLeak(t, page.Body, ep.URL, "authorize", "status 500", "JSON", "deadline")
			if caddy.LogCount(`"error_code":"Configuration"`, tc.logged) <= before {
				t.Errorf("no Configuration log line says %q", tc.logged)
			}
			wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
		})
	}
}

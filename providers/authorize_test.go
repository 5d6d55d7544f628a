package providers

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// newAuthorizeFake is a credentials provider whose authorize_url is h.
func newAuthorizeFake(t *testing.T, h http.HandlerFunc) *Credentials {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	p, err := New(t.Context(), Config{Kind: "credentials", AuthorizeURL: s.URL, Timeout: caddy.Duration(200 * time.Millisecond)}, s.Client(), zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p.(*Credentials)
}

func TestAuthorizeEndpoint(t *testing.T) {
	var got map[string]string
	p := newAuthorizeFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
			t.Errorf("%s with Content-Type %q, Accept %q; want a JSON POST asking for JSON", r.Method, r.Header.Get("Content-Type"), r.Header.Get("Accept"))
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		answer(http.StatusOK, `{"id": 42, "name": "Ann", "role": "admin"}`)(w, r)
	})
	u, err := p.AuthorizeFields(t.Context(), map[string]string{"username": "ann", "password": "pw", "otp": "123"})
	if err != nil {
		t.Fatal(err)
	}
	if u["id"] != "42" || u["name"] != "Ann" || u["email"] != "" || u["role"] != "admin" {
		t.Errorf("user = %v, want id 42 as a string, the name and the extra role", u)
	}
	if got["username"] != "ann" || got["password"] != "pw" || got["otp"] != "123" {
		t.Errorf("the endpoint received %v, want every field", got)
	}
}

func TestAuthorizeEndpointRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string // "" for ErrCredentials
	}{
		{"401", answer(http.StatusUnauthorized, `{"error":"no"}`), ""},
		{"403", answer(http.StatusForbidden, ``), ""},
		{"500", answer(http.StatusInternalServerError, `{"id":"ann"}`), "authorize endpoint: status 500"},
		{"redirect", answer(http.StatusFound, ``), "status 302"},
		{"garbage", answer(http.StatusOK, `ok`), "not a JSON user object"},
		{"null", answer(http.StatusOK, `null`), "not a JSON user object"},
		{"array", answer(http.StatusOK, `[{"id":"ann"}]`), "not a JSON user object"},
		{"no id", answer(http.StatusOK, `{"name":"Ann"}`), "has no id"},
		{"too large", answer(http.StatusOK, `{"id":"ann","x":"`+strings.Repeat("a", maxResponse)+`"}`), "larger than"},
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			// The body is unread, so the server may not notice the client leave.
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}, "authorize endpoint: context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newAuthorizeFake(t, tc.handler)
			u, err := p.AuthorizeFields(t.Context(), map[string]string{"username": "ann", "password": "pw"})
			if u != nil {
				t.Errorf("user %v along with the refusal", u)
			}
			if tc.want == "" {
				if !errors.Is(err, ErrCredentials) {
					t.Errorf("error %v, want ErrCredentials", err)
				}
				return
			}
			errContains(t, err, tc.want)
			if errors.Is(err, ErrCredentials) {
				t.Errorf("error %v is ErrCredentials: the endpoint's failure would be the user's", err)
			}
		})
	}
}

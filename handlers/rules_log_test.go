package handlers

import (
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/caddy-authgate/callbacks"
)

// TestRequireRefusalIsLogged: every request a require line refuses is logged
// at info with the line's file:line, the user and the client IP — the second
// too, whose refusal comes from the token's cached view.
func TestRequireRefusalIsLogged(t *testing.T) {
	rl := benchRealm(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	rl.logger = zap.New(core).With(zap.String("realm", rl.name))
	h := benchHandler(t, rl, &Handler{Require: []callbacks.Condition{
		{Expr: `token.email.endsWith("@example.com")`, Source: "Caddyfile:8"},
		{Expr: `!("contractors" in token.groups)`, Source: "Caddyfile:9"},
	}})
	c := sessionCookie(t, rl, aliceClaims)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("a refused request reached the next handler")
		return nil
	})
	for range 2 {
		w := &discard{h: http.Header{}}
		if err := h.ServeHTTP(w, benchRequest(c), next); err != nil {
			t.Fatal(err)
		}
		if w.status != http.StatusForbidden {
			t.Errorf("status %d, want 403", w.status)
		}
	}
	refusals := logs.FilterMessage("request refused by a rule").All()
	if len(refusals) != 2 {
		t.Fatalf("%d refusals logged, want 2: %v", len(refusals), logs.All())
	}
	for _, e := range refusals {
		f := e.ContextMap()
		if e.Level != zapcore.InfoLevel || f["rule"] != "Caddyfile:9" || f["realm"] != DefaultRealm || f["user_id"] != "alice" ||
			f["email"] != "alice@example.com" || f["client_ip"] != "192.0.2.1" {
			t.Errorf("logged %s %v", e.Level, f)
		}
	}
}

// TestUnknownKeysWarnAtProvision: the session rules and the site's require and
// header lines that read keys nothing sets are warned of when compiled.
func TestUnknownKeysWarnAtProvision(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	logger := zap.New(core)
	cb, err := compileCallbacks(&callbacks.Config{Session: []callbacks.Rule{
		{Action: "set", Args: []string{"user.role", "token.rol"}, Source: "Caddyfile:20"},
	}}, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	rl := benchRealm(t, nil)
	rl.cb, rl.logger = cb, logger
	benchHandler(t, rl, &Handler{
		Require: []callbacks.Condition{{Expr: `session.user.emial.endsWith("@example.com")`, Source: "Caddyfile:30"}},
		Headers: []HeaderConfig{{Name: "X-Team", Expr: "token.team"}},
	})
	got := map[string]string{}
	for _, e := range logs.All() {
		f := e.ContextMap()
		got[f["key"].(string)] = f["rule"].(string) + " " + fmtAny(f["header"])
	}
	want := map[string]string{"token.rol": "Caddyfile:20 ", "session.user.emial": "Caddyfile:30 ", "token.team": " X-Team"}
	if len(got) != len(want) {
		t.Errorf("warnings %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("warning for %s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

func fmtAny(v any) string {
	s, _ := v.(string)
	return s
}

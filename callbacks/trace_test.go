package callbacks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
)

// TestTrace: an evaluation with a Trace records each rule it looked at, with
// its source, its text and what it did, and calls webhooks only when asked.
func TestTrace(t *testing.T) {
	var calls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = w.Write([]byte(`{"allow": false}`))
	}))
	defer hook.Close()
	c := mustCallbacks(t, Config{
		SignIn: []Rule{
			rule("1", "deny", nil, ifShort("email", "intern@example.com")),
			rule("2", "webhook", args(hook.URL), nil),
			rule("3", "allow", nil, ifCEL(`"admins" in profile.groups`)),
			rule("4", "redirect", args("/request-access"), ifCEL(`!("staff" in profile.groups)`)),
		},
		JWT: []Rule{
			rule("10", "set", args("role", `profile.role`), nil),
			rule("11", "set", args("org", `profile.org`), nil),
			rule("12", "unset", args("picture"), ifCEL(`trigger == "update"`)),
		},
	})
	in := SignInInput{User: map[string]any{"email": "eve@example.com"}, Profile: map[string]any{}}

	tr := &Trace{}
	d, err := c.SignIn(WithTrace(context.Background(), tr), in)
	if err != nil {
		t.Fatal(err)
	}
	if d.String() != "redirect /request-access" {
		t.Errorf("decision %s", d)
	}
	want := []Step{
		{"Caddyfile:1", "deny email intern@example.com", "does not match"},
		{"Caddyfile:2", "webhook " + hook.URL, "matches: webhook not called"},
		{"Caddyfile:3", "allow `\"admins\" in profile.groups`", "does not match (no such key: groups)"},
		{"Caddyfile:4", "redirect /request-access `!(\"staff\" in profile.groups)`", "matches (no such key: groups, which decides against the user)"},
	}
	if !reflect.DeepEqual(tr.Steps, want) {
		t.Errorf("steps:\n%v\nwant\n%v", tr.Steps, want)
	}
	if calls.Load() != 0 {
		t.Errorf("the webhook was called %d times without Trace.Webhooks", calls.Load())
	}

	tr = &Trace{Webhooks: true}
	if d, _ := c.SignIn(WithTrace(context.Background(), tr), in); d.String() != "deny" || calls.Load() != 1 {
		t.Errorf("with Webhooks: decision %s after %d calls, want deny after 1", d, calls.Load())
	}
	if got := tr.Steps[1].Result; got != "matches: webhook answered deny" {
		t.Errorf("webhook step: %q", got)
	}

	tr = &Trace{}
	if _, err := c.JWT(WithTrace(context.Background(), tr), JWTInput{Token: map[string]any{"picture": "p"}, Profile: map[string]any{"role": "admin"}, Trigger: "update"}); err != nil {
		t.Fatal(err)
	}
	want = []Step{
		{"Caddyfile:10", "set role `profile.role`", "matches: role = \"admin\""},
		{"Caddyfile:11", "set org `profile.org`", "matches: nothing set (no such key: org)"},
		{"Caddyfile:12", "unset picture `trigger == \"update\"`", "matches: picture removed"},
	}
	if !reflect.DeepEqual(tr.Steps, want) {
		t.Errorf("jwt steps:\n%v\nwant\n%v", tr.Steps, want)
	}

	k, err := CompileCheck(Condition{Expr: `"admins" in token.groups`, Source: "Caddyfile:20"}, "require #1")
	if err != nil {
		t.Fatal(err)
	}
	tr = &Trace{}
	if ok, _ := k.Explain(tr, map[string]any{"token": map[string]any{}}); ok {
		t.Error("require holds without groups")
	}
	if want := []Step{{"Caddyfile:20", "require `\"admins\" in token.groups`", "fails (no such key: groups)"}}; !reflect.DeepEqual(tr.Steps, want) {
		t.Errorf("require steps: %v, want %v", tr.Steps, want)
	}
	if k.Source() != "Caddyfile:20" {
		t.Errorf("Source = %q, want the condition's own", k.Source())
	}
}

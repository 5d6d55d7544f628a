package callbacks

import (
	"reflect"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestUnknownKeysIn: a route expression that reads a token or session key no
// default and no rule can set is reported with the keys that do exist there;
// a webhook that may reshape the token or the session silences it.
func TestUnknownKeysIn(t *testing.T) {
	setRole := rule("20", "set", args("role", `profile.role`), nil)
	setProfile := rule("21", "set", args("org", `profile.org`), nil)
	sessionSetID := rule("30", "set", args("user.id", "token.sub"), nil)
	hook := func(line string) Rule { return rule(line, "webhook", args("http://localhost:9000/hook"), nil) }
	sessionKeys := []string{"session.expires", "session.user"}
	userKeys := []string{"session.user.email", "session.user.image", "session.user.name"}
	for _, tc := range []struct {
		name string
		cfg  Config
		cond Condition
		want []UnknownKey // Source is Caddyfile:3
	}{
		{"default session key", Config{}, Condition{Expr: `session.user.email.endsWith("@example.com")`}, nil},
		{"typo in a session key", Config{}, Condition{Expr: `session.user.emial.endsWith("@example.com")`},
			[]UnknownKey{{Key: "session.user.emial", Known: userKeys}}},
		{"typo at the top of the session", Config{}, Condition{Expr: `session.usr.email == "a"`},
			[]UnknownKey{{Key: "session.usr.email", Known: sessionKeys}}},
		{"index form", Config{}, Condition{Expr: `session["user"]["emial"] == "a"`},
			[]UnknownKey{{Key: "session.user.emial", Known: userKeys}}},
		{"has() of an unknown key", Config{}, Condition{Expr: `has(session.user.emial)`},
			[]UnknownKey{{Key: "session.user.emial", Known: userKeys}}},
		{"a key a session rule sets", Config{Session: []Rule{sessionSetID}}, Condition{Expr: `session.user.id != ""`}, nil},
		{"below a key a rule sets", Config{JWT: []Rule{setProfile}}, Condition{Expr: `token.org.name == "acme"`}, nil},
		{"default token keys", Config{}, Condition{Expr: `token.sub != "" && token.sid != "" && token.exp > 0 && token.picture != ""`}, nil},
		{"a claim no rule sets", Config{}, Condition{Expr: `"admins" in token.groups`},
			[]UnknownKey{{Key: "token.groups", Known: []string{"token.email", "token.exp", "token.iat", "token.jti", "token.name", "token.picture", "token.sid", "token.sub"}}}},
		{"a claim a jwt rule sets", Config{JWT: []Rule{setRole}}, Condition{Expr: `token.role == "admin"`}, nil},
		{"claim shorthand", Config{JWT: []Rule{setRole}}, Condition{Kind: "claim", Path: "rol", Values: []string{"admin"}},
			[]UnknownKey{{Key: "token.rol", Known: []string{"token.email", "token.exp", "token.iat", "token.jti", "token.name", "token.picture", "token.role", "token.sid", "token.sub"}}}},
		{"provider tokens with refresh_access_token", Config{JWT: []Rule{rule("22", "refresh_access_token", nil, nil)}}, Condition{Expr: `token.access_token != "" && token.error != "x"`}, nil},
		{"provider tokens without refresh_access_token", Config{}, Condition{Expr: `token.access_token != ""`},
			[]UnknownKey{{Key: "token.access_token", Known: []string{"token.email", "token.exp", "token.iat", "token.jti", "token.name", "token.picture", "token.sid", "token.sub"}}}},
		{"a jwt webhook may set any claim", Config{JWT: []Rule{hook("23")}}, Condition{Expr: `"admins" in token.groups`}, nil},
		{"a jwt webhook says nothing of the session", Config{JWT: []Rule{hook("23")}}, Condition{Expr: `session.user.emial == "a"`},
			[]UnknownKey{{Key: "session.user.emial", Known: userKeys}}},
		{"a session webhook may set any key", Config{Session: []Rule{hook("31")}}, Condition{Expr: `session.user.emial == "a"`}, nil},
		{"request is not checked", Config{}, Condition{Expr: `request.headers.x == "a"`}, nil},
		{"both", Config{}, Condition{Expr: `session.user.emial == "a" || token.grups == "b"`},
			[]UnknownKey{{Key: "session.user.emial", Known: userKeys}, {Key: "token.grups", Known: []string{"token.email", "token.exp", "token.iat", "token.jti", "token.name", "token.picture", "token.sid", "token.sub"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, tc.cfg)
			k, err := CompileCheck(tc.cond, "Caddyfile:3")
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				tc.want[i].Source = "Caddyfile:3"
			}
			if got := c.UnknownKeysIn(k); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("UnknownKeysIn = %+v\nwant %+v", got, tc.want)
			}
		})
	}

	t.Run("header expression", func(t *testing.T) {
		e, err := CompileExpr(`session.user.emial`)
		if err != nil {
			t.Fatal(err)
		}
		want := []UnknownKey{{Key: "session.user.emial", Known: userKeys}}
		if got := mustCallbacks(t, Config{}).UnknownKeysIn(e); !reflect.DeepEqual(got, want) {
			t.Errorf("UnknownKeysIn = %+v, want %+v", got, want)
		}
	})
}

// TestUnknownKeys: the session and jwt rules' own reads of the token and the
// session are checked too; jwt's `session` is the update data, not checked.
func TestUnknownKeys(t *testing.T) {
	c := mustCallbacks(t, Config{
		JWT: []Rule{
			rule("20", "set", args("role", `profile.role`), nil),
			rule("21", "set", args("level", `token.role == "admin" ? 2 : 1`), ifCEL(`token.rol != ""`)),
			rule("22", "set", args("x", `session.anything`), nil),
		},
		Session: []Rule{
			rule("30", "set", args("user.role", `token.role`), nil),
			rule("31", "set", args("user.lvl", `token.levle`), nil),
			rule("32", "unset", args("user.image"), ifCEL(`session.user.imgae == null`)),
		},
	})
	got := c.UnknownKeys()
	var keys []string
	for _, u := range got {
		keys = append(keys, u.Source+" "+u.Key)
	}
	want := []string{"Caddyfile:21 token.rol", "Caddyfile:31 token.levle", "Caddyfile:32 session.user.imgae"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("UnknownKeys = %v, want %v", keys, want)
	}
	if len(got) == 3 && !reflect.DeepEqual(got[2].Known, []string{"session.user.email", "session.user.image", "session.user.lvl", "session.user.name", "session.user.role"}) {
		t.Errorf("known keys beside session.user.imgae: %v", got[2].Known)
	}
}

func TestLogUnknownKeys(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := mustCallbacks(t, Config{})
	k, err := CompileCheck(Condition{Expr: `session.user.emial.endsWith("@example.com")`}, "Caddyfile:7")
	if err != nil {
		t.Fatal(err)
	}
	LogUnknownKeys(zap.New(core), c.UnknownKeysIn(k), zap.String("realm", "default"))
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	fields := e.ContextMap()
	if e.Level != zapcore.WarnLevel || fields["rule"] != "Caddyfile:7" || fields["key"] != "session.user.emial" || fields["realm"] != "default" {
		t.Errorf("logged %s %q %v", e.Level, e.Message, fields)
	}
	if known, _ := fields["known"].([]any); !reflect.DeepEqual(known, []any{"session.user.email", "session.user.image", "session.user.name"}) {
		t.Errorf("known = %#v", fields["known"])
	}
}

package callbacks

import (
	"context"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ifCEL and ifShort build the two kinds of rule condition.
func ifCEL(src string) *Condition { return &Condition{Expr: src} }

func ifShort(kind string, values ...string) *Condition {
	return &Condition{Kind: kind, Values: values}
}

func ifClaim(path string, values ...string) *Condition {
	return &Condition{Kind: "claim", Path: path, Values: values}
}

// rule builds a rule written at Caddyfile:<line>.
func rule(line, action string, args []string, cond *Condition) Rule {
	return Rule{Action: action, Args: args, If: cond, Source: "Caddyfile:" + line}
}

func args(a ...string) []string { return a }

func mustCallbacks(t testing.TB, cfg Config) *Callbacks {
	t.Helper()
	c, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

// wantErrContains fails unless err is non-nil and contains every one of want.
func wantErrContains(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error; want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // besides the rule's source, Caddyfile:12
	}{
		// Unknown variables: each callback has only its own.
		{"sign_in unknown variable",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifCEL(`usr.email == "x"`))}},
			[]string{"sign_in", "undeclared reference to 'usr'"}},
		{"redirect has no token",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifCEL(`token.x == "a"`))}},
			[]string{"redirect", "undeclared reference to 'token'", "url, base_url, request"}},
		{"redirect has no user",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifCEL(`user.email == "a"`))}},
			[]string{"undeclared reference to 'user'"}},
		{"session has no profile",
			Config{Session: []Rule{rule("12", "set", args("x", "profile.x"), nil)}},
			[]string{"session", "undeclared reference to 'profile'"}},
		{"jwt set expression unknown variable",
			Config{JWT: []Rule{rule("12", "set", args("role", "usr.role"), nil)}},
			[]string{"jwt", "undeclared reference to 'usr'"}},

		// Type errors, caught before any request.
		{"string plus int",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifCEL(`url + 1 == "x"`))}},
			[]string{"no matching overload"}},
		{"condition is a map field, not a bool",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifCEL(`user.email`))}},
			[]string{"`user.email`", "want a bool"}},
		{"condition is a string",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifCEL(`url`))}},
			[]string{"`url`", "string", "want a bool"}},
		{"condition is an int",
			Config{JWT: []Rule{rule("12", "unset", args("x"), ifCEL(`size(token)`))}},
			[]string{"int", "want a bool"}},
		{"rewrite returns an int",
			Config{Redirect: []Rule{rule("12", "rewrite", args("size(url)"), nil)}},
			[]string{"rewrite", "int", "want a string"}},
		{"syntax error",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifCEL(`user.email ==`))}},
			[]string{"Syntax error"}},
		{"syntax error in a set expression",
			Config{Session: []Rule{rule("12", "set", args("user.id", "token.sub +"), nil)}},
			[]string{"Syntax error"}},

		// Actions and their arguments.
		{"sign_in unknown action",
			Config{SignIn: []Rule{rule("12", "permit", nil, nil)}},
			[]string{"permit", "unknown action"}},
		{"redirect unknown action",
			Config{Redirect: []Rule{rule("12", "set", args("a", "b"), nil)}},
			[]string{"set", "unknown action"}},
		{"jwt unknown action",
			Config{JWT: []Rule{rule("12", "allow", nil, nil)}},
			[]string{"allow", "unknown action"}},
		{"session unknown action",
			Config{Session: []Rule{rule("12", "rewrite", args("x"), nil)}},
			[]string{"rewrite", "unknown action"}},
		{"allow with an argument",
			Config{SignIn: []Rule{rule("12", "allow", args("everyone"), nil)}},
			[]string{"takes 0 argument(s)", "got 1"}},
		{"redirect without URL",
			Config{SignIn: []Rule{rule("12", "redirect", nil, nil)}},
			[]string{"takes 1 argument(s)", "got 0"}},
		{"rewrite with two expressions",
			Config{Redirect: []Rule{rule("12", "rewrite", args("url", "base_url"), nil)}},
			[]string{"takes 1 argument(s)", "got 2"}},
		{"set without expression",
			Config{JWT: []Rule{rule("12", "set", args("role"), nil)}},
			[]string{"takes 2 argument(s)", "got 1"}},
		{"unset without path",
			Config{Session: []Rule{rule("12", "unset", nil, nil)}},
			[]string{"takes 1 argument(s)", "got 0"}},
		{"set with an empty path segment",
			Config{JWT: []Rule{rule("12", "set", args("a..b", "1"), nil)}},
			[]string{`"a..b"`, "empty segment"}},
		{"default maybe",
			Config{SignIn: []Rule{rule("12", "default", args("maybe"), nil)}},
			[]string{"default allow", "default deny"}},
		{"default without argument",
			Config{SignIn: []Rule{rule("12", "default", nil, nil)}},
			[]string{"default allow"}},
		{"default with a condition",
			Config{SignIn: []Rule{rule("12", "default", args("allow"), ifShort("domain", "example.com"))}},
			[]string{"default allow"}},
		{"allow_origin without origins",
			Config{Redirect: []Rule{rule("12", "allow_origin", nil, nil)}},
			[]string{"allow_origin"}},
		{"allow_origin with a condition",
			Config{Redirect: []Rule{rule("12", "allow_origin", args("https://a.example.com"), ifCEL(`url != ""`))}},
			[]string{"no condition"}},
		{"allow_origin with a path",
			Config{Redirect: []Rule{rule("12", "allow_origin", args("https://a.example.com/x"), nil)}},
			[]string{"allow_origin", `"https://a.example.com/x"`}},
		{"refresh_access_token with a condition",
			Config{JWT: []Rule{rule("12", "refresh_access_token", nil, &Condition{Expr: "true"})}},
			[]string{"refresh_access_token", "takes no argument"}},
		{"refresh_access_token outside jwt",
			Config{Session: []Rule{rule("12", "refresh_access_token", nil, nil)}},
			[]string{"refresh_access_token", "belongs in the jwt block"}},

		// Shorthand conditions.
		{"email glob without @",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("email", "example.com"))}},
			[]string{`"example.com"`, "exactly one @"}},
		{"email glob with two @",
			Config{SignIn: []Rule{rule("12", "deny", nil, ifShort("email", "a@b@example.com"))}},
			[]string{`"a@b@example.com"`, "exactly one @"}},
		{"email glob malformed",
			Config{SignIn: []Rule{rule("12", "deny", nil, ifShort("email", "[a@example.com"))}},
			[]string{`"[a@example.com"`}},
		{"domain without a dot",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("domain", "example"))}},
			[]string{`"example"`, "want a domain"}},
		{"domain that is an address",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("domain", "a@example.com"))}},
			[]string{`"a@example.com"`, "want a domain"}},
		{"domain with a wildcard inside",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("domain", "a.*.example.com"))}},
			[]string{`"a.*.example.com"`, "want a domain"}},
		{"bare wildcard domain",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("domain", "*."))}},
			[]string{"want a domain"}},
		{"provider in session",
			Config{Session: []Rule{rule("12", "unset", args("user.image"), ifShort("provider", "github"))}},
			[]string{"session", "provider", "account"}},
		{"provider in redirect",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifShort("provider", "github"))}},
			[]string{"redirect", "provider"}},
		{"email in redirect, which has no user",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifShort("email", "*@example.com"))}},
			[]string{"redirect", "email", "url, base_url, request"}},
		{"claim in redirect",
			Config{Redirect: []Rule{rule("12", "deny", nil, ifClaim("role", "x"))}},
			[]string{"redirect", "claim"}},
		{"shorthand without values",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("domain"))}},
			[]string{"at least one value"}},
		{"claim without path",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifClaim("", "acme"))}},
			[]string{"claim condition needs a path"}},
		{"unknown shorthand",
			Config{SignIn: []Rule{rule("12", "allow", nil, ifShort("group", "admins"))}},
			[]string{`"group"`, "unknown condition"}},
		{"expression and shorthand at once",
			Config{SignIn: []Rule{rule("12", "allow", nil, &Condition{Expr: "true", Kind: "email", Values: []string{"*@x.com"}})}},
			[]string{"either an expression or a email shorthand"}},

		// Webhooks.
		{"webhook without URL",
			Config{SignIn: []Rule{rule("12", "webhook", nil, nil)}},
			[]string{"webhook needs a URL"}},
		{"webhook with an empty config",
			Config{JWT: []Rule{{Action: "webhook", Webhook: &WebhookConfig{}, Source: "Caddyfile:12"}}},
			[]string{"webhook needs a URL"}},
		{"webhook ftp URL",
			Config{Session: []Rule{{Action: "webhook", Webhook: &WebhookConfig{URL: "ftp://hooks.example.com/x"}, Source: "Caddyfile:12"}}},
			[]string{`"ftp://hooks.example.com/x"`, "http(s)"}},
		{"webhook ftp URL as argument",
			Config{Redirect: []Rule{rule("12", "webhook", args("ftp://hooks.example.com/x"), nil)}},
			[]string{`"ftp://hooks.example.com/x"`, "http(s)"}},
		{"webhook relative URL",
			Config{SignIn: []Rule{rule("12", "webhook", args("/hook"), nil)}},
			[]string{`"/hook"`, "absolute"}},
		{"webhook URL twice, differently",
			Config{SignIn: []Rule{{Action: "webhook", Args: args("http://a.test/x"), Webhook: &WebhookConfig{URL: "http://b.test/x"}, Source: "Caddyfile:12"}}},
			[]string{"http://a.test/x", "http://b.test/x"}},
		{"webhook bad header name",
			Config{SignIn: []Rule{{Action: "webhook", Webhook: &WebhookConfig{URL: "http://a.test/x", Headers: map[string]string{"X Bad": "1"}}, Source: "Caddyfile:12"}}},
			[]string{`"X Bad"`, "invalid name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compile(tc.cfg)
			if c != nil {
				t.Errorf("Compile returned callbacks along with error %v", err)
			}
			wantErrContains(t, err, append([]string{"Caddyfile:12: "}, tc.want...)...)
		})
	}
}

// TestCompileAccepts guards against the checks above rejecting what they should not.
func TestCompileAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"empty", Config{}},
		{"design example", Config{
			SignIn: []Rule{
				rule("1", "deny", nil, ifShort("email", "intern@example.com")),
				rule("2", "allow", nil, ifShort("domain", "example.com", "*.example.org")),
				rule("3", "allow", nil, ifCEL(`account.provider == "github" && "acme" in profile.orgs`)),
				rule("4", "allow", nil, ifShort("provider", "credentials")),
				rule("5", "allow", nil, ifClaim("orgs", "acme")),
				rule("6", "redirect", args("/request-access"), ifCEL(`email.verification_request == true`)),
				rule("7", "webhook", args("http://localhost:9000/sign-in"), nil),
				rule("8", "default", args("deny"), nil),
			},
			Redirect: []Rule{
				rule("10", "allow_origin", args("https://*.example.com", "foo.bar"), nil),
				rule("11", "rewrite", args(`base_url + "/welcome"`), ifCEL(`url == base_url + "/"`)),
				rule("12", "rewrite", args(`request.query.next`), nil),
				rule("13", "allow", nil, ifCEL(`url.startsWith("https://partner.example/")`)),
			},
			JWT: []Rule{
				rule("20", "set", args("role", `profile.groups.exists(g, g == "admins") ? "admin" : "user"`), nil),
				rule("21", "set", args("email", "profile.email"), ifShort("provider", "oidc")),
				rule("22", "unset", args("picture"), ifCEL(`trigger == "update" && is_new_user == false`)),
				rule("23", "set", args("role", "session.role"), ifCEL(`trigger == "update"`)),
			},
			Session: []Rule{
				rule("30", "set", args("user.id", "token.sub"), nil),
				rule("31", "set", args("user.role", "token.role"), ifCEL(`token.role != ""`)),
				rule("32", "unset", args("user.image"), ifShort("email", "*@example.com")),
				rule("33", "set", args("admin", "true"), ifClaim("role", "admin")),
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(tc.cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSignIn(t *testing.T) {
	user := func(email string) map[string]any {
		return map[string]any{"id": "1", "name": "Ada", "email": email}
	}
	allowList := []Rule{rule("1", "allow", nil, ifShort("domain", "example.com"))}
	allowed := Decision{Allow: true, Source: "Caddyfile:1"}
	denied := Decision{Source: "Caddyfile:1"}
	github := map[string]any{"provider": "github", "type": "oauth"}
	for _, tc := range []struct {
		name  string
		rules []Rule
		in    SignInInput
		want  Decision
	}{
		{"no rules allow", nil, SignInInput{User: user("x@evil.example")}, Decision{Allow: true}},
		{"no rules, no input", nil, SignInInput{}, Decision{Allow: true}},
		{"allow-list admits a listed user", allowList, SignInInput{User: user("ada@example.com")}, allowed},
		{"allow-list refuses others", allowList, SignInInput{User: user("eve@evil.example")}, Decision{}},
		{"allow-list refuses a user without email", allowList, SignInInput{User: map[string]any{"id": "1"}}, Decision{}},
		{"deny before allow wins",
			[]Rule{rule("1", "deny", nil, ifShort("email", "intern@example.com")), rule("2", "allow", nil, ifShort("domain", "example.com"))},
			SignInInput{User: user("intern@example.com")}, denied},
		{"deny does not touch the others",
			[]Rule{rule("1", "deny", nil, ifShort("email", "intern@example.com")), rule("2", "allow", nil, ifShort("domain", "example.com"))},
			SignInInput{User: user("ada@example.com")}, Decision{Allow: true, Source: "Caddyfile:2"}},
		{"deny-list alone allows the rest",
			[]Rule{rule("1", "deny", nil, ifShort("email", "intern@example.com"))},
			SignInInput{User: user("eve@evil.example")}, Decision{Allow: true}},
		{"default deny after a deny-list",
			[]Rule{rule("1", "deny", nil, ifShort("email", "intern@example.com")), rule("2", "default", args("deny"), nil)},
			SignInInput{User: user("eve@evil.example")}, Decision{}},
		{"default allow after an allow-list",
			[]Rule{rule("1", "allow", nil, ifShort("domain", "example.com")), rule("2", "default", args("allow"), nil)},
			SignInInput{User: user("eve@evil.example")}, Decision{Allow: true}},
		{"default before the rules still only decides last",
			[]Rule{rule("1", "default", args("allow"), nil), rule("2", "deny", nil, ifShort("domain", "evil.example"))},
			SignInInput{User: user("eve@evil.example")}, Decision{Source: "Caddyfile:2"}},
		{"unconditional deny", []Rule{rule("1", "deny", nil, nil)}, SignInInput{User: user("ada@example.com")}, denied},
		{"redirect",
			[]Rule{rule("1", "allow", nil, ifShort("domain", "example.com")), rule("2", "redirect", args("/request-access"), nil)},
			SignInInput{User: user("eve@evil.example")}, Decision{Redirect: "/request-access", Source: "Caddyfile:2"}},

		// CEL over account and profile.
		{"CEL true",
			[]Rule{rule("1", "allow", nil, ifCEL(`account.provider == "github" && "acme" in profile.orgs`))},
			SignInInput{Account: github, Profile: map[string]any{"orgs": []any{"x", "acme"}}}, allowed},
		{"CEL false: not a member",
			[]Rule{rule("1", "allow", nil, ifCEL(`account.provider == "github" && "acme" in profile.orgs`))},
			SignInInput{Account: github, Profile: map[string]any{"orgs": []any{"x"}}}, Decision{}},
		{"CEL false: another provider",
			[]Rule{rule("1", "allow", nil, ifCEL(`account.provider == "github" && "acme" in profile.orgs`))},
			SignInInput{Account: map[string]any{"provider": "google"}, Profile: map[string]any{"orgs": []any{"acme"}}}, Decision{}},
		{"missing key is false and the next rule decides",
			[]Rule{
				rule("1", "allow", nil, ifCEL(`account.provider == "github" && "acme" in profile.orgs`)),
				rule("2", "redirect", args("/no-orgs"), nil),
			},
			SignInInput{Account: github, Profile: map[string]any{"login": "ada"}}, Decision{Redirect: "/no-orgs", Source: "Caddyfile:2"}},
		{"missing key in a deny denies: it decides against the user",
			[]Rule{rule("1", "deny", nil, ifCEL(`profile.suspended == true`)), rule("2", "allow", nil, nil)},
			SignInInput{}, Decision{Source: "Caddyfile:1"}},
		{"missing key inside a macro",
			[]Rule{rule("1", "allow", nil, ifCEL(`profile.groups.exists(g, g == "admins")`)), rule("2", "deny", nil, nil)},
			SignInInput{Profile: map[string]any{}}, Decision{Source: "Caddyfile:2"}},
		{"email verification request",
			[]Rule{rule("1", "deny", nil, ifCEL(`email.verification_request == true`))},
			SignInInput{Email: map[string]any{"verification_request": true}}, denied},
		{"credentials",
			[]Rule{rule("1", "allow", nil, ifCEL(`credentials.username == "ada"`))},
			SignInInput{Credentials: map[string]any{"username": "ada"}}, allowed},
		{"request",
			[]Rule{rule("1", "deny", nil, ifCEL(`request.remote_ip.startsWith("10.")`))},
			SignInInput{Request: map[string]any{"remote_ip": "10.1.2.3"}}, denied},

		// email shorthand
		{"email exact", []Rule{rule("1", "allow", nil, ifShort("email", "ada@example.com"))},
			SignInInput{User: user("ada@example.com")}, allowed},
		{"email is case-insensitive (address)", []Rule{rule("1", "allow", nil, ifShort("email", "ada@example.com"))},
			SignInInput{User: user("Ada@Example.COM")}, allowed},
		{"email is case-insensitive (pattern)", []Rule{rule("1", "allow", nil, ifShort("email", "ADA@EXAMPLE.com"))},
			SignInInput{User: user("ada@example.com")}, allowed},
		{"email glob", []Rule{rule("1", "allow", nil, ifShort("email", "*@example.com"))},
			SignInInput{User: user("anyone@example.com")}, allowed},
		{"email glob is anchored", []Rule{rule("1", "allow", nil, ifShort("email", "*@example.com"))},
			SignInInput{User: user("eve@example.com.evil.net")}, Decision{}},
		{"email glob does not cross @", []Rule{rule("1", "allow", nil, ifShort("email", "*@example.com"))},
			SignInInput{User: user("eve@sub.example.com")}, Decision{}},
		{"email glob prefix", []Rule{rule("1", "deny", nil, ifShort("email", "intern*@example.com")), rule("2", "allow", nil, nil)},
			SignInInput{User: user("intern7@example.com")}, denied},
		{"email glob matches a slash in the local part",
			[]Rule{rule("1", "deny", nil, ifShort("email", "intern*@example.com")), rule("2", "allow", nil, nil)},
			SignInInput{User: user("intern/x@example.com")}, denied},
		{"email, second of several globs", []Rule{rule("1", "allow", nil, ifShort("email", "a@x.com", "*@example.com"))},
			SignInInput{User: user("b@example.com")}, allowed},
		{"email shorthand ignores an address with two @",
			[]Rule{rule("1", "allow", nil, ifShort("email", "*@example.com"))},
			SignInInput{User: user("eve@evil@example.com")}, Decision{}},

		// domain shorthand
		{"domain exact", []Rule{rule("1", "allow", nil, ifShort("domain", "example.com"))},
			SignInInput{User: user("ada@EXAMPLE.com")}, allowed},
		{"domain exact excludes subdomains", []Rule{rule("1", "allow", nil, ifShort("domain", "example.com"))},
			SignInInput{User: user("ada@a.example.com")}, Decision{}},
		{"domain exact excludes look-alikes", []Rule{rule("1", "allow", nil, ifShort("domain", "example.com"))},
			SignInInput{User: user("eve@evilexample.com")}, Decision{}},
		{"wildcard domain: subdomain", []Rule{rule("1", "allow", nil, ifShort("domain", "*.example.com"))},
			SignInInput{User: user("ada@a.example.com")}, allowed},
		{"wildcard domain: deep subdomain", []Rule{rule("1", "allow", nil, ifShort("domain", "*.example.com"))},
			SignInInput{User: user("ada@a.b.example.com")}, allowed},
		{"wildcard domain: not the apex", []Rule{rule("1", "allow", nil, ifShort("domain", "*.example.com"))},
			SignInInput{User: user("ada@example.com")}, Decision{}},
		{"wildcard domain: not a look-alike", []Rule{rule("1", "allow", nil, ifShort("domain", "*.example.com"))},
			SignInInput{User: user("eve@evilexample.com")}, Decision{}},
		{"wildcard domain: not a suffix attack", []Rule{rule("1", "allow", nil, ifShort("domain", "*.example.com"))},
			SignInInput{User: user("eve@a.example.com.evil.net")}, Decision{}},
		{"domain of an address with two @", []Rule{rule("1", "allow", nil, ifShort("domain", "example.com"))},
			SignInInput{User: user("eve@evil.net@example.com")}, Decision{}},

		// claim shorthand reads the profile
		{"claim list contains", []Rule{rule("1", "allow", nil, ifClaim("orgs", "acme", "acme-labs"))},
			SignInInput{Profile: map[string]any{"orgs": []any{"other", "acme-labs"}}}, allowed},
		{"claim list does not contain", []Rule{rule("1", "allow", nil, ifClaim("orgs", "acme"))},
			SignInInput{Profile: map[string]any{"orgs": []any{"other"}}}, Decision{}},
		{"claim scalar", []Rule{rule("1", "allow", nil, ifClaim("hd", "example.com"))},
			SignInInput{Profile: map[string]any{"hd": "example.com"}}, allowed},
		{"claim scalar differs", []Rule{rule("1", "allow", nil, ifClaim("hd", "example.com"))},
			SignInInput{Profile: map[string]any{"hd": "evil.example"}}, Decision{}},
		{"claim bool", []Rule{rule("1", "allow", nil, ifClaim("email_verified", "true"))},
			SignInInput{Profile: map[string]any{"email_verified": true}}, allowed},
		{"claim number", []Rule{rule("1", "allow", nil, ifClaim("level", "3"))},
			SignInInput{Profile: map[string]any{"level": float64(3)}}, allowed},
		{"claim nested path", []Rule{rule("1", "allow", nil, ifClaim("realm_access.roles", "admin"))},
			SignInInput{Profile: map[string]any{"realm_access": map[string]any{"roles": []any{"admin"}}}}, allowed},
		{"claim missing", []Rule{rule("1", "allow", nil, ifClaim("orgs", "acme"))},
			SignInInput{Profile: map[string]any{}}, Decision{}},
		{"claim map is not a value", []Rule{rule("1", "allow", nil, ifClaim("orgs", "acme"))},
			SignInInput{Profile: map[string]any{"orgs": map[string]any{"acme": true}}}, Decision{}},

		// provider shorthand
		{"provider matches", []Rule{rule("1", "allow", nil, ifShort("provider", "google", "github"))},
			SignInInput{Account: github}, allowed},
		{"provider differs", []Rule{rule("1", "allow", nil, ifShort("provider", "google"))},
			SignInInput{Account: github}, Decision{}},
		{"provider without account", []Rule{rule("1", "allow", nil, ifShort("provider", "google"))},
			SignInInput{}, Decision{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, Config{SignIn: tc.rules})
			got, err := c.SignIn(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("SignIn = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSignInFailsClosed: a runtime error other than a missing key is an error,
// never a decision, so the caller refuses the sign-in.
func TestSignInFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []Rule
		in    SignInInput
		want  []string
	}{
		{"conversion error",
			[]Rule{rule("7", "allow", nil, ifCEL(`int(user.name) > 3`))},
			SignInInput{User: map[string]any{"name": "Ada"}},
			[]string{"Caddyfile:7", "int(user.name) > 3"}},
		{"error after a rule that does not match",
			[]Rule{rule("6", "allow", nil, ifShort("domain", "example.com")), rule("7", "deny", nil, ifCEL(`int(user.name) > 3`))},
			SignInInput{User: map[string]any{"name": "Ada", "email": "a@other.example"}},
			[]string{"Caddyfile:7"}},
		{"a dyn value that is not a bool",
			[]Rule{rule("7", "allow", nil, ifCEL(`profile.verified == true || profile.verified`))},
			SignInInput{Profile: map[string]any{"verified": "yes"}},
			[]string{"Caddyfile:7"}},
		{"index out of range",
			[]Rule{rule("7", "allow", nil, ifCEL(`profile.orgs[3] == "acme"`))},
			SignInInput{Profile: map[string]any{"orgs": []any{"acme"}}},
			[]string{"Caddyfile:7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, Config{SignIn: tc.rules})
			d, err := c.SignIn(context.Background(), tc.in)
			wantErrContains(t, err, tc.want...)
			if d.Allow || d.Redirect != "" {
				t.Errorf("SignIn = %+v along with the error; want no decision", d)
			}
		})
	}
}

const cbBase = "https://app.authgate.test"

func TestRedirect(t *testing.T) {
	allowOrigin := rule("1", "allow_origin", args("https://*.example.com"), nil)
	for _, tc := range []struct {
		name   string
		rules  []Rule
		target string
		want   string
	}{
		// No rules: the safe default.
		{"relative path stays on base", nil, "/dashboard?x=1", cbBase + "/dashboard?x=1"},
		{"same origin kept", nil, cbBase + "/x", cbBase + "/x"},
		{"other origin becomes base", nil, "https://evil.example", cbBase},
		{"other origin with path becomes base", nil, "https://evil.example/x", cbBase},
		{"scheme-relative becomes base", nil, "//evil.example", cbBase},
		{"javascript becomes base", nil, "javascript:alert(1)", cbBase},
		{"empty becomes base", nil, "", cbBase},

		// allow_origin
		{"allow_origin subdomain", []Rule{allowOrigin}, "https://a.example.com/x", "https://a.example.com/x"},
		{"allow_origin not the apex", []Rule{allowOrigin}, "https://example.com/x", cbBase},
		{"allow_origin not a suffix attack", []Rule{allowOrigin}, "https://example.com.evil.net", cbBase},
		{"allow_origin not a look-alike", []Rule{allowOrigin}, "https://evilexample.com", cbBase},
		{"allow_origin not userinfo", []Rule{allowOrigin}, "https://a.example.com@evil.net", cbBase},
		{"allow_origin not http", []Rule{allowOrigin}, "http://a.example.com/x", cbBase},
		{"allow_origin with other rules",
			[]Rule{allowOrigin, rule("2", "deny", nil, ifCEL(`url.contains("logout")`))},
			"https://a.example.com/x", "https://a.example.com/x"},

		// deny
		{"deny with a condition on url",
			[]Rule{rule("1", "deny", nil, ifCEL(`url.contains("/admin")`))},
			cbBase + "/admin/users", cbBase},
		{"deny condition false keeps the default",
			[]Rule{rule("1", "deny", nil, ifCEL(`url.contains("/admin")`))},
			cbBase + "/home", cbBase + "/home"},
		{"deny wins over allow_origin",
			[]Rule{allowOrigin, rule("2", "deny", nil, ifCEL(`url.startsWith("https://b.")`))},
			"https://b.example.com/x", cbBase},
		{"deny reading a missing request key denies",
			[]Rule{rule("1", "deny", nil, ifCEL(`request.headers.x == "1"`))},
			"/home", cbBase},
		{"allow reading a missing request key does not allow",
			[]Rule{allowOrigin, rule("2", "allow", nil, ifCEL(`request.headers.x == "1"`))},
			"https://evil.example/x", cbBase},

		// rewrite
		{"rewrite to welcome",
			[]Rule{rule("1", "rewrite", args(`base_url + "/welcome"`), ifCEL(`url == base_url + "/"`))},
			cbBase + "/", cbBase + "/welcome"},
		{"rewrite condition false",
			[]Rule{rule("1", "rewrite", args(`base_url + "/welcome"`), ifCEL(`url == base_url + "/"`))},
			cbBase + "/x", cbBase + "/x"},
		{"rewrite to another origin is still checked",
			[]Rule{rule("1", "rewrite", args(`"https://evil.example/x"`), nil)},
			"/x", cbBase},
		{"rewrite to a scheme-relative URL is still checked",
			[]Rule{rule("1", "rewrite", args(`"//evil.example"`), nil)},
			"/x", cbBase},
		{"rewrite to an allowed origin",
			[]Rule{allowOrigin, rule("2", "rewrite", args(`"https://a.example.com/welcome"`), nil)},
			"/x", "https://a.example.com/welcome"},
		{"rewrite reading a missing key: next rule",
			[]Rule{rule("1", "rewrite", args(`request.query.next`), nil), rule("2", "rewrite", args(`base_url + "/fallback"`), nil)},
			"/x", cbBase + "/fallback"},

		// allow: any well-formed origin, still no tricks
		{"allow accepts an external URL",
			[]Rule{rule("1", "allow", nil, ifCEL(`url.startsWith("https://partner.example/")`))},
			"https://partner.example/back", "https://partner.example/back"},
		{"allow condition false: default",
			[]Rule{rule("1", "allow", nil, ifCEL(`url.startsWith("https://partner.example/")`))},
			"https://evil.example/back", cbBase},
		{"allow still rejects scheme-relative",
			[]Rule{rule("1", "allow", nil, nil)}, "//evil.com", cbBase},
		{"allow still rejects backslash",
			[]Rule{rule("1", "allow", nil, nil)}, `/\evil.com`, cbBase},
		{"allow still rejects javascript",
			[]Rule{rule("1", "allow", nil, nil)}, "javascript:alert(1)", cbBase},
		{"allow still rejects userinfo",
			[]Rule{rule("1", "allow", nil, nil)}, "https://partner.example@evil.com/", cbBase},
		{"allow still rejects whitespace",
			[]Rule{rule("1", "allow", nil, nil)}, "https://partner.example/\tx", cbBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, Config{Redirect: tc.rules})
			got, err := c.Redirect(context.Background(), tc.target, mustParse(t, cbBase), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Redirect(%q) = %q, want %q", tc.target, got, tc.want)
			}
		})
	}
}

// TestRedirectRewriteReadsRequest: a rewrite may read the request; a value that
// is not a URL at all ends at the base URL.
func TestRedirectRewriteReadsRequest(t *testing.T) {
	c := mustCallbacks(t, Config{Redirect: []Rule{rule("1", "rewrite", args(`request.query.next`), nil)}})
	for _, tc := range []struct {
		next any
		want string
	}{
		{"/from-query", cbBase + "/from-query"},
		{"https://evil.example", cbBase},
		{int64(3), cbBase},
		{nil, cbBase},
	} {
		req := map[string]any{"query": map[string]any{"next": tc.next}}
		got, err := c.Redirect(context.Background(), "/x", mustParse(t, cbBase), req)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("Redirect with next=%#v = %q, want %q", tc.next, got, tc.want)
		}
	}
}

func TestRedirectFailsClosed(t *testing.T) {
	c := mustCallbacks(t, Config{Redirect: []Rule{rule("4", "rewrite", args(`string(int(url))`), nil)}})
	got, err := c.Redirect(context.Background(), "/x", mustParse(t, cbBase), nil)
	wantErrContains(t, err, "Caddyfile:4")
	if got != cbBase {
		t.Errorf("Redirect = %q along with the error; want the base URL", got)
	}

	c = mustCallbacks(t, Config{Redirect: []Rule{rule("5", "allow", nil, ifCEL(`int(url) > 0`))}})
	got, err = c.Redirect(context.Background(), "https://evil.example", mustParse(t, cbBase), nil)
	wantErrContains(t, err, "Caddyfile:5")
	if got != cbBase {
		t.Errorf("Redirect = %q along with the error; want the base URL", got)
	}
}

// TestSignInRedirectIsChecked: a sign_in `redirect <url>` is a target like any
// other and goes through the redirect callback before anyone is sent there.
func TestSignInRedirectIsChecked(t *testing.T) {
	for _, redirect := range [][]Rule{nil, {rule("9", "deny", nil, ifCEL(`url.contains("/admin")`))}} {
		c := mustCallbacks(t, Config{
			SignIn:   []Rule{rule("1", "redirect", args("https://evil.example"), nil)},
			Redirect: redirect,
		})
		d, err := c.SignIn(context.Background(), SignInInput{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Redirect != "https://evil.example" || d.Allow {
			t.Fatalf("SignIn = %+v, want the redirect", d)
		}
		got, err := c.Redirect(context.Background(), d.Redirect, mustParse(t, cbBase), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != cbBase {
			t.Errorf("redirect rules %v: Redirect(%q) = %q, want the base URL", redirect, d.Redirect, got)
		}
	}
}

func TestJWT(t *testing.T) {
	signIn := func(profile map[string]any) JWTInput {
		return JWTInput{
			User:    map[string]any{"id": "u1", "name": "Ada", "email": "ada@example.com", "image": "https://img/ada.png"},
			Account: map[string]any{"provider": "oidc"},
			Profile: profile,
			Trigger: "sign_in",
		}
	}
	defaults := map[string]any{"sub": "u1", "name": "Ada", "email": "ada@example.com", "picture": "https://img/ada.png"}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	roleRule := rule("1", "set", args("role", `profile.groups.exists(g, g == "admins") ? "admin" : "user"`), nil)
	for _, tc := range []struct {
		name  string
		rules []Rule
		in    JWTInput
		want  map[string]any
	}{
		{"default token", nil, signIn(nil), defaults},
		{"default token with rules", []Rule{rule("1", "unset", args("nothing"), nil)}, signIn(nil), defaults},
		{"empty strings become null", nil,
			JWTInput{User: map[string]any{"id": "u1", "name": "", "email": "a@x.com", "image": ""}, Trigger: "sign_in"},
			map[string]any{"sub": "u1", "name": nil, "email": "a@x.com", "picture": nil}},
		{"update keeps the token", nil,
			JWTInput{Token: map[string]any{"sub": "u1", "role": "admin"}, Trigger: "update"},
			map[string]any{"sub": "u1", "role": "admin"}},
		{"role admin", []Rule{roleRule}, signIn(map[string]any{"groups": []any{"staff", "admins"}}), with(defaults, "role", "admin")},
		{"role user", []Rule{roleRule}, signIn(map[string]any{"groups": []any{"staff"}}), with(defaults, "role", "user")},
		{"role from a missing profile key does nothing", []Rule{roleRule}, signIn(map[string]any{}), defaults},
		{"role survives an update without profile", []Rule{roleRule},
			JWTInput{Token: map[string]any{"sub": "u1", "role": "admin"}, Trigger: "update"},
			map[string]any{"sub": "u1", "role": "admin"}},
		{"strings, numbers, booleans, lists, maps, null",
			[]Rule{
				rule("1", "set", args("s", `"x"`), nil),
				rule("2", "set", args("i", `40 + 2`), nil),
				rule("3", "set", args("u", `7u`), nil),
				rule("4", "set", args("f", `1.5`), nil),
				rule("5", "set", args("b", `1 < 2`), nil),
				rule("6", "set", args("l", `["a", 1, true]`), nil),
				rule("7", "set", args("e", `[]`), nil),
				rule("8", "set", args("m", `{"k": [1], "n": {"x": "y"}}`), nil),
				rule("9", "set", args("z", `null`), nil),
				rule("10", "set", args("p", `profile.level`), nil),
			},
			signIn(map[string]any{"level": float64(3)}),
			with(defaults, "s", "x", "i", int64(42), "u", uint64(7), "f", 1.5, "b", true,
				"l", []any{"a", int64(1), true}, "e", []any{},
				"m", map[string]any{"k": []any{int64(1)}, "n": map[string]any{"x": "y"}}, "z", nil, "p", float64(3))},
		{"nested set", []Rule{rule("1", "set", args("a.b.c", `1`), nil)}, signIn(nil),
			with(defaults, "a", map[string]any{"b": map[string]any{"c": int64(1)}})},
		{"nested set keeps siblings", []Rule{rule("1", "set", args("a.b", `2`), nil)},
			JWTInput{Token: map[string]any{"a": map[string]any{"x": "y"}}},
			map[string]any{"a": map[string]any{"x": "y", "b": int64(2)}}},
		{"nested set over a scalar", []Rule{rule("1", "set", args("a.b", `2`), nil)},
			JWTInput{Token: map[string]any{"a": "scalar"}},
			map[string]any{"a": map[string]any{"b": int64(2)}}},
		{"unset", []Rule{rule("1", "unset", args("picture"), nil)}, signIn(nil),
			map[string]any{"sub": "u1", "name": "Ada", "email": "ada@example.com"}},
		{"unset nested", []Rule{rule("1", "unset", args("a.b"), nil)},
			JWTInput{Token: map[string]any{"a": map[string]any{"b": 1, "c": 2}}},
			map[string]any{"a": map[string]any{"c": 2}}},
		{"unset missing", []Rule{rule("1", "unset", args("a.b"), nil)},
			JWTInput{Token: map[string]any{"x": "y"}}, map[string]any{"x": "y"}},
		{"later rules see earlier ones",
			[]Rule{rule("1", "set", args("role", `"admin"`), nil), rule("2", "set", args("is_admin", `token.role == "admin"`), nil)},
			JWTInput{}, map[string]any{"role": "admin", "is_admin": true}},
		{"condition on trigger",
			[]Rule{rule("1", "set", args("role", `session.role`), ifCEL(`trigger == "update"`))},
			JWTInput{Token: map[string]any{"sub": "u1", "role": "user"}, Trigger: "update", Session: map[string]any{"role": "admin"}},
			map[string]any{"sub": "u1", "role": "admin"}},
		{"condition on trigger, at sign-in",
			[]Rule{rule("1", "set", args("role", `session.role`), ifCEL(`trigger == "update"`))},
			signIn(nil), defaults},
		{"update without data",
			[]Rule{rule("1", "set", args("role", `session.role`), ifCEL(`trigger == "update"`))},
			JWTInput{Token: map[string]any{"role": "user"}, Trigger: "update"},
			map[string]any{"role": "user"}},
		{"is_new_user",
			[]Rule{rule("1", "set", args("welcome", `true`), ifCEL(`is_new_user`))},
			JWTInput{IsNewUser: true, Trigger: "sign_up"}, map[string]any{"welcome": true}},
		{"provider shorthand",
			[]Rule{rule("1", "set", args("oidc", `true`), ifShort("provider", "oidc"))},
			signIn(nil), with(defaults, "oidc", true)},
		{"email shorthand reads the token on update",
			[]Rule{rule("1", "set", args("staff", `true`), ifShort("domain", "example.com"))},
			JWTInput{Token: map[string]any{"email": "ada@example.com"}, Trigger: "update"},
			map[string]any{"email": "ada@example.com", "staff": true}},
		{"claim shorthand reads the token on update",
			[]Rule{rule("1", "set", args("staff", `true`), ifClaim("role", "admin"))},
			JWTInput{Token: map[string]any{"role": "admin"}, Trigger: "update"},
			map[string]any{"role": "admin", "staff": true}},
		{"iat, exp and jti survive set and unset",
			[]Rule{
				rule("1", "set", args("iat", `1`), nil),
				rule("2", "unset", args("exp"), nil),
				rule("3", "set", args("jti", `"forged"`), nil),
				rule("4", "set", args("nbf", `5`), nil),
			},
			JWTInput{Token: map[string]any{"iat": int64(100), "exp": int64(200), "jti": "j1"}, Trigger: "update"},
			map[string]any{"iat": int64(100), "exp": int64(200), "jti": "j1", "nbf": int64(5)}},
		{"rules cannot add iat, exp or jti",
			[]Rule{rule("1", "set", args("exp", `1`), nil), rule("2", "set", args("jti", `"forged"`), nil)},
			JWTInput{}, map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, Config{JWT: tc.rules})
			got, err := c.JWT(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("JWT =\n\t%#v\nwant\n\t%#v", got, tc.want)
			}
		})
	}
}

func TestJWTFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule Rule
	}{
		{"set expression error", rule("3", "set", args("n", `int(token.name)`), nil)},
		{"condition error", rule("3", "unset", args("name"), ifCEL(`int(token.name) > 1`))},
		{"a value that cannot be stored", rule("3", "set", args("t", `type(1)`), nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, Config{JWT: []Rule{tc.rule}})
			tok, err := c.JWT(context.Background(), JWTInput{Token: map[string]any{"name": "Ada"}})
			wantErrContains(t, err, "Caddyfile:3")
			if tok != nil {
				t.Errorf("JWT = %v along with the error", tok)
			}
		})
	}
}

// TestJWTDoesNotMutateInput: the caller's maps — the decoded token in particular,
// which may still be in use — are never written to.
func TestJWTDoesNotMutateInput(t *testing.T) {
	c := mustCallbacks(t, Config{JWT: []Rule{
		rule("1", "set", args("a.b.c", `"new"`), nil),
		rule("2", "unset", args("a.x"), nil),
		rule("3", "set", args("role", `"admin"`), nil),
		rule("4", "unset", args("gone"), nil),
		rule("5", "set", args("list", `token.list + ["z"]`), nil),
	}})
	fresh := func() JWTInput {
		return JWTInput{
			Token:   map[string]any{"a": map[string]any{"b": map[string]any{"c": "old"}, "x": 1}, "role": "user", "gone": true, "list": []any{"y"}, "iat": int64(1)},
			User:    map[string]any{"id": "u1", "name": "", "email": "a@x.com"},
			Profile: map[string]any{"groups": []any{"g"}},
			Session: map[string]any{"role": "x"},
		}
	}
	in, orig := fresh(), fresh()
	out, err := c.JWT(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, orig) {
		t.Errorf("JWT modified its input:\n\t%#v\nwas\n\t%#v", in, orig)
	}
	want := map[string]any{
		"a": map[string]any{"b": map[string]any{"c": "new"}}, "role": "admin", "list": []any{"y", "z"}, "iat": int64(1),
		"sub": "u1", "name": nil, "email": "a@x.com", "picture": nil,
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("JWT =\n\t%#v\nwant\n\t%#v", out, want)
	}
}

func TestSession(t *testing.T) {
	expires := time.Date(2030, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("CET", 3600))
	const wantExpires = "2030-01-02T02:04:05.678Z"
	token := map[string]any{"sub": "u1", "name": "Ada", "email": "ada@example.com", "picture": "https://img/ada.png", "role": "admin"}
	user := func(kv ...any) map[string]any {
		u := map[string]any{"name": "Ada", "email": "ada@example.com", "image": "https://img/ada.png"}
		for i := 0; i < len(kv); i += 2 {
			u[kv[i].(string)] = kv[i+1]
		}
		return u
	}
	for _, tc := range []struct {
		name  string
		rules []Rule
		token map[string]any
		want  map[string]any
	}{
		{"default shape", nil, token, map[string]any{"user": user(), "expires": wantExpires}},
		{"default shape, empty fields are null", nil, map[string]any{"sub": "u1", "email": "a@x.com", "name": ""},
			map[string]any{"user": map[string]any{"name": nil, "email": "a@x.com", "image": nil}, "expires": wantExpires}},
		{"default shape without token", nil, nil,
			map[string]any{"user": map[string]any{"name": nil, "email": nil, "image": nil}, "expires": wantExpires}},
		{"set user.role", []Rule{rule("1", "set", args("user.role", "token.role"), nil)}, token,
			map[string]any{"user": user("role", "admin"), "expires": wantExpires}},
		{"set from a missing key does nothing", []Rule{rule("1", "set", args("user.role", "token.role"), nil)},
			map[string]any{"email": "a@x.com"},
			map[string]any{"user": map[string]any{"name": nil, "email": "a@x.com", "image": nil}, "expires": wantExpires}},
		{"set expires_in", []Rule{rule("1", "set", args("expires_in", "3600"), nil)}, token,
			map[string]any{"user": user(), "expires": wantExpires, "expires_in": int64(3600)}},
		{"unset user.image", []Rule{rule("1", "unset", args("user.image"), nil)}, token,
			map[string]any{"user": map[string]any{"name": "Ada", "email": "ada@example.com"}, "expires": wantExpires}},
		{"rules see the session built so far",
			[]Rule{rule("1", "set", args("user.id", "token.sub"), nil), rule("2", "set", args("id_copy", "session.user.id"), nil)}, token,
			map[string]any{"user": user("id", "u1"), "expires": wantExpires, "id_copy": "u1"}},
		{"condition", []Rule{rule("1", "set", args("admin", "true"), ifCEL(`token.role == "admin"`))}, token,
			map[string]any{"user": user(), "expires": wantExpires, "admin": true}},
		{"email shorthand reads the token", []Rule{rule("1", "unset", args("user.image"), ifShort("email", "*@example.com"))}, token,
			map[string]any{"user": map[string]any{"name": "Ada", "email": "ada@example.com"}, "expires": wantExpires}},
		{"claim shorthand reads the token", []Rule{rule("1", "set", args("admin", "true"), ifClaim("role", "admin", "owner"))}, token,
			map[string]any{"user": user(), "expires": wantExpires, "admin": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCallbacks(t, Config{Session: tc.rules})
			if c.HasSessionRules() != (len(tc.rules) > 0) {
				t.Errorf("HasSessionRules = %v with %d rules", c.HasSessionRules(), len(tc.rules))
			}
			got, err := c.Session(context.Background(), SessionInput{Token: tc.token, Expires: expires})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Session =\n\t%#v\nwant\n\t%#v", got, tc.want)
			}
		})
	}
}

func TestSessionFailsClosed(t *testing.T) {
	c := mustCallbacks(t, Config{Session: []Rule{rule("8", "set", args("n", `int(token.name)`), nil)}})
	s, err := c.Session(context.Background(), SessionInput{Token: map[string]any{"name": "Ada"}})
	wantErrContains(t, err, "Caddyfile:8")
	if s != nil {
		t.Errorf("Session = %v along with the error", s)
	}
}

func TestCheck(t *testing.T) {
	vars := map[string]any{
		"session": map[string]any{"user": map[string]any{"email": "ada@example.com", "role": "admin"}},
		"token":   map[string]any{"email": "Ada@Example.com", "groups": []any{"staff", "ops"}, "level": float64(3)},
		"request": map[string]any{"method": "GET", "path": "/admin"},
	}
	for _, tc := range []struct {
		name string
		cond Condition
		want bool
	}{
		{"CEL on session", Condition{Expr: `session.user.role == "admin"`}, true},
		{"CEL on token", Condition{Expr: `"ops" in token.groups`}, true},
		{"CEL on request", Condition{Expr: `request.path.startsWith("/admin") && request.method == "POST"`}, false},
		{"CEL missing key is false", Condition{Expr: `session.user.team == "x"`}, false},
		{"email", Condition{Kind: "email", Values: []string{"*@example.com"}}, true},
		{"email differs", Condition{Kind: "email", Values: []string{"*@example.org"}}, false},
		{"domain", Condition{Kind: "domain", Values: []string{"example.com"}}, true},
		{"wildcard domain", Condition{Kind: "domain", Values: []string{"*.example.com"}}, false},
		{"claim list", Condition{Kind: "claim", Path: "groups", Values: []string{"ops"}}, true},
		{"claim number", Condition{Kind: "claim", Path: "level", Values: []string{"3"}}, true},
		{"claim missing", Condition{Kind: "claim", Path: "team", Values: []string{"x"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := CompileCheck(tc.cond, "Caddyfile:3")
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Holds(vars)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Holds = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileCheckErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cond Condition
		want []string
	}{
		{"profile is not a route variable", Condition{Expr: `profile.x == "a"`}, []string{"undeclared reference to 'profile'"}},
		{"not a bool", Condition{Expr: `token.email`}, []string{"want a bool"}},
		{"provider", Condition{Kind: "provider", Values: []string{"github"}}, []string{"provider"}},
		{"bad domain", Condition{Kind: "domain", Values: []string{"localhost"}}, []string{`"localhost"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileCheck(tc.cond, "Caddyfile:3")
			wantErrContains(t, err, append([]string{"Caddyfile:3: require: "}, tc.want...)...)
		})
	}
}

func TestCheckFailsClosed(t *testing.T) {
	k, err := CompileCheck(Condition{Expr: `int(token.name) > 0`}, "Caddyfile:3")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := k.Holds(map[string]any{"token": map[string]any{"name": "Ada"}, "session": map[string]any{}, "request": map[string]any{}})
	wantErrContains(t, err, "Caddyfile:3")
	if ok {
		t.Error("Holds = true along with the error")
	}
}

func TestExprString(t *testing.T) {
	vars := map[string]any{
		"session": map[string]any{"user": map[string]any{"email": "ada@example.com", "image": nil}},
		"token":   map[string]any{"groups": []any{"staff", "ops"}, "level": float64(3), "n": int64(-2), "ok": true, "m": map[string]any{"a": 1}},
		"request": map[string]any{"host": "app.example.com"},
	}
	for _, tc := range []struct {
		src, want string
	}{
		{`session.user.email`, "ada@example.com"},
		{`token.groups`, "staff,ops"},
		{`["a", 1, true]`, "a,1,true"},
		{`[]`, ""},
		{`token.level`, "3"},
		{`token.n`, "-2"},
		{`42`, "42"},
		{`7u`, "7"},
		{`2.5`, "2.5"},
		{`token.ok`, "true"},
		{`null`, ""},
		{`session.user.image`, ""},
		{`request.host + "/x"`, "app.example.com/x"},
	} {
		e, err := CompileExpr(tc.src)
		if err != nil {
			t.Fatalf("CompileExpr(%s): %v", tc.src, err)
		}
		got, err := e.String(vars)
		if err != nil {
			t.Errorf("String(%s): %v", tc.src, err)
			continue
		}
		if got != tc.want {
			t.Errorf("String(%s) = %q, want %q", tc.src, got, tc.want)
		}
	}

	for _, src := range []string{`session.user.role`, `token.missing.deeper`, `token.groups.exists(g, g == token.nope)`} {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.String(vars); !errors.Is(err, ErrAbsent) {
			t.Errorf("String(%s) error = %v, want ErrAbsent", src, err)
		}
	}

	for _, src := range []string{`token.m`, `int(request.host)`} {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.String(vars); err == nil || errors.Is(err, ErrAbsent) {
			t.Errorf("String(%s) error = %v, want a failure other than ErrAbsent", src, err)
		}
	}

	for _, src := range []string{`profile.x`, `token.`, `1 +`} {
		if _, err := CompileExpr(src); err == nil {
			t.Errorf("CompileExpr(%s) compiled", src)
		}
	}
}

func TestHeaderValue(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, ""}, {"x", "x"}, {true, "true"}, {int64(-3), "-3"}, {uint64(3), "3"}, {float64(1e21), "1000000000000000000000"},
		{[]any{"a", []any{"b", "c"}, nil}, "a,b,c,"},
	} {
		got, err := HeaderValue(tc.v)
		if err != nil || got != tc.want {
			t.Errorf("HeaderValue(%#v) = %q, %v; want %q", tc.v, got, err, tc.want)
		}
	}
	if _, err := HeaderValue(map[string]any{}); err == nil {
		t.Error("HeaderValue(map) succeeded")
	}
}

func BenchmarkSignIn(b *testing.B) {
	c := mustCallbacks(b, Config{SignIn: []Rule{
		rule("1", "deny", nil, ifShort("email", "intern@example.com", "*@contractors.example.com")),
		rule("2", "allow", nil, ifShort("domain", "example.org")),
		rule("3", "allow", nil, ifClaim("orgs", "acme-labs")),
		rule("4", "allow", nil, ifCEL(`account.provider == "github" && "acme" in profile.orgs`)),
	}})
	in := SignInInput{
		User:    map[string]any{"id": "1", "name": "Ada", "email": "ada@example.com"},
		Account: map[string]any{"provider": "github", "type": "oauth"},
		Profile: map[string]any{"login": "ada", "orgs": []any{"foo", "acme"}},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := c.SignIn(ctx, in)
		if err != nil || !d.Allow || d.Source != "Caddyfile:4" {
			b.Fatalf("SignIn = %+v, %v", d, err)
		}
	}
}

func BenchmarkSession(b *testing.B) {
	c := mustCallbacks(b, Config{Session: []Rule{
		rule("1", "set", args("user.id", "token.sub"), nil),
		rule("2", "set", args("user.role", "token.role"), ifCEL(`token.role != ""`)),
	}})
	in := SessionInput{
		Token:   map[string]any{"sub": "u1", "name": "Ada", "email": "ada@example.com", "role": "admin"},
		Expires: time.Now().Add(time.Hour),
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.Session(ctx, in)
		if err != nil || s["user"].(map[string]any)["role"] != "admin" {
			b.Fatalf("Session = %v, %v", s, err)
		}
	}
}

func BenchmarkRedirect(b *testing.B) {
	c := mustCallbacks(b, Config{Redirect: []Rule{
		rule("1", "allow_origin", args("https://*.example.com"), nil),
		rule("2", "rewrite", args(`base_url + "/welcome"`), ifCEL(`url == base_url + "/"`)),
	}})
	base := &url.URL{Scheme: "https", Host: "app.example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		u, err := c.Redirect(ctx, "https://docs.example.com/guide?x=1", base, nil)
		if err != nil || u != "https://docs.example.com/guide?x=1" {
			b.Fatalf("Redirect = %q, %v", u, err)
		}
	}
}

func BenchmarkJWT(b *testing.B) {
	c := mustCallbacks(b, Config{JWT: []Rule{
		rule("1", "set", args("role", `"admins" in profile.groups ? "admin" : "user"`), nil),
		rule("2", "set", args("groups", "profile.groups"), nil),
	}})
	in := JWTInput{
		User:    map[string]any{"id": "u1", "name": "Ada", "email": "ada@example.com"},
		Account: map[string]any{"provider": "oidc", "type": "oidc"},
		Profile: map[string]any{"groups": []any{"staff", "admins"}},
		Trigger: "sign_in",
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tok, err := c.JWT(ctx, in)
		if err != nil || tok["role"] != "admin" {
			b.Fatalf("JWT = %v, %v", tok, err)
		}
	}
}

// TestConfigExpand: placeholders in webhook secrets and header values are
// expanded in a copy; the configuration it came from keeps them.
func TestConfigExpand(t *testing.T) {
	orig := Config{JWT: []Rule{
		rule("1", "set", args("role", `"x"`), nil),
		{Action: "webhook", Webhook: &WebhookConfig{URL: "http://a.test/x", Secret: "{env.S}", Headers: map[string]string{"X-Key": "{env.K}"}}},
	}}
	got := orig.Expand(func(s string) string { return strings.NewReplacer("{env.S}", "secret", "{env.K}", "key").Replace(s) })
	if wh := got.JWT[1].Webhook; wh.Secret != "secret" || wh.Headers["X-Key"] != "key" || wh.URL != "http://a.test/x" {
		t.Errorf("expanded webhook %+v", wh)
	}
	if wh := orig.JWT[1].Webhook; wh.Secret != "{env.S}" || wh.Headers["X-Key"] != "{env.K}" {
		t.Errorf("the original changed: %+v", wh)
	}
}

func TestCheckVariables(t *testing.T) {
	for _, tc := range []struct {
		kind string
		vars map[string]any
		want string // empty: no error
	}{
		{KindSignIn, map[string]any{"user": map[string]any{}, "profile": map[string]any{"groups": []any{"a"}}}, ""},
		{KindSignIn, map[string]any{"usr": map[string]any{}}, `unknown variable "usr": sign_in rules have user, account`},
		{KindSignIn, map[string]any{"profile": []any{"a"}}, `variable "profile": want a JSON object`},
		{KindRedirect, map[string]any{"url": 3.0}, `variable "url": want a string`},
		{KindJWT, map[string]any{"is_new_user": "yes"}, `variable "is_new_user": want a boolean`},
		{KindJWT, map[string]any{"session": "any JSON", "trigger": "update"}, ""},
		{KindSession, map[string]any{"session": "x"}, `variable "session": want a JSON object`},
		{KindRoute, map[string]any{"profile": map[string]any{}}, `unknown variable "profile": route rules have session, token, request`},
	} {
		err := CheckVariables(tc.kind, tc.vars)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckVariables(%s, %v) = %v, want %q", tc.kind, tc.vars, err, tc.want)
		}
	}
}

package callbacks

import (
	"context"
	"reflect"
	"testing"
)

// TestAbsentKeyDecidesAgainstTheUser: a condition that reads an absent key
// never grants access, wherever the key stands, negations included (DESIGN.md,
// "Rules"): allow does not apply, deny and redirect do, require fails, set does
// nothing. Each action is tried with the key present, absent, and absent under
// a negation, in a CEL expression and in a shorthand.
func TestAbsentKeyDecidesAgainstTheUser(t *testing.T) {
	admins := map[string]any{"id": "1", "email": "ada@example.com", "groups": []any{"admins"}}
	staff := map[string]any{"id": "2", "email": "bob@example.com", "groups": []any{"staff"}}
	noGroups := map[string]any{"id": "3", "email": "eve@example.com"}
	noEmail := map[string]any{"id": "4"}
	allowRest := rule("9", "allow", nil, nil)
	allowed := Decision{Allow: true, Source: "Caddyfile:9"}
	byRule1 := Decision{Source: "Caddyfile:1"}
	sentAway := Decision{Redirect: "/request-access", Source: "Caddyfile:1"}

	t.Run("sign_in", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			rules []Rule
			user  map[string]any
			want  Decision
		}{
			{"allow, present", []Rule{rule("1", "allow", nil, ifCEL(`"admins" in user.groups`))}, admins, Decision{Allow: true, Source: "Caddyfile:1"}},
			{"allow, present, no match", []Rule{rule("1", "allow", nil, ifCEL(`"admins" in user.groups`))}, staff, Decision{}},
			{"allow, absent", []Rule{rule("1", "allow", nil, ifCEL(`"admins" in user.groups`))}, noGroups, Decision{}},
			{"allow, negated absent", []Rule{rule("1", "allow", nil, ifCEL(`!("admins" in user.groups)`))}, noGroups, Decision{}},
			{"allow claim, absent", []Rule{rule("1", "allow", nil, ifClaim("groups", "admins"))}, noGroups, Decision{}},
			{"allow domain, no email", []Rule{rule("1", "allow", nil, ifShort("domain", "example.com"))}, noEmail, Decision{}},

			{"deny, present", []Rule{rule("1", "deny", nil, ifCEL(`!("admins" in user.groups)`)), allowRest}, admins, allowed},
			{"deny, present, match", []Rule{rule("1", "deny", nil, ifCEL(`!("admins" in user.groups)`)), allowRest}, staff, byRule1},
			{"deny, absent", []Rule{rule("1", "deny", nil, ifCEL(`"interns" in user.groups`)), allowRest}, noGroups, byRule1},
			{"deny, negated absent", []Rule{rule("1", "deny", nil, ifCEL(`!("admins" in user.groups)`)), allowRest}, noGroups, byRule1},
			{"deny, absent deep in the expression", []Rule{rule("1", "deny", nil, ifCEL(`user.id != "" && !(user.groups.exists(g, g == "admins"))`)), allowRest}, noGroups, byRule1},
			{"deny claim, absent", []Rule{rule("1", "deny", nil, ifClaim("groups", "interns")), allowRest}, noGroups, byRule1},
			{"deny email, no email", []Rule{rule("1", "deny", nil, ifShort("email", "intern@example.com")), allowRest}, noEmail, byRule1},
			{"deny email, present, no match", []Rule{rule("1", "deny", nil, ifShort("email", "intern@example.com")), allowRest}, noGroups, allowed},

			{"redirect, present", []Rule{rule("1", "redirect", args("/request-access"), ifCEL(`!("admins" in user.groups)`)), allowRest}, admins, allowed},
			{"redirect, absent", []Rule{rule("1", "redirect", args("/request-access"), ifCEL(`"staff" in user.groups`)), allowRest}, noGroups, sentAway},
			{"redirect, negated absent", []Rule{rule("1", "redirect", args("/request-access"), ifCEL(`!("admins" in user.groups)`)), allowRest}, noGroups, sentAway},
			{"redirect claim, absent", []Rule{rule("1", "redirect", args("/request-access"), ifClaim("groups", "staff")), allowRest}, noGroups, sentAway},

			// A branch that cannot change the result is not a read that decides:
			// `true || x` is true and `false && x` false whatever x would be.
			{"allow, absent in a branch that does not count", []Rule{rule("1", "allow", nil, ifCEL(`user.email == "eve@example.com" || "admins" in user.groups`))}, noGroups, Decision{Allow: true, Source: "Caddyfile:1"}},
			{"deny, absent in a branch that does not count", []Rule{rule("1", "deny", nil, ifCEL(`user.email == "intern@example.com" && !("admins" in user.groups)`)), allowRest}, noGroups, allowed},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := mustCallbacks(t, Config{SignIn: tc.rules})
				// The claim shorthand reads the profile at sign-in, the CEL rules the user.
				got, err := c.SignIn(context.Background(), SignInInput{User: tc.user, Profile: tc.user})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("SignIn = %+v, want %+v", got, tc.want)
				}
			})
		}
	})

	t.Run("require", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			cond  Condition
			token map[string]any
			want  bool
		}{
			{"present", Condition{Expr: `"admins" in token.groups`}, admins, true},
			{"present, negated", Condition{Expr: `!("admins" in token.groups)`}, staff, true},
			{"absent", Condition{Expr: `"admins" in token.groups`}, noGroups, false},
			{"negated absent", Condition{Expr: `!("admins" in token.groups)`}, noGroups, false},
			{"claim, absent", Condition{Kind: "claim", Path: "groups", Values: []string{"admins"}}, noGroups, false},
			{"domain, no email", Condition{Kind: "domain", Values: []string{"example.com"}}, noEmail, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				k, err := CompileCheck(tc.cond, "Caddyfile:1")
				if err != nil {
					t.Fatal(err)
				}
				got, err := k.Holds(map[string]any{"token": tc.token, "session": map[string]any{}, "request": map[string]any{}})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("Holds = %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("set", func(t *testing.T) {
		// On a session update there is no profile: a set that reads it leaves the
		// token's current value alone.
		before := map[string]any{"sub": "1", "role": "user", "admin": false}
		for _, tc := range []struct {
			name    string
			rule    Rule
			profile map[string]any
			want    map[string]any
		}{
			{"expression, present", rule("1", "set", args("role", "profile.role"), nil), map[string]any{"role": "admin"}, map[string]any{"role": "admin"}},
			{"expression, absent", rule("1", "set", args("role", "profile.role"), nil), map[string]any{}, map[string]any{"role": "user"}},
			{"expression, negated absent", rule("1", "set", args("admin", `!("admins" in profile.groups)`), nil), map[string]any{}, map[string]any{"admin": false}},
			{"condition, present", rule("1", "set", args("role", `"admin"`), ifCEL(`"admins" in profile.groups`)), map[string]any{"groups": []any{"admins"}}, map[string]any{"role": "admin"}},
			{"condition, absent", rule("1", "set", args("role", `"admin"`), ifCEL(`"admins" in profile.groups`)), map[string]any{}, map[string]any{"role": "user"}},
			{"condition, negated absent", rule("1", "set", args("role", `"guest"`), ifCEL(`!("admins" in profile.groups)`)), map[string]any{}, map[string]any{"role": "user"}},
			{"unset, negated absent", rule("1", "unset", args("role"), ifCEL(`!("admins" in profile.groups)`)), map[string]any{}, map[string]any{"role": "user"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := mustCallbacks(t, Config{JWT: []Rule{tc.rule}})
				got, err := c.JWT(context.Background(), JWTInput{Token: before, Profile: tc.profile, Trigger: "update"})
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.want {
					if !reflect.DeepEqual(got[k], v) {
						t.Errorf("token[%s] = %v, want %v (token %v)", k, got[k], v, got)
					}
				}
			})
		}
	})

	t.Run("redirect", func(t *testing.T) {
		ok := map[string]any{"next": "ok"}
		for _, tc := range []struct {
			name   string
			rules  []Rule
			query  map[string]any
			target string
			want   string
		}{
			{"deny, present", []Rule{rule("1", "deny", nil, ifCEL(`!(request.query.next == "ok")`))}, ok, "/home", cbBase + "/home"},
			{"deny, absent", []Rule{rule("1", "deny", nil, ifCEL(`request.query.next == "no"`))}, nil, "/home", cbBase},
			{"deny, negated absent", []Rule{rule("1", "deny", nil, ifCEL(`!(request.query.next == "ok")`))}, nil, "/home", cbBase},
			{"allow, present", []Rule{rule("1", "allow", nil, ifCEL(`request.query.next == "ok"`))}, ok, "https://partner.example/x", "https://partner.example/x"},
			{"allow, absent", []Rule{rule("1", "allow", nil, ifCEL(`request.query.next == "ok"`))}, nil, "https://partner.example/x", cbBase},
			{"rewrite, absent", []Rule{rule("1", "rewrite", args(`request.query.next`), nil)}, nil, "/home", cbBase + "/home"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := mustCallbacks(t, Config{Redirect: tc.rules})
				got, err := c.Redirect(context.Background(), tc.target, mustParse(t, cbBase), map[string]any{"query": orEmpty(tc.query)})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("Redirect(%q) = %q, want %q", tc.target, got, tc.want)
				}
			})
		}
	})
}

// Package callbacks holds the four Auth.js callbacks — sign_in, redirect, jwt and
// session — as rules compiled once at provision, with Auth.js's defaults when a
// block has no rules.
package callbacks

import (
	"fmt"
	"net/url"
	"time"
)

// Config is the `callbacks` block: one ordered rule list per callback.
type Config struct {
	// SignIn decides who may sign in.
	SignIn []Rule `json:"sign_in,omitempty"`
	// Redirect decides where users may be sent after sign-in and sign-out.
	Redirect []Rule `json:"redirect,omitempty"`
	// JWT shapes the claims of the encrypted session token.
	JWT []Rule `json:"jwt,omitempty"`
	// Session shapes what /.auth/session returns and what routes see as `session`.
	Session []Rule `json:"session,omitempty"`
}

// Rule is one line of a callback block: `<action> [<argument>…] [<condition>]`.
type Rule struct {
	// Action is what the rule does: allow, deny, redirect, webhook, allow_origin,
	// rewrite, set, unset, default, refresh_access_token.
	Action string `json:"action"`
	// Args are the action's arguments (a URL, origin globs, a claim path and expression).
	Args []string `json:"args,omitempty"`
	// If is the rule's condition; none means always.
	If *Condition `json:"if,omitempty"`
	// Source is where the rule was written ("Caddyfile:12"), for error messages and logs.
	Source string `json:"source,omitempty"`
}

// Condition is a CEL expression or one of the shorthands.
type Condition struct {
	// Expr is a CEL expression over the callback's variables.
	Expr string `json:"expr,omitempty"`
	// Kind is a shorthand: email, domain, provider or claim.
	Kind string `json:"kind,omitempty"`
	// Path is the claim path of the `claim` shorthand.
	Path string `json:"path,omitempty"`
	// Values are the shorthand's globs, domains, provider ids or claim values.
	Values []string `json:"values,omitempty"`
}

// Callbacks is the compiled form of a Config.
type Callbacks struct {
	origins *Origins
}

// Compile checks and compiles cfg. The rule engine (conditions, sign_in, jwt and
// session rules) is not built yet; until it is, only the redirect block's
// allow_origin rules are accepted, and any other rule is a configuration error
// rather than being silently ignored.
func Compile(cfg Config) (*Callbacks, error) {
	var (
		cb      Callbacks
		origins []string
	)
	for _, r := range cfg.Redirect {
		if r.Action == "allow_origin" && r.If == nil {
			if len(r.Args) == 0 {
				return nil, ruleErr("redirect", r, fmt.Errorf("allow_origin needs at least one origin"))
			}
			origins = append(origins, r.Args...)
			continue
		}
		return nil, ruleErr("redirect", r, errNotYet)
	}
	for name, rules := range map[string][]Rule{"sign_in": cfg.SignIn, "jwt": cfg.JWT, "session": cfg.Session} {
		if len(rules) > 0 {
			return nil, ruleErr(name, rules[0], errNotYet)
		}
	}
	o, err := CompileOrigins(origins)
	if err != nil {
		return nil, fmt.Errorf("callbacks redirect: %v", err)
	}
	cb.origins = o
	return &cb, nil
}

var errNotYet = fmt.Errorf("rules other than redirect's allow_origin are not supported yet")

func ruleErr(callback string, r Rule, err error) error {
	if r.Source != "" {
		return fmt.Errorf("callbacks %s: %s: %s: %w", callback, r.Source, r.Action, err)
	}
	return fmt.Errorf("callbacks %s: %s: %w", callback, r.Action, err)
}

// SignInInput is what the sign_in callback sees.
type SignInInput struct {
	User, Account, Profile map[string]any
	Credentials            map[string]any
}

// Decision is the sign_in callback's answer.
type Decision struct {
	// Allow lets the sign-in proceed.
	Allow bool
	// Redirect, when set, sends the user there instead (after the redirect check).
	Redirect string
}

// SignIn decides whether the user may sign in. With no rules every user may.
func (c *Callbacks) SignIn(SignInInput) (Decision, error) {
	return Decision{Allow: true}, nil
}

// Redirect returns where to send the user for target: target itself when it is a
// safe redirect for base, else base.
func (c *Callbacks) Redirect(target string, base *url.URL) string {
	u, _ := SafeRedirect(target, base, c.origins)
	return u
}

// JWTInput is what the jwt callback sees when the token is created.
type JWTInput struct {
	Token                  map[string]any
	User, Account, Profile map[string]any
	Trigger                string
}

// JWT returns the claims of a new token. By default, as in Auth.js, the token holds
// name, email, picture and sub; iat, exp and jti are added by the codec.
func (c *Callbacks) JWT(in JWTInput) (map[string]any, error) {
	tok := in.Token
	if tok == nil {
		tok = map[string]any{}
	}
	if in.User != nil {
		tok["sub"] = in.User["id"]
		tok["name"] = nullable(in.User["name"])
		tok["email"] = nullable(in.User["email"])
		tok["picture"] = nullable(in.User["image"])
	}
	return tok, nil
}

// Session returns the session for a decoded token, Auth.js's default shape:
// {user: {name, email, image}, expires}.
func (c *Callbacks) Session(token map[string]any, expires time.Time) map[string]any {
	return map[string]any{
		"user": map[string]any{
			"name":  nullable(token["name"]),
			"email": nullable(token["email"]),
			"image": nullable(token["picture"]),
		},
		"expires": expires.UTC().Format("2006-01-02T15:04:05.000Z"),
	}
}

// nullable turns empty strings into JSON null, as Auth.js leaves absent fields.
func nullable(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return nil
	}
	return v
}

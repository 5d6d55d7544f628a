// Package callbacks holds the four Auth.js callbacks — sign_in, redirect, jwt and
// session — and the routes' require and header expressions, as rules compiled once
// at provision: CEL expressions or shorthands, evaluated in order, with Auth.js's
// defaults when a block has no rules.
package callbacks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
)

var boolType = cel.BoolType

// Config is the `callbacks` block: one ordered rule list per callback.
type Config struct {
	// SignIn decides who may sign in: allow, deny, redirect <url>, webhook, default allow|deny.
	SignIn []Rule `json:"sign_in,omitempty"`
	// Redirect decides where users may be sent: allow_origin, allow, deny, rewrite, webhook.
	Redirect []Rule `json:"redirect,omitempty"`
	// JWT shapes the claims of the encrypted session token: set, unset, webhook.
	JWT []Rule `json:"jwt,omitempty"`
	// Session shapes what /.auth/session returns and routes see as `session`: set, unset, webhook.
	Session []Rule `json:"session,omitempty"`
}

// Rule is one line of a callback block: `<action> [<argument>…] [<condition>]`.
type Rule struct {
	// Action is what the rule does.
	Action string `json:"action"`
	// Args are the action's arguments: a URL, origin globs, a claim path and an expression.
	Args []string `json:"args,omitempty"`
	// If is the rule's condition; none means always.
	If *Condition `json:"if,omitempty"`
	// Webhook configures a webhook rule.
	Webhook *WebhookConfig `json:"webhook,omitempty"`
	// Source is where the rule was written ("Caddyfile:12"), for errors and logs.
	Source string `json:"source,omitempty"`
}

// Condition is a CEL expression or one of the shorthands.
type Condition struct {
	// Expr is a CEL expression over the callback's variables.
	Expr string `json:"expr,omitempty"`
	// Kind is a shorthand: email (globs), domain, provider or claim.
	Kind string `json:"kind,omitempty"`
	// Path is the claim path of the `claim` shorthand.
	Path string `json:"path,omitempty"`
	// Values are the shorthand's globs, domains, provider ids or claim values.
	Values []string `json:"values,omitempty"`
	// Source is where a `require` condition was written ("Caddyfile:12"), for
	// errors and logs; a rule's condition has its rule's Source.
	Source string `json:"source,omitempty"`
}

// Expand returns a copy of c with expand applied to every webhook's secret and
// header values, which may hold placeholders such as {env.HOOK_SECRET}.
func (c Config) Expand(expand func(string) string) Config {
	out := c
	for _, rules := range []*[]Rule{&out.SignIn, &out.Redirect, &out.JWT, &out.Session} {
		list := slices.Clone(*rules)
		for i, r := range list {
			if r.Webhook == nil {
				continue
			}
			wh := *r.Webhook
			wh.Secret = expand(wh.Secret)
			wh.Headers = make(map[string]string, len(r.Webhook.Headers))
			for k, v := range r.Webhook.Headers {
				wh.Headers[k] = expand(v)
			}
			list[i].Webhook = &wh
		}
		*rules = list
	}
	return out
}

// Callbacks is the compiled form of a Config.
type Callbacks struct {
	signIn        []signInRule
	signInDefault bool
	redirect      []redirectRule
	origins       *Origins
	jwt           []setRule
	session       []setRule
	// refresh: the jwt block has refresh_access_token.
	refresh bool
}

// RefreshAccessToken reports whether OAuth access tokens are kept in the session
// token and refreshed before they expire (`jwt { refresh_access_token }`).
func (c *Callbacks) RefreshAccessToken() bool { return c.refresh }

type signInRule struct {
	ruleHead
	action, target string
	hook           *webhook
}

type redirectRule struct {
	ruleHead
	action  string
	rewrite *program
	hook    *webhook
}

type setRule struct {
	ruleHead
	action string // set, unset, webhook
	path   []string
	expr   *program
	hook   *webhook
}

// Compile checks and compiles cfg: every expression is parsed and type-checked
// here, so a mistake fails `caddy validate`, not a request.
func Compile(cfg Config) (*Callbacks, error) {
	// A webhook's 3xx is a non-2xx answer like any other, not an address to
	// send the signed request on to.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c := &Callbacks{}
	var err error
	if c.signIn, c.signInDefault, err = compileSignIn(cfg.SignIn, client); err != nil {
		return nil, err
	}
	if c.redirect, c.origins, err = compileRedirect(cfg.Redirect, client); err != nil {
		return nil, err
	}
	if c.jwt, c.refresh, err = compileJWT(cfg.JWT, client); err != nil {
		return nil, err
	}
	if c.session, err = compileSetRules(KindSession, cfg.Session, client); err != nil {
		return nil, err
	}
	return c, nil
}

// errNoCompiler: the action table has an action that Compile does not know.
var errNoCompiler = errors.New("authgate bug: no compiler for this action")

// compileSignIn compiles the sign_in rules and works out the default: allow,
// unless the block has an allow rule (an allow-list) or a default rule says otherwise.
func compileSignIn(rules []Rule, client *http.Client) ([]signInRule, bool, error) {
	var out []signInRule
	hasAllow, hasDefault, defaultAllow := false, false, false
	for _, r := range rules {
		a, cd, err := checkRule(KindSignIn, r)
		if err != nil {
			return nil, false, err
		}
		sr := signInRule{ruleHead: newHead(a, r, cd), action: r.Action}
		switch a.Name {
		case "allow":
			hasAllow = true
		case "deny":
		case "redirect":
			sr.target = r.Args[0]
		case "webhook":
			sr.hook, err = compileWebhook(r, client)
		case "default":
			hasDefault, defaultAllow = true, r.Args[0] == "allow"
			continue
		default:
			err = errNoCompiler
		}
		if err != nil {
			return nil, false, ruleErr(KindSignIn, r, err)
		}
		out = append(out, sr)
	}
	if !hasDefault {
		defaultAllow = !hasAllow
	}
	return out, defaultAllow, nil
}

// compileRedirect compiles the redirect rules; the allow_origin rules make
// one allow-list together.
func compileRedirect(rules []Rule, client *http.Client) ([]redirectRule, *Origins, error) {
	var out []redirectRule
	var origins []string
	for _, r := range rules {
		a, cd, err := checkRule(KindRedirect, r)
		if err != nil {
			return nil, nil, err
		}
		rr := redirectRule{ruleHead: newHead(a, r, cd), action: r.Action}
		switch a.Name {
		case "allow", "deny":
		case "allow_origin":
			// Checked rule by rule too, so that an error names this rule's source.
			if _, err := CompileOrigins(r.Args); err != nil {
				return nil, nil, ruleErr(KindRedirect, r, err)
			}
			origins = append(origins, r.Args...)
			continue
		case "rewrite":
			rr.rewrite, err = compileCEL(KindRedirect, r.Args[0], cel.StringType)
		case "webhook":
			rr.hook, err = compileWebhook(r, client)
		default:
			err = errNoCompiler
		}
		if err != nil {
			return nil, nil, ruleErr(KindRedirect, r, err)
		}
		out = append(out, rr)
	}
	o, err := CompileOrigins(origins)
	if err != nil {
		return nil, nil, fmt.Errorf("callbacks redirect: %v", err)
	}
	return out, o, nil
}

// compileJWT compiles the jwt rules; refresh_access_token is a switch for the
// whole block, not a rule in the list.
func compileJWT(rules []Rule, client *http.Client) ([]setRule, bool, error) {
	var list []Rule
	refresh := false
	for _, r := range rules {
		if r.Action == "refresh_access_token" {
			if _, _, err := checkRule(KindJWT, r); err != nil {
				return nil, false, err
			}
			refresh = true
			continue
		}
		list = append(list, r)
	}
	out, err := compileSetRules(KindJWT, list, client)
	return out, refresh, err
}

func compileSetRules(kind string, rules []Rule, client *http.Client) ([]setRule, error) {
	var out []setRule
	for _, r := range rules {
		a, cd, err := checkRule(kind, r)
		if err != nil {
			return nil, err
		}
		sr := setRule{ruleHead: newHead(a, r, cd), action: r.Action}
		switch a.Name {
		case "set":
			if sr.path, err = claimPath(r.Args[0]); err == nil {
				sr.expr, err = compileCEL(kind, r.Args[1], nil)
			}
		case "unset":
			sr.path, err = claimPath(r.Args[0])
		case "webhook":
			sr.hook, err = compileWebhook(r, client)
		default:
			err = errNoCompiler
		}
		if err != nil {
			return nil, ruleErr(kind, r, err)
		}
		out = append(out, sr)
	}
	return out, nil
}

func wantArgs(r Rule, n int) error {
	if len(r.Args) != n {
		return fmt.Errorf("takes %d argument(s) before its condition, got %d (%s)", n, len(r.Args), strings.Join(r.Args, " "))
	}
	return nil
}

func claimPath(p string) ([]string, error) {
	keys := strings.Split(p, ".")
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("path %q: empty segment", p)
		}
	}
	return keys, nil
}

func ruleErr(callback string, r Rule, err error) error {
	if r.Source != "" {
		return fmt.Errorf("%s: callbacks %s: %s: %w", r.Source, callback, r.Action, err)
	}
	return fmt.Errorf("callbacks %s: %s: %w", callback, r.Action, err)
}

// orEmpty makes nil maps empty, so expressions see a map and a missing key,
// never an absent variable.
func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// SignInInput is what the sign_in callback sees.
type SignInInput struct {
	User, Account, Profile map[string]any
	// Email is set for the email provider: {verification_request: bool, …}.
	Email map[string]any
	// Credentials are the POSTed fields, password removed.
	Credentials map[string]any
	Request     map[string]any
}

// Decision is the sign_in callback's answer.
type Decision struct {
	// Allow lets the sign-in proceed.
	Allow bool
	// Redirect, when set, sends the user there instead (after the redirect check).
	Redirect string
	// Source is the rule that decided, empty for the default.
	Source string
}

// SignIn decides whether the user may sign in: the first rule that applies
// decides. A condition that reads an absent key decides against the user: an
// allow rule does not apply, a deny or redirect rule does. An error means a
// rule failed; callers refuse the sign-in.
func (c *Callbacks) SignIn(ctx context.Context, in SignInInput) (Decision, error) {
	t := traceOf(ctx)
	var vars map[string]any
	for _, r := range c.signIn {
		if vars == nil {
			vars = map[string]any{
				"user": orEmpty(in.User), "account": orEmpty(in.Account), "profile": orEmpty(in.Profile),
				"email": orEmpty(in.Email), "credentials": orEmpty(in.Credentials), "request": orEmpty(in.Request),
			}
		}
		ok, err := r.applies(t, vars)
		if err != nil {
			return Decision{}, err
		}
		if !ok {
			continue
		}
		switch r.action {
		case "allow":
			return Decision{Allow: true, Source: r.source}, nil
		case "deny":
			return Decision{Source: r.source}, nil
		case "redirect":
			return Decision{Redirect: r.target, Source: r.source}, nil
		case "webhook":
			if t.skipsWebhooks() {
				t.then("webhook not called")
				continue
			}
			d, decided, err := r.askWebhook(ctx, vars)
			if err != nil {
				t.then("error: " + err.Error())
				return d, err
			}
			if decided {
				t.then("webhook answered " + d.String())
				return d, nil
			}
			t.then("webhook answered no decision")
		}
	}
	d := Decision{Allow: c.signInDefault}
	if t != nil {
		t.add("", "default "+d.String(), "no rule decided")
	}
	return d, nil
}

// String is the decision as a rule writes it: allow, deny or redirect <url>.
func (d Decision) String() string {
	switch {
	case d.Redirect != "":
		return "redirect " + d.Redirect
	case d.Allow:
		return "allow"
	}
	return "deny"
}

// askWebhook calls r's webhook; decided is false for an answer of `{}`.
func (r *signInRule) askWebhook(ctx context.Context, vars map[string]any) (d Decision, decided bool, err error) {
	ans, err := r.hook.call(ctx, KindSignIn, vars)
	if err != nil {
		return Decision{}, false, fmt.Errorf("%s: %v", r.source, err)
	}
	if target, ok := ans["redirect"]; ok {
		s, _ := target.(string)
		if s == "" {
			return Decision{}, false, fmt.Errorf("%s: webhook answered a redirect that is not a URL", r.source)
		}
		return Decision{Redirect: s, Source: r.source}, true, nil
	}
	if allow, ok := ans["allow"]; ok {
		b, isBool := allow.(bool)
		if !isBool {
			return Decision{}, false, fmt.Errorf("%s: webhook answered allow that is not a boolean", r.source)
		}
		return Decision{Allow: b, Source: r.source}, true, nil
	}
	return Decision{}, false, nil
}

// Redirect returns where to send the user for target: the first matching rule
// decides, and the safe-redirect check applies to whatever it returns. With no
// rules, a safe target is kept and anything else becomes the base URL. On error
// the base URL is returned along with the error.
func (c *Callbacks) Redirect(ctx context.Context, target string, base *url.URL, request map[string]any) (string, error) {
	if len(c.redirect) == 0 {
		u, _ := SafeRedirect(target, base, c.origins)
		return u, nil
	}
	t := traceOf(ctx)
	vars := map[string]any{"url": target, "base_url": base.String(), "request": orEmpty(request)}
	for _, r := range c.redirect {
		ok, err := r.applies(t, vars)
		if err != nil {
			return base.String(), err
		}
		if !ok {
			continue
		}
		u, decided, err := r.decide(ctx, t, vars, target, base, c.origins)
		if err != nil {
			t.then("error: " + err.Error())
			return base.String(), err
		}
		if decided {
			t.then(u)
			return u, nil
		}
	}
	u, _ := SafeRedirect(target, base, c.origins)
	if t != nil {
		t.add("", "default", "no rule decided: "+u)
	}
	return u, nil
}

// decide applies redirect rule r, whose condition holds: the URL to use, or
// decided false when the rule has nothing to say (an absent key in a rewrite,
// a webhook's `{}`).
func (r *redirectRule) decide(ctx context.Context, t *Trace, vars map[string]any, target string, base *url.URL, origins *Origins) (string, bool, error) {
	switch r.action {
	case "allow":
		u, _ := safeRedirect(target, base, origins, true)
		return u, true, nil
	case "deny":
		return base.String(), true, nil
	case "rewrite":
		v, absent, err := r.rewrite.evalNative(vars)
		if err == ErrAbsent {
			t.then("nothing rewritten (" + absent + ")")
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("%s: %v", r.source, err)
		}
		s, _ := v.(string)
		u, _ := SafeRedirect(s, base, origins)
		return u, true, nil
	case "webhook":
		if t.skipsWebhooks() {
			t.then("webhook not called")
			return "", false, nil
		}
		ans, err := r.hook.call(ctx, KindRedirect, vars)
		if err != nil {
			return "", false, fmt.Errorf("%s: %v", r.source, err)
		}
		if v, ok := ans["url"]; ok {
			s, _ := v.(string)
			u, _ := SafeRedirect(s, base, origins)
			return u, true, nil
		}
		t.then("webhook answered no decision")
	}
	return "", false, nil
}

// JWTInput is what the jwt callback sees.
type JWTInput struct {
	// Token is the current token: empty at sign-in, the decoded one on update.
	Token                  map[string]any
	User, Account, Profile map[string]any
	IsNewUser              bool
	// Trigger is sign_in, sign_up or update.
	Trigger string
	// Session is the update data POSTed to /.auth/session (trigger update).
	Session any
	Request map[string]any
}

// JWT returns the token's claims. At sign-in the default token holds name, email,
// picture and sub, as in Auth.js; then every rule whose condition holds applies in
// order. iat, exp and jti are the codec's.
func (c *Callbacks) JWT(ctx context.Context, in JWTInput) (map[string]any, error) {
	tok := make(map[string]any, len(in.Token)+4)
	for k, v := range in.Token {
		tok[k] = v
	}
	if in.User != nil {
		tok["sub"] = in.User["id"]
		tok["name"] = nullable(in.User["name"])
		tok["email"] = nullable(in.User["email"])
		tok["picture"] = nullable(in.User["image"])
	}
	if len(c.jwt) == 0 {
		return tok, nil
	}
	vars := map[string]any{
		"token": tok, "user": orEmpty(in.User), "account": orEmpty(in.Account), "profile": orEmpty(in.Profile),
		"is_new_user": in.IsNewUser, "trigger": in.Trigger, "session": in.Session, "request": orEmpty(in.Request),
	}
	if in.Session == nil {
		vars["session"] = map[string]any{}
	}
	out, err := applySetRules(ctx, KindJWT, c.jwt, vars, "token")
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"iat", "exp", "jti"} {
		if v, ok := tok[k]; ok {
			out[k] = v
		} else {
			delete(out, k)
		}
	}
	return out, nil
}

// SessionInput is what the session callback sees.
type SessionInput struct {
	Token   map[string]any
	Expires time.Time
	User    map[string]any
	Request map[string]any
}

// Session returns the session for a decoded token: Auth.js's default
// {user: {name, email, image}, expires}, then the rules in order.
func (c *Callbacks) Session(ctx context.Context, in SessionInput) (map[string]any, error) {
	s := map[string]any{
		"user": map[string]any{
			"name":  nullable(in.Token["name"]),
			"email": nullable(in.Token["email"]),
			"image": nullable(in.Token["picture"]),
		},
		"expires": in.Expires.UTC().Format("2006-01-02T15:04:05.000Z"),
	}
	if len(c.session) == 0 {
		return s, nil
	}
	vars := map[string]any{"session": s, "token": orEmpty(in.Token), "user": orEmpty(in.User), "request": orEmpty(in.Request)}
	return applySetRules(ctx, KindSession, c.session, vars, "session")
}

// HasSessionRules reports whether Session does more than the default shape.
func (c *Callbacks) HasSessionRules() bool { return len(c.session) > 0 }

// SessionDependsOnTokenOnly reports whether Session's result is determined by the
// token and expiry alone (no webhook, no rule reading `request`), so it
// may be computed once per token.
func (c *Callbacks) SessionDependsOnTokenOnly() bool {
	for _, r := range c.session {
		if r.hook != nil || r.cond.usesRequest() || (r.expr != nil && r.expr.usesRequest) {
			return false
		}
	}
	return true
}

// applySetRules applies set/unset/webhook rules to vars[target], each rule seeing
// the result of the ones before it. A rule whose condition or expression reads
// an absent key does nothing.
func applySetRules(ctx context.Context, kind string, rules []setRule, vars map[string]any, target string) (map[string]any, error) {
	t := traceOf(ctx)
	obj := vars[target].(map[string]any)
	for _, r := range rules {
		ok, err := r.applies(t, vars)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if obj, err = r.apply(ctx, t, kind, vars, target, obj); err != nil {
			t.then("error: " + err.Error())
			return nil, err
		}
		vars[target] = obj
	}
	return obj, nil
}

// apply applies set rule r, whose condition holds, to obj.
func (r *setRule) apply(ctx context.Context, t *Trace, kind string, vars map[string]any, target string, obj map[string]any) (map[string]any, error) {
	path := strings.Join(r.path, ".")
	switch r.action {
	case "set":
		v, absent, err := r.expr.evalNative(vars)
		if err == ErrAbsent {
			t.then("nothing set (" + absent + ")")
			return obj, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", r.source, err)
		}
		t.then(path + " = " + jsonText(v))
		return setPath(obj, r.path, v), nil
	case "unset":
		t.then(path + " removed")
		return unsetPath(obj, r.path), nil
	case "webhook":
		if t.skipsWebhooks() {
			t.then("webhook not called")
			return obj, nil
		}
		ans, err := r.hook.call(ctx, kind, vars)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", r.source, err)
		}
		v, ok := ans[target]
		if !ok {
			t.then("webhook answered no change")
			return obj, nil
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			return nil, fmt.Errorf("%s: webhook answered a %s that is not an object", r.source, target)
		}
		t.then("webhook answered " + jsonText(m))
		return m, nil
	}
	return obj, nil
}

// setPath returns m with v at keys, copying the maps on the way so values shared
// with the caller are never modified.
func setPath(m map[string]any, keys []string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, x := range m {
		out[k] = x
	}
	if len(keys) == 1 {
		out[keys[0]] = v
		return out
	}
	child, _ := out[keys[0]].(map[string]any)
	out[keys[0]] = setPath(child, keys[1:], v)
	return out
}

func unsetPath(m map[string]any, keys []string) map[string]any {
	if _, ok := m[keys[0]]; !ok {
		return m
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = x
	}
	if len(keys) == 1 {
		delete(out, keys[0])
		return out
	}
	if child, ok := out[keys[0]].(map[string]any); ok {
		out[keys[0]] = unsetPath(child, keys[1:])
	}
	return out
}

// nullable turns empty strings into JSON null, as Auth.js leaves absent fields.
func nullable(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return nil
	}
	return v
}
